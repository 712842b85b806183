"""``l2gnet train``: train a model (or fine-tune a checkpoint) on a dataset, with progress."""

from __future__ import annotations

import argparse
import json
import shlex
import sys

from ..normalization import CT_WINDOW, MRI_PERCENTILE, NO_NORMALIZATION


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


def add_parser(sub) -> None:
    p = sub.add_parser(
        "train", help="train a model or fine-tune a checkpoint",
        description="Train MODEL on DATA (a folder: ACDC/Synapse h5, Synapse npz, NIfTI "
        "imagesTr+labelsTr; or phantom:SEEDS), validating each epoch on --val. Writes "
        "OUT_DIR/last.safetensors every epoch and OUT_DIR/best.safetensors on the best "
        "validation Dice.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--model", default="l2gnet",
                   help="model name or training preset (e.g. l2gnet, transunet, unet, ssnet)")
    p.add_argument("--from", dest="from_checkpoint", metavar="CHECKPOINT",
                   help="fine-tune this checkpoint instead of building --model")
    p.add_argument("--data", required=True, help="training data (folder or phantom:SEEDS)")
    p.add_argument("--val", help="validation volumes (folder or phantom:SEEDS)")
    p.add_argument("--out-dir", default="runs/l2gnet")
    p.add_argument("--num-classes", type=int, help="default: largest label in the data + 1")
    p.add_argument("--class-names", help="comma-separated, background first")
    p.add_argument("--normalization", choices=["ct_window", "percentile", "none"],
                   help="default: ct_window for NIfTI/phantom data, none for h5/npz ([0, 1])")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="model config override, repeatable (e.g. --set encoder=resnet18)")
    p.add_argument("--tiny", action="store_true", help="start from the tiny test config")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--optimizer", choices=["sgd", "adamw"], default="sgd")
    p.add_argument("--input-size", type=int, nargs=2, default=[224, 224], metavar=("H", "W"))
    p.add_argument("--augment", choices=["transunet", "rotate", "none"], default="transunet")
    p.add_argument("--spectral-weight", type=float, help="override the preset's weight")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-steps", type=int)
    p.add_argument("--no-amp", action="store_true", help="disable mixed precision on CUDA")
    p.add_argument("--resume", action="store_true", help="continue OUT_DIR/last.safetensors")
    p.add_argument("--threads", type=int, help="CPU threads for torch")
    p.add_argument("--num-workers", type=int, default=0,
                   help="data-loading processes (augmentation runs there; 4-8 keep a GPU busy)")
    p.add_argument("--phantom-shape", type=int, nargs=3, metavar=("S", "H", "W"),
                   help="volume shape for phantom:SEEDS data")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from src_model import build_model, read_metadata
    from src_model.testing import tiny_config

    from ..data.specs import load_cases, load_slices, max_label
    from ..fit import TrainConfig, fit
    from ..phantom import SYNAPSE_CLASSES, SYNAPSE_COLORS
    from ..presets import resolve_preset
    from .progress import TrainProgress

    if args.threads:
        torch.set_num_threads(args.threads)
    phantom = args.data.startswith("phantom:")
    metadata: dict = {}
    if args.from_checkpoint:
        metadata = read_metadata(args.from_checkpoint)
    norm_kind = args.normalization or metadata.get("normalization", {}).get("kind") or (
        "ct_window" if phantom or not args.data.endswith(("slices", "npz")) else "none")
    norm = {"ct_window": CT_WINDOW, "percentile": MRI_PERCENTILE,
            "none": NO_NORMALIZATION}[norm_kind]
    pk = {"shape": tuple(args.phantom_shape)} if args.phantom_shape else {}
    slices = load_slices(args.data, norm, **pk)
    val = load_cases(args.val, norm, **pk) if args.val else []
    model_name, loss = resolve_preset(args.model)
    if args.spectral_weight is not None:
        loss.spectral_weight = args.spectral_weight

    if args.from_checkpoint:
        model = args.from_checkpoint
        num_classes = metadata["model"]["num_classes"]
    else:
        num_classes = args.num_classes or (
            len(SYNAPSE_CLASSES) if phantom else max_label(slices) + 1)
        config = tiny_config(model_name) if args.tiny else {}
        config.update(parse_set(args.set))
        model = build_model(model_name, num_classes, **config)
    if args.class_names:
        names = [n.strip() for n in args.class_names.split(",")]
    elif phantom:
        names = list(SYNAPSE_CLASSES)
        metadata.setdefault("class_colors", [list(c) for c in SYNAPSE_COLORS])
    else:
        names = metadata.get("class_names") or ["background"] + [
            f"class {i}" for i in range(1, num_classes)]
    if len(names) != num_classes:
        raise ValueError(f"--class-names gives {len(names)} names but the model has "
                         f"{num_classes} classes")
    metadata.update(
        class_names=names,
        normalization=norm.to_metadata(),
        slice_axis=0,
        encoder_weights=getattr(getattr(model, "encoder", None), "weights_source",
                                metadata.get("encoder_weights", "random")),
    )
    argv = getattr(args, "argv", None) or sys.argv[1:]  # cli.main sets args.argv
    metadata["training"] = {"command": "l2gnet " + shlex.join(argv),
                            "data": args.data, "val": args.val, "preset": args.model}
    cfg = TrainConfig(
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, optimizer=args.optimizer,
        input_size=tuple(args.input_size), augment=args.augment, amp=not args.no_amp,
        seed=args.seed, device=args.device, max_steps=args.max_steps, loss=loss,
        out_dir=args.out_dir, resume=args.resume, num_workers=args.num_workers,
    )
    print(f"training {args.model} ({model_name}, {num_classes} classes) on {len(slices)} "
          f"slices, validating on {len(val)} volumes -> {args.out_dir}", file=sys.stderr)
    with TrainProgress() as progress:
        result = fit(model, slices, val, cfg, metadata=metadata, callback=progress)
    for record in result.history:
        print(json.dumps(record))
    print(f"last checkpoint: {result.last_checkpoint}", file=sys.stderr)
    if result.best_checkpoint:
        print(f"best checkpoint: {result.best_checkpoint}", file=sys.stderr)
    return 0
