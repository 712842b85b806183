"""Choose, per class, whether to keep only the largest 3-D component, on validation data.

nnU-Net's post-processing step: segment the validation volumes without post-processing,
then for each class compare the mean Dice and HD95 (TransUNet protocol, what
``l2gnet evaluate`` reports) with and without keeping its largest connected component
(``training.evaluation.postprocess_choice.choose_largest_component``). The classes where it
does not lower the Dice and improves Dice or HD95 are chosen. ``--write`` stores the choice in the
checkpoint's metadata (``postprocessing``; the weights are copied unchanged, written
atomically), where ``predict_volume``, ``l2gnet predict/evaluate/measure`` and the Segment
panel read it. Prints one JSON line per class and one for the choice.

The shipped models' choices were made with (docs/measure.md, "Post-processing"):

    python benchmarks/choose_postprocessing.py \
        napari_l2gnet/resources/acdc_cine_mri_l2gnet.safetensors \
        --data ../shared/data/acdc/val_volumes --write
    python benchmarks/choose_postprocessing.py \
        napari_l2gnet/resources/demo_l2gnet.safetensors --data phantom:200 --write

Each uses the data the model was validated (and selected) on during training
(``training.val`` in its metadata), as nnU-Net uses its cross-validation folds.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", type=Path)
    p.add_argument("--data", required=True, help="validation volumes (as l2gnet evaluate "
                   "--data takes them)")
    p.add_argument("--write", action="store_true", help="store the choice in the checkpoint")
    p.add_argument("--device", default="auto")
    args = p.parse_args(argv)

    import torch
    from safetensors.numpy import save_file

    from benchmarks.make_model_card import _META_KEY, read_checkpoint
    from scan_io.atomic import atomic_write_path
    from src_model import load_checkpoint
    from src_model.checkpoint_meta import CheckpointMeta
    from training.data.normalization import IntensityNormalization
    from training.data.specs import load_cases
    from training.evaluation.postprocess_choice import choose_largest_component
    from training.inference import InferenceSettings, SliceInferer

    torch.set_num_threads(max(1, torch.get_num_threads()))
    model, meta = load_checkpoint(args.checkpoint)
    cases = load_cases(args.data, IntensityNormalization.from_metadata(meta.normalization))
    inferer = SliceInferer(model, {**meta, "normalization": {"kind": "none"}},
                           InferenceSettings(device=args.device, resize_back="nearest",
                                             postprocess=False))
    preds = [inferer(c.image).labels for c in cases]
    choice = choose_largest_component(preds, [c.label for c in cases], list(meta.class_names),
                                      chosen_on=f"{args.data} ({len(cases)} volumes)")
    for name in meta.class_names[1:]:
        print(json.dumps({"class": name, **choice.measured[name]}))
    print(json.dumps({"checkpoint": str(args.checkpoint), "largest_component":
                      list(choice.largest_component), "chosen_on": choice.chosen_on}))
    if args.write:
        tensors, raw = read_checkpoint(args.checkpoint)
        raw["postprocessing"] = choice.to_dict()
        checked = CheckpointMeta.from_dict(raw, source=str(args.checkpoint))
        with atomic_write_path(args.checkpoint) as tmp:
            save_file(tensors, str(tmp), metadata={_META_KEY: json.dumps(checked.to_dict())})
        print(f"wrote the choice into {args.checkpoint}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
