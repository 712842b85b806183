"""Teaching that carries (issue 24): what a model taught on a few corrected slices gets right
on the slices nobody corrected, on another patient, and at a site, patient after patient.

Three parts, each printing one JSON line per run (``--out FILE`` appends them there too):

``ct``      The real abdominal CT (../shared/data/ct_abdomen, 3 mm, TotalSegmentator's labels
            standing in for a radiologist's corrections). From the shipped demo checkpoint,
            6 corrected slices in three choices -- ``even`` (evenly spaced over the labelled
            range), ``fixed`` (1, 6, 12, 17, 23, 28), ``middle`` (clustered in the middle
            third; ``ranked``: the first six the Fine-tune panel's *Where to correct next*
            list names on the untouched scan) -- fine-tuned through
            ``training.finetuning.run_finetune`` (the panel's and ``l2gnet finetune``'s
            path): Dice per class on the uncorrected slices before and after, on the
            corrected slices, seconds per round. ``--save-dir`` keeps each
            taught checkpoint (``ct_<choice>.safetensors``) for the next part.
            ``--then-add 4,23`` (``ranked``, ``uncertain``) runs the user's next round: those
            slices corrected too, fine-tuned from the taught model (``--then-from start``: from the
            start on all of them), scored on the slices still uncorrected.
``second``  Another real CT patient kept aside (../shared/data/ct_dicom/siemens_jpeg2000,
            0.98 mm, JPEG 2000; no labels): the starting and the taught models side by side
            -- volume per organ (mL), agreement between the two (Dice), whether a liver is
            found (a connected region of at least 100 mL) -- plus, where it exists, the real
            liver label of ct_dicom/ct3slice (dcmqi's DICOM SEG, 0.81 mm) scored by Dice.
            ``--screenshot PNG`` draws the middle slice with both models' labels.
``acdc``    ACDC as a site: a start model trained on 5 training patients (a small CPU
            config, ``--input-size``), then 3 new val patients one after another, 4 corrected
            slices each (end-diastole); each round fine-tunes the previous round's model on
            every corrected case so far and scores the other 7 val patients (both frames).

    nice -n 5 python benchmarks/teach_curve.py ct --threads 2 --save-dir /tmp/teach
    nice -n 5 python benchmarks/teach_curve.py second --taught /tmp/teach/ct_even.safetensors
    nice -n 5 python benchmarks/teach_curve.py acdc --threads 2

Targets (issue 24): ct, each choice: every painted class >= 0.60 on the uncorrected slices,
mean >= 0.80; one round of 6 slices <= 3 minutes on 2 cores; second: the taught model never
worse than the start; acdc: the curve rises every round.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data"
CHECKPOINT = ROOT / "napari_l2gnet" / "resources" / "demo_l2gnet.safetensors"
FIXED = [1, 6, 12, 17, 23, 28]


def emit(record: dict, out: str | None) -> None:
    line = json.dumps(record)
    print(line, flush=True)
    if out:
        with open(out, "a") as f:
            f.write(line + "\n")


def machine() -> dict:
    """How loaded the machine was: the 1-minute load average per core, at the time."""
    load = os.getloadavg()[0]
    return {"loadavg_1min": round(load, 2), "cores": os.cpu_count()}


def class_dice(pred: np.ndarray, truth: np.ndarray, names: list[str]) -> dict[str, float]:
    """Dice per class present in ``truth`` (and their mean)."""
    from training.evaluation.metrics import dice

    out = {}
    for c, name in enumerate(names[1:], start=1):
        if (truth == c).any():
            out[name] = round(float(dice(pred == c, truth == c)), 4)
    out["mean"] = round(float(np.mean(list(out.values()))), 4) if out else float("nan")
    return out


# ------------------------------------------------------------------------------------ ct
def slice_choice(truth: np.ndarray, choice: str, count: int = 6) -> list[int]:
    labelled = np.flatnonzero(truth.reshape(truth.shape[0], -1).any(1))
    lo, hi = int(labelled[0]), int(labelled[-1])
    if choice == "fixed":
        return list(FIXED)
    if choice == "even":
        return sorted({int(round(v)) for v in np.linspace(lo, hi, count)})
    if choice == "middle":
        third = (hi - lo + 1) / 3
        start = int(round(lo + third))
        return list(range(start, start + count))
    raise ValueError(f"unknown slice choice {choice!r}")


def run_ct(args: argparse.Namespace) -> None:
    import torch

    from scan_io.volume import load_scan
    from src_model import read_metadata
    from training.data.normalization import IntensityNormalization, normalize
    from training.finetuning.coverage import uncovered_slices
    from training.finetuning.finetune import CorrectedVolume, FinetuneSettings, run_finetune
    from training.inference import predict_volume

    torch.set_num_threads(args.threads)
    scan = load_scan(DATA / "ct_abdomen" / "example_ct_sm.nii.gz")
    truth = load_scan(DATA / "ct_abdomen" / "example_seg_synapse8.nii.gz", labels=True).data
    meta = read_metadata(CHECKPOINT)
    names = list(meta["class_names"])
    image = normalize(scan.data, IntensityNormalization.from_metadata(meta["normalization"]))
    plain = {"normalization": {"kind": "none"}}
    start = predict_volume(image, str(CHECKPOINT), metadata=plain, spacing=scan.spacing).labels
    from training.commands.train import parse_set

    settings = FinetuneSettings(**parse_set(args.set))
    for choice in args.choices:
        if choice == "ranked":  # the first six of the panel's Where to correct next list
            from training.finetuning.next_slices import slices_to_correct

            corrected = sorted(p.index for p in slices_to_correct(
                scan.data, CHECKPOINT, spacing=scan.spacing, count=6))
        else:
            corrected = slice_choice(truth, choice)
        untouched = [i for i in range(truth.shape[0]) if i not in set(corrected)]
        load0 = machine()
        t0, c0 = time.perf_counter(), time.process_time()
        with tempfile.TemporaryDirectory() as tmp:
            report = run_finetune(
                CHECKPOINT,
                [CorrectedVolume("example_ct_sm", image, truth, corrected, spacing=scan.spacing)],
                settings, tmp, taught_on="ct_abdomen/example_ct_sm.nii.gz")
            seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
            pred = predict_volume(image, report.checkpoint, metadata=plain,
                                  spacing=scan.spacing).labels
            target_mm = read_metadata(report.checkpoint).get("target_spacing_mm")
            if args.save_dir:
                Path(args.save_dir).mkdir(parents=True, exist_ok=True)
                shutil.copyfile(report.checkpoint,
                                Path(args.save_dir) / f"ct_{choice}.safetensors")
            if args.then_add:
                _second_round(args, scan.data, image, truth, scan.spacing, names, corrected,
                              report.checkpoint, pred, settings, choice)
        after = class_dice(pred[untouched], truth[untouched], names)
        beyond = uncovered_slices("example_ct_sm", pred, corrected, names)
        flagged = list(beyond.slices) if beyond else []
        rest = [i for i in untouched if i not in set(flagged)]
        wrong = pred != truth
        painted = [n for c, n in enumerate(names[1:], 1) if (truth[corrected] == c).any()]
        emit({"part": "ct", "choice": choice, "slices": corrected,
              "settings": {k: v for k, v in vars(settings).items()},
              "seconds": round(seconds, 1), "cpu_seconds": round(cpu, 1),
              "threads": args.threads, "machine_before": load0, "machine_after": machine(),
              "chosen_epoch": report.chosen_epoch,
              "target_spacing_mm": target_mm,
              "corrected_dice_before": report.corrected_dice_before,
              "corrected_dice_after": report.corrected_dice_after,
              "uncorrected_before": class_dice(start[untouched], truth[untouched], names),
              "uncorrected_after": after,
              "painted_classes": painted,
              "warnings": report.warnings,
              # the slices the report flags as beyond the corrections: how much of the
              # error on the uncorrected slices lies there, and Dice there and elsewhere
              "flagged_slices": flagged,
              "errors_in_flagged": round(float(wrong[flagged].sum() /
                                               max(1, wrong[untouched].sum())), 3),
              "dice_flagged": class_dice(pred[flagged], truth[flagged], names)["mean"]
              if flagged else None,
              "dice_unflagged": class_dice(pred[rest], truth[rest], names)["mean"],
              "min_painted": min(after.get(n, 0.0) for n in painted),
              "targets_met": bool(min(after.get(n, 0.0) for n in painted) >= 0.60
                                  and after["mean"] >= 0.80)}, args.out)


# ------------------------------------------------------------------------------- second
def _second_round(args, raw, image, truth, spacing, names, corrected, taught, pred, settings,
                  choice) -> None:
    """The user's next round: ``--then-add`` slices corrected as well (``ranked``: the two
    the Fine-tune panel's *Where to correct next* list puts first; ``uncertain``: the two most
    uncertain, its ranking before coverage came first), fine-tuned from the taught model
    (``--then-from taught``, what Accept then Start again does) or from the start on all
    of them; Dice on the slices still uncorrected, before and after."""
    from training.finetuning.finetune import CorrectedVolume, run_finetune
    from training.finetuning.next_slices import slices_to_correct
    from training.inference import predict_volume
    from training.inference.uncertainty import rank_slices

    plain = {"normalization": {"kind": "none"}}
    if args.then_add == "ranked":
        extra = [p.index for p in slices_to_correct(raw, taught, corrected=corrected,
                                                    spacing=spacing, count=2)]
    elif args.then_add == "uncertain":
        probs = predict_volume(image, taught, metadata=plain, spacing=spacing,
                               return_probabilities=True).probabilities
        extra = rank_slices(probs, 2, exclude=corrected, spacing=2)
    else:
        extra = [int(v) for v in args.then_add.split(",")]
    now = sorted(set(corrected) | set(extra))
    rest = [i for i in range(truth.shape[0]) if i not in set(now)]
    c0 = time.process_time()
    with tempfile.TemporaryDirectory() as tmp:
        start = taught if args.then_from == "taught" else CHECKPOINT
        report = run_finetune(start, [CorrectedVolume("example_ct_sm", image, truth, now,
                                                      spacing=spacing)],
                              settings, tmp, taught_on="ct_abdomen/example_ct_sm.nii.gz")
        after = predict_volume(image, report.checkpoint, metadata=plain,
                               spacing=spacing).labels
    emit({"part": "ct_second_round", "choice": choice, "first_slices": corrected,
          "added": extra, "from": args.then_from,
          "cpu_seconds": round(time.process_time() - c0, 1),
          "trust": round(report.trust, 3), "trust_slices": report.trust_slices,
          "froze_body": report.froze_body, "pseudo_slices": report.pseudo_slices,
          "chosen_epoch": report.chosen_epoch,
          "before": class_dice(pred[rest], truth[rest], names),
          "after": class_dice(after[rest], truth[rest], names),
          "warnings": report.warnings}, args.out)


def _ct3slice_liver(scan) -> np.ndarray | None:
    """The real liver label of ct_dicom/ct3slice on ``scan``'s display grid, matching each
    SEG frame to its slice by pixel data (None when the files are absent or do not match)."""
    import highdicom as hd
    import pydicom

    folder, seg = DATA / "ct_dicom" / "ct3slice", DATA / "ct_dicom" / "ct3slice_liver_seg.dcm"
    if not seg.is_file():
        return None
    dataset = hd.seg.segread(str(seg))
    frames = {}
    for uid in {ref[2] for ref in dataset.get_source_image_uids()}:
        try:  # dcmqi does not state that spatial locations are preserved; they are
            frames[uid] = dataset.get_pixels_by_source_instance(
                source_sop_instance_uids=[uid], combine_segments=True,
                ignore_spatial_locations=True)[0]
        except (ValueError, KeyError, IndexError):
            continue
    out = np.zeros(scan.data.shape, np.uint8)
    matched = 0
    for path in sorted(folder.glob("*.dcm")):
        ds = pydicom.dcmread(path)
        if ds.SOPInstanceUID not in frames:
            continue
        hu = ds.pixel_array * float(getattr(ds, "RescaleSlope", 1)) + float(
            getattr(ds, "RescaleIntercept", 0))
        mask = frames[ds.SOPInstanceUID] > 0
        for i in range(scan.data.shape[0]):
            for flip_r in (False, True):
                for flip_c in (False, True):
                    a, m = hu, mask
                    if flip_r:
                        a, m = a[::-1], m[::-1]
                    if flip_c:
                        a, m = a[:, ::-1], m[:, ::-1]
                    if a.shape == scan.data.shape[1:] and np.array_equal(a, scan.data[i]):
                        out[i][m] = 1
                        matched += 1
    return out if matched else None


def _organ_summary(labels: np.ndarray, spacing, names: list[str]) -> dict[str, float]:
    voxel_ml = float(np.prod(spacing)) / 1000.0
    return {n: round(float((labels == c).sum()) * voxel_ml, 1)
            for c, n in enumerate(names[1:], start=1)}


def _largest_ml(mask: np.ndarray, spacing) -> float:
    from scipy import ndimage

    lab, n = ndimage.label(mask)
    if n == 0:
        return 0.0
    return float(np.bincount(lab.ravel())[1:].max()) * float(np.prod(spacing)) / 1000.0


def run_second(args: argparse.Namespace) -> None:
    import torch

    from scan_io.volume import load_scan
    from src_model import read_metadata
    from training.data.normalization import IntensityNormalization, normalize
    from training.inference import predict_volume

    torch.set_num_threads(args.threads)
    meta = read_metadata(CHECKPOINT)
    names = list(meta["class_names"])
    liver = names.index("liver")
    norm = IntensityNormalization.from_metadata(meta["normalization"])
    plain = {"normalization": {"kind": "none"}}
    for folder in ("siemens_jpeg2000", "ct3slice"):
        path = DATA / "ct_dicom" / folder
        if not path.exists():
            continue
        scan = load_scan(path)
        image = normalize(scan.data, norm)
        start = predict_volume(image, str(CHECKPOINT), metadata=plain,
                               spacing=scan.spacing).labels
        truth = _ct3slice_liver(scan) if folder == "ct3slice" else None
        for taught in args.taught:
            t_meta = read_metadata(taught)
            pred = predict_volume(image, str(taught), metadata=plain, spacing=scan.spacing)
            labels = pred.labels
            record = {
                "part": "second", "scan": f"ct_dicom/{folder}", "shape": list(scan.data.shape),
                "spacing": [round(s, 3) for s in scan.spacing], "taught": Path(taught).name,
                "taught_target_spacing_mm": t_meta.get("target_spacing_mm"),
                "start_ml": _organ_summary(start, scan.spacing, names),
                "taught_ml": _organ_summary(labels, scan.spacing, names),
                "start_liver_largest_ml": round(_largest_ml(start == liver, scan.spacing), 1),
                "taught_liver_largest_ml": round(_largest_ml(labels == liver, scan.spacing), 1),
                "agreement_start_vs_taught": class_dice(labels, start, names),
            }
            if truth is not None:
                from training.evaluation.metrics import dice

                record["liver_dice_vs_label"] = {
                    "start": round(float(dice(start == liver, truth > 0)), 4),
                    "taught": round(float(dice(labels == liver, truth > 0)), 4)}
            emit(record, args.out)
            if args.screenshot and folder == "siemens_jpeg2000":
                _screenshot(scan.data, start, labels, meta, args.screenshot)


def _screenshot(image, start, taught, meta, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import ListedColormap

    colors = [list(c)[:3] + [0.0 if i == 0 else 0.45]
              for i, c in enumerate(meta["class_colors"])]
    cmap = ListedColormap(colors)
    k = image.shape[0] // 2
    fig, axes = plt.subplots(1, 2, figsize=(10, 5.6))
    for ax, labels, title in ((axes[0], start, "starting model (demo, resize)"),
                              (axes[1], taught, "taught on 6 slices of another CT (3 mm)")):
        ax.imshow(np.clip(image[k], -160, 240), cmap="gray")
        ax.imshow(labels[k], cmap=cmap, vmin=0, vmax=len(colors) - 1, interpolation="nearest")
        ax.set_title(title, fontsize=10)
        ax.axis("off")
    fig.suptitle("ct_dicom/siemens_jpeg2000, middle slice (0.98 mm; no reference labels)",
                 fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    fig.savefig(path, dpi=80)
    plt.close(fig)


# --------------------------------------------------------------------------------- acdc
def _acdc_patients(names: list[str]) -> list[str]:
    return sorted({n.split("_")[0] for n in names})


def run_acdc(args: argparse.Namespace) -> None:
    import torch

    from training.commands.train import parse_set
    from training.data.cases import Slice
    from training.data.readers import read_acdc_slices, read_h5_volumes
    from training.evaluation.scoring import evaluate
    from training.finetuning.finetune import CorrectedVolume, FinetuneSettings, run_finetune
    from training.fitting.run_setup import prepare_run
    from training.fitting.trainer import TrainConfig

    torch.set_num_threads(args.threads)
    root = DATA / "acdc"
    slices = read_acdc_slices(root / "train_slices")
    train_patients = _acdc_patients([s.source for s in slices])[:args.train_patients]
    train = [Slice(s.image, s.label, s.source) for s in slices
             if s.source.split("_")[0] in train_patients]
    volumes = read_h5_volumes(root / "val_volumes")
    val_patients = _acdc_patients([v.name for v in volumes])
    new, others = val_patients[:3], val_patients[3:]
    held_out = [v for v in volumes if v.name.split("_")[0] in others]
    work = Path(args.save_dir or tempfile.mkdtemp(prefix="teach_acdc_"))
    work.mkdir(parents=True, exist_ok=True)
    names = ["background", "RV", "Myo", "LV"]

    def score(checkpoint) -> dict:
        report = evaluate(str(checkpoint), held_out, protocol="clinical", device="cpu",
                          batch_size=8)
        per = report["summary"]["per_class"]
        out = {n: round(float(per[n]["dice"]), 4) for n in names[1:]}
        out["mean"] = round(float(report["summary"]["mean"]["dice"]), 4)
        return out

    start = work / "start" / "best.safetensors"
    t0 = time.perf_counter()
    if not start.is_file():
        cfg = TrainConfig(epochs=args.start_epochs, batch_size=8, lr=2e-3, optimizer="adamw",
                          input_size=(args.input_size, args.input_size), augment="rotate",
                          device="cpu", out_dir=str(work / "start"), overwrite=True,
                          validate_every=args.start_epochs)
        from training.fitting.presets import resolve_preset

        cfg.loss = resolve_preset("l2gnet").loss_config()
        setup = prepare_run(train, cfg, model="l2gnet", model_config=_small_config(),
                            num_classes=4, val=held_out[:2], normalization="none",
                            class_names=names)
        setup.trainer().fit()
    emit({"part": "acdc", "round": 0, "train_patients": train_patients,
          "input_size": args.input_size, "start_seconds": round(time.perf_counter() - t0, 1),
          "scored_on": others, "dice": score(start), "machine": machine()}, args.out)

    current, corrected = start, []
    for k, patient in enumerate(new, start=1):
        ed = next(v for v in volumes if v.name == f"{patient}_frame01")
        labelled = np.flatnonzero(ed.label.reshape(ed.label.shape[0], -1).any(1))
        pick = sorted({int(labelled[int(round(p))])
                       for p in np.linspace(0, len(labelled) - 1, args.slices_per_patient)})
        corrected.append(CorrectedVolume(ed.name, ed.image, ed.label, pick))
        t1, c1 = time.perf_counter(), time.process_time()
        samples = {} if args.samples is None else {"samples_per_epoch": args.samples}
        report = run_finetune(current, corrected, FinetuneSettings(**{
            "epochs": args.epochs, **samples, "device": "cpu", **parse_set(args.set)}),
            work / f"round{k}", overwrite=True)
        seconds, cpu = time.perf_counter() - t1, time.process_time() - c1
        current = Path(report.checkpoint)
        emit({"part": "acdc", "round": k, "new_patient": patient, "slices": pick,
              "settings": parse_set(args.set), "trust": round(report.trust, 3),
              "kept_bn_stats": report.kept_bn_stats, "pseudo_slices": report.pseudo_slices,
              "cases_so_far": [v.name for v in corrected], "chosen_epoch": report.chosen_epoch,
              "corrected_dice_after": report.corrected_dice_after,
              "seconds": round(seconds, 1), "cpu_seconds": round(cpu, 1),
              "dice": score(current), "machine": machine()}, args.out)


def _small_config() -> dict:
    """The demo model's L2GNet (ResNet-18 encoder, 4 references, plan votes): small enough to
    train on two CPU cores in minutes."""
    return dict(encoder="resnet18", pre_channels=64, decoder_channels=[64, 32, 16, 16],
                decoder_head_channels=64, codebook_size=64, code_dim=64, num_refs=4,
                num_anchors=32, ref_size=16, plan_vote=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="part", required=True)
    ct = sub.add_parser("ct")
    ct.add_argument("--choices", nargs="+", default=["even", "fixed", "middle"],
                    choices=["even", "fixed", "middle", "ranked"],
                    help="ranked: the first six of the Fine-tune panel's list")
    ct.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="FinetuneSettings override, e.g. --set epochs=12")
    ct.add_argument("--save-dir")
    ct.add_argument("--then-add", help="a second round: these slices corrected as well "
                    "(e.g. 4,23; 'ranked': the first two of the panel's Where to correct "
                    "next list; 'uncertain': the two most uncertain)")
    ct.add_argument("--then-from", choices=["taught", "start"], default="taught",
                    help="the second round starts from the taught model or the start")
    second = sub.add_parser("second")
    second.add_argument("--taught", nargs="+", required=True)
    second.add_argument("--screenshot")
    acdc = sub.add_parser("acdc")
    acdc.add_argument("--input-size", type=int, default=128)
    acdc.add_argument("--train-patients", type=int, default=5)
    acdc.add_argument("--start-epochs", type=int, default=20)
    acdc.add_argument("--slices-per-patient", type=int, default=4)
    acdc.add_argument("--epochs", type=int, default=10)
    acdc.add_argument("--samples", type=int, default=None,
                      help="samples per epoch (default: FinetuneSettings's)")
    acdc.add_argument("--save-dir")
    acdc.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                      help="FinetuneSettings override for every round")
    for q in (ct, second, acdc):
        q.add_argument("--threads", type=int, default=2)
        q.add_argument("--out", help="also append the JSON lines to this file")
    args = p.parse_args()
    {"ct": run_ct, "second": run_second, "acdc": run_acdc}[args.part](args)


if __name__ == "__main__":
    main()
