"""The checkpoints shipped in ``napari_l2gnet/resources``, described by their own metadata.

| file | modality | classes | trained on |
|---|---|---|---|
| ``acdc_cine_mri_l2gnet.safetensors`` | cine MRI | RV, Myo, LV | ACDC training patients |
| ``demo_l2gnet.safetensors`` | CT (phantom) | 8 abdominal organs | generated phantoms only |

The list is read from the folder, so a model added there shows up in Segment's chooser with
no code change (give it a model card: ``benchmarks/make_model_card.py``).
"""

from __future__ import annotations

from pathlib import Path

from training.inference.shipped_models import ModelSummary, list_checkpoints

from ._session import RESOURCES

ACDC_MRI_CHECKPOINT = RESOURCES / "acdc_cine_mri_l2gnet.safetensors"


def shipped_models() -> list[ModelSummary]:
    """The package's checkpoints, real-data models first (empty if none is installed)."""
    return list_checkpoints(RESOURCES) if RESOURCES.is_dir() else []


def is_shipped(path: str | Path) -> bool:
    """Whether ``path`` is one of the package's own checkpoints (never overwritten)."""
    try:
        return Path(path).resolve().parent == RESOURCES.resolve()
    except OSError:
        return False
