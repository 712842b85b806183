"""What the Fine-tune panel trains: the form's choices turned into a checked job (no Qt).

``prepare`` reads the image and corrected labels layers, the starting checkpoint, where
Accept will save, the annotated slices, the classes (new ones the user named included) and
the annotation store's earlier cases, and returns a ``training.finetuning.process.FinetuneJob``
with what the run's result and Accept need beside it. Every check raises ``ValueError`` with
a sentence that says what to fix, in the order a user meets them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from training.finetuning.finetune import FinetuneSettings

from ._annotations import layer_axis
from ._new_classes import layer_class_colors


@dataclasses.dataclass
class JobForm:
    """The Fine-tune form as Start reads it; the callables ask the panel when needed."""

    image: Any  # the Image layer (None: none chosen)
    labels: Any  # the corrected Labels layer (None: none chosen)
    checkpoint: str  # to start from
    output: str  # where Accept saves
    overwrite: bool  # the output may be the input
    settings: FinetuneSettings
    annotated: Callable[[Any], list[int]]  # labels layer -> annotated slices
    no_slices: Callable[[Any], str]  # labels layer -> what to do when none are
    # (labels layer, the model's class colours) -> (names, colours) of every class when the
    # user named new ones, else None; ValueError for a label value left unnamed
    new_classes: Callable[[Any, Sequence[Sequence[float]]], tuple | None]
    store: Callable[[], Any]  # the annotation store to include (None: not included)


def checked_output(output: str, checkpoint: Path, overwrite: bool) -> Path:
    """Where Accept will save: a .safetensors file that is not the input (unless
    ``overwrite``) and not a folder."""
    if not output.strip():
        raise ValueError("Choose where to save the fine-tuned checkpoint")
    out = Path(output.strip()).expanduser()
    if out.suffix != ".safetensors":
        raise ValueError(f"The output checkpoint {out.name} must end in .safetensors")
    if out.resolve() == checkpoint.resolve() and not overwrite:
        raise ValueError("The output is the input checkpoint: choose another output path, "
                         "or tick 'overwrite the input checkpoint'")
    if out.is_dir():
        raise ValueError(f"The output {out} is a folder; give a file name")
    return out


def prepare(form: JobForm) -> tuple[Any, Path, dict[str, Any]]:
    """``(job, output path, extras)``: the run's job, where Accept saves, and what the result
    view and Accept need (``RunInfo``'s fields); ``ValueError`` says what to fix."""
    from src_model import read_metadata
    from training.data.normalization import IntensityNormalization
    from training.finetuning.finetune import volume_from_arrays
    from training.finetuning.process import FinetuneJob
    from training.finetuning.store_volumes import StoreVolumes, store_volumes
    from training.fitting.new_classes import model_class_names

    image, labels = form.image, form.labels
    if image is None:
        raise ValueError("Choose an image layer (the scan the labels were drawn on)")
    if labels is None:
        raise ValueError("Choose a labels layer with your corrections (run Segment first, "
                         "or add a Labels layer and paint)")
    if not form.checkpoint.strip():
        raise ValueError("Choose the checkpoint to start from")
    src_path = Path(form.checkpoint.strip()).expanduser()
    meta = read_metadata(src_path)  # CheckpointError (a ValueError) says what is wrong
    out_path = checked_output(form.output, src_path, form.overwrite)
    if getattr(image, "multiscale", False) or getattr(labels, "multiscale", False):
        raise ValueError("Fine-tuning needs single-resolution image and labels layers "
                         "(these are multiscale)")
    annotated = form.annotated(labels)
    if not annotated:
        raise ValueError(form.no_slices(labels))
    axis = layer_axis(labels) if np.ndim(labels.data) == 3 else 0
    normalization = IntensityNormalization.from_metadata(meta.get("normalization"))
    num_classes = int(meta["model"]["num_classes"])
    grown = form.new_classes(labels, meta.get("class_colors")
                             or layer_class_colors(labels, num_classes))
    names = list(grown[0]) if grown else model_class_names(meta)
    label_data = np.array(labels.data, copy=True)  # as trained on, for the store
    volume = volume_from_arrays(
        np.asarray(image.data), label_data, annotated, axis=axis,
        normalization=normalization, num_classes=len(names), name=labels.name,
        spacing=scan_spacing(image))
    store = form.store()
    source = (image.metadata.get("nifti") or {}).get("path")
    earlier = (store_volumes(store, names, normalization, current=(source, axis, annotated))
               if store is not None else StoreVolumes())
    volumes = [volume, *earlier.volumes]
    overrides = {"finetuned_from": str(src_path),
                 "finetune": {"source_image": image.name, "labels": labels.name,
                              "axis": axis, "slices": annotated,
                              "store_cases": [c.case_id for c in earlier.cases]}}
    extras = {"class_names": names, "notes": earlier.notes,
              "earlier": (len(earlier.volumes), earlier.slices),
              "corrected_labels": [v.labels[v.corrected] for v in volumes],
              "case": {"image": np.asarray(image.data), "labels": label_data,
                       "corrected": annotated, "axis": axis, "class_names": names,
                       "nifti": image.metadata.get("nifti"),
                       "spacing": tuple(float(x) for x in image.scale)}}
    job = FinetuneJob(str(src_path), volumes, form.settings, overrides)
    if grown:  # teach the new values as new classes (the model grows; docs/new-classes.md)
        job.class_names, job.class_colors = grown
        job.taught_on = (f"the napari Fine-tune panel: {len(annotated)} corrected slices "
                         f"of '{image.name}'")
    return job, out_path, extras


def scan_spacing(layer) -> tuple[float, ...] | None:
    """Voxel size in mm in the layer's axis order, when the layer came from a scan file (a
    plain array's scale is not known to be millimetres)."""
    if "nifti" not in layer.metadata:
        return None
    return tuple(float(s) for s in layer.scale[-layer.ndim:])
