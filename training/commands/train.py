"""``l2gnet train``: train a model (or fine-tune a checkpoint) on a dataset, with progress."""

from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import signal
import sys
import threading

from . import positive_float


def parse_set(items: list[str]) -> dict:
    """``key=value`` model config overrides; values are parsed as JSON when they can be."""
    out = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--set expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


class StopOnSignals:
    """SIGTERM (what Slurm and ``torchrun`` send before a kill) and SIGINT (Ctrl-C) ask the
    run to stop after the current step, writing ``last`` and the run state, so that
    ``--resume`` continues exactly; a second signal acts as it normally would."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.received: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopOnSignals:
        if threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.signal(sig, self._handle) for sig in self.SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        self._restore()

    def _handle(self, signum: int, frame) -> None:
        self.received = signum
        self._restore()

    def _restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous = {}

    def __call__(self) -> bool:
        return self.received is not None


def add_parser(sub) -> None:
    """The flags; their defaults are ``TrainConfig``'s (one source), the choices its registries'."""
    from ..data.transforms import AUGMENTATIONS
    from ..fitting.trainer import OPTIMIZERS, TrainConfig

    d = TrainConfig()
    p = sub.add_parser(
        "train", help="train a model or fine-tune a checkpoint",
        description="Train MODEL on DATA (a folder: ACDC/Synapse h5, Synapse npz, NIfTI "
        "imagesTr+labelsTr; or phantom:SEEDS), validating each epoch on --val. Writes "
        "OUT_DIR/last.safetensors every epoch, OUT_DIR/best.safetensors on the best "
        "validation Dice and OUT_DIR/run_state.safetensors (what --resume continues); an "
        "earlier run in OUT_DIR is only replaced with --overwrite. Under torchrun "
        "(torchrun --nproc_per_node N -m training.cli train ...) it trains with "
        "DistributedDataParallel, --batch-size per process.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--model", default="l2gnet",
                   help="model name or training preset (e.g. l2gnet, transunet, unet, ssnet)")
    p.add_argument("--from", dest="from_checkpoint", metavar="CHECKPOINT",
                   help="fine-tune this checkpoint instead of building --model; the bucket "
                        "and vote loss weights are the checkpoint's unless given")
    p.add_argument("--data", required=True, help="training data (folder or phantom:SEEDS)")
    p.add_argument("--val", help="validation volumes (folder or phantom:SEEDS)")
    p.add_argument("--out-dir", default=d.out_dir)
    p.add_argument("--num-classes", type=int, help="default: largest label in the data + 1")
    p.add_argument("--class-names", help="comma-separated, background first; with --from, "
                   "the checkpoint's names unchanged and in order, then any new classes to "
                   "teach (docs/new-classes.md)")
    p.add_argument("--normalization", choices=["ct_window", "percentile", "none"],
                   help="default: ct_window for NIfTI/phantom data, none for h5/npz ([0, 1])")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="model config override, repeatable (e.g. --set encoder=resnet18)")
    p.add_argument("--tiny", action="store_true", help="start from the tiny test config")
    p.add_argument("--epochs", type=int, default=d.epochs)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=positive_float, default=d.lr)
    p.add_argument("--optimizer", choices=OPTIMIZERS, default=d.optimizer)
    p.add_argument("--input-size", type=int, nargs=2, default=list(d.input_size),
                   metavar=("H", "W"))
    p.add_argument("--augment", choices=AUGMENTATIONS, default=d.augment)
    p.add_argument("--target-spacing", nargs="+", default=["auto"], metavar="MM",
                   help="in-plane pixel size (mm) slices with a voxel size are resampled to: "
                   "'auto' (the checkpoint's, else the training data's median), 'none' (resize "
                   "every slice to --input-size), or two numbers (rows, columns)")
    p.add_argument("--spectral-weight", type=float, help="override the preset's weight")
    p.add_argument("--bucket-weight", type=float,
                   help="weight of the bucket-class term that ties L2GNet's plans to the "
                        "labels (training/fitting/losses.py; 0 = the paper's loss)")
    p.add_argument("--vote-weight", type=float,
                   help="weight of the term that trains L2GNet's bucket votes (plan_vote) as a "
                        "coarse segmentation (training/fitting/losses.py)")
    p.add_argument("--oversample-small", type=float, default=0.0, metavar="SHARE",
                   help="each epoch, every slice once plus SHARE x (number of slices) more "
                        "drawn among the slices where a class is small (area in its lowest "
                        "quartile over the training slices; the class drawn uniformly): the "
                        "apical and end-systolic slices of a heart; 0 = plain epochs")
    p.add_argument("--slice-context", type=int, choices=(0, 1),
                   help="1: the model sees each slice between its neighbours (the slice "
                        "before and after as input channels 1 and 3; a --from checkpoint "
                        "trained without them starts predicting exactly as before); 0: the "
                        "slice alone (the papers). Default: the --from checkpoint's, else 0")
    p.add_argument("--device", default=d.device)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--max-steps", type=int)
    p.add_argument("--no-amp", action="store_true", help="disable mixed precision on CUDA")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in OUT_DIR from its run_state.safetensors")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier run in OUT_DIR (refused otherwise)")
    p.add_argument("--freeze-bn", action="store_true",
                   help="keep BatchNorm statistics fixed (eval mode) while training")
    p.add_argument("--threads", type=int, help="CPU threads for torch")
    p.add_argument("--num-workers", type=int, default=d.num_workers,
                   help="data-loading processes (augmentation runs there; 4-8 keep a GPU busy)")
    p.add_argument("--phantom-shape", type=int, nargs=3, metavar=("S", "H", "W"),
                   help="volume shape for phantom:SEEDS data")
    p.set_defaults(run=run)


def _continued_loss(checkpoint: str, preset_loss):
    """Training on from a checkpoint keeps the plan terms (bucket, vote) it was trained with,
    not the preset's: a paper-literal checkpoint continues with the paper's loss. An
    unreadable checkpoint is left to ``prepare_run``, which says what is wrong with it."""
    import dataclasses

    from src_model import read_metadata

    from ..finetuning.finetune import trained_plan_weights

    try:
        trained = trained_plan_weights(read_metadata(checkpoint))
    except Exception:  # noqa: BLE001 - reported by prepare_run with the file's name
        return preset_loss
    return dataclasses.replace(preset_loss, **trained)


def run(args: argparse.Namespace) -> int:
    """Set the run up (``prepare_run``), train it (``Trainer``), print its history.

    Under ``torchrun`` every process runs this; only rank 0 prints and writes.
    """
    import torch

    from src_model.testing import tiny_config

    from ..fitting.distributed import distributed_session
    from ..fitting.one_call import TrainConfig
    from ..fitting.presets import resolve_preset
    from ..fitting.run_setup import prepare_run
    from .progress import TrainProgress

    if args.threads:
        torch.set_num_threads(args.threads)
    if not 0 <= args.oversample_small <= 10:
        raise ValueError(f"--oversample-small {args.oversample_small}: give a share between 0 "
                         "and 10 (e.g. 0.5)")
    if args.slice_context == 0 and args.from_checkpoint:  # refused before any output
        from src_model import read_checkpoint_meta

        from ..fitting.trainer import resolve_slice_context

        resolve_slice_context(read_checkpoint_meta(args.from_checkpoint).slice_context, 0,
                              args.from_checkpoint)
    preset = resolve_preset(args.model)
    model_name, loss = preset.model, preset.loss_config()
    if args.from_checkpoint:
        loss = _continued_loss(args.from_checkpoint, loss)
    if args.spectral_weight is not None:
        loss.spectral_weight = args.spectral_weight
    if args.bucket_weight is not None:
        loss.bucket_weight = args.bucket_weight
    if args.vote_weight is not None:
        loss.vote_weight = args.vote_weight
    model_config = tiny_config(model_name) if args.tiny and not args.from_checkpoint else {}
    model_config.update(parse_set(args.set))
    argv = getattr(args, "argv", None) or sys.argv[1:]  # cli.main sets args.argv
    cfg = TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, optimizer=args.optimizer,
        input_size=tuple(args.input_size), augment=args.augment, amp=not args.no_amp,
        seed=args.seed, device=args.device, max_steps=args.max_steps, loss=loss,
        out_dir=args.out_dir, resume=args.resume, overwrite=args.overwrite,
        num_workers=args.num_workers, freeze_batchnorm=args.freeze_bn,
        slice_context=args.slice_context,
    )
    with distributed_session(args.device) as dist:
        setup = prepare_run(
            args.data, cfg, checkpoint=args.from_checkpoint, model=args.model,
            model_config=model_config, num_classes=args.num_classes, val=args.val,
            normalization=args.normalization,
            class_names=[n.strip() for n in args.class_names.split(",")]
            if args.class_names else None,
            metadata={"training": {"command": "l2gnet " + shlex.join(argv), "data": args.data,
                                   "val": args.val, "preset": args.model}},
            phantom_shape=args.phantom_shape, dist=dist,
            target_spacing=_target_spacing(args.target_spacing),
        )
        if args.oversample_small:
            _oversample_small(setup, args.oversample_small)
        say = dist.is_main
        if say:
            for warning in setup.warnings:
                print(f"l2gnet train: warning: {warning}", file=sys.stderr)
            ranks = f" on {dist.world_size} ranks" if dist.enabled else ""
            print(f"training {args.model} ({setup.model_name}, {setup.num_classes} classes) on "
                  f"{len(setup.slices)} slices, validating on {len(setup.val_cases)} volumes"
                  f"{ranks} -> {args.out_dir}", file=sys.stderr)
        with (TrainProgress() if say else contextlib.nullcontext() as progress,
              StopOnSignals() as stop):
            result = setup.trainer(callback=progress, should_stop=stop, dist=dist).fit()
    if say:
        for record in result.history:
            print(json.dumps(record))
        print(f"last checkpoint: {result.last_checkpoint}", file=sys.stderr)
        if result.best_checkpoint:
            print(f"best checkpoint: {result.best_checkpoint}", file=sys.stderr)
    if not result.stopped:
        return 0
    signum = stop.received or signal.SIGTERM  # a rank stopped because another was signalled
    if say:
        print(f"l2gnet train: stopped by {signal.Signals(signum).name}; continue with "
              f"--out-dir {args.out_dir} --resume", file=sys.stderr)
    return 128 + signum


def _oversample_small(setup, share: float) -> None:
    """``--oversample-small``: repeat the run's slices as ``small_structure_repeats`` says
    (the epoch grows by ``share``; the count is recorded in the checkpoints' training entry)."""
    from ..data.sampling import small_structure_repeats

    order = small_structure_repeats([s.label for s in setup.slices], share)
    setup.metadata.setdefault("training", {})["oversample_small"] = {
        "share": share, "distinct_slices": len(setup.slices), "samples_per_epoch": len(order)}
    setup.slices = [setup.slices[i] for i in order]


def _target_spacing(values: list[str]) -> str | tuple[float, float] | None:
    """``--target-spacing``: 'auto', 'none' or two sizes in mm."""
    if len(values) == 1 and values[0].lower() in ("auto", "none"):
        return None if values[0].lower() == "none" else "auto"
    try:
        sizes = tuple(float(v) for v in values)
    except ValueError:
        sizes = ()
    if len(sizes) != 2 or not min(sizes) > 0:
        raise ValueError(f"--target-spacing {' '.join(values)}: give auto, none or two sizes "
                         "in mm > 0 (rows, columns), e.g. --target-spacing 0.8 0.8")
    return sizes  # type: ignore[return-value]
