"""``metadata["l2gnet"]``: what the plugin records on a layer it made, as one dataclass.

Segment writes a ``LayerRecord`` on every segmentation (role "segmentation"): the image it was
made from, the checkpoint, the slice axis, the class names, a copy of the model's own labels
(kept beside the user's corrections, so Fine-tune can tell what was changed), the
explanation Explain shows, and whether the user has edited the layer since. Explain writes
one on its own layers (role "explanation"). Fine-tune, Measure, Explain and the writer read
it back with ``read_record``: the one reader, tolerant of layers the plugin did not make (an
empty record), of sessions saved by older versions (missing keys take their defaults) and of
newer ones (keys it does not know are kept in ``extra`` and written back unchanged).

On the layer the record is stored as a plain dict (``to_metadata``), so napari can copy and
compare layer metadata as it does any other. No Qt, no torch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

META_KEY = "l2gnet"
SEGMENTATION = "segmentation"
EXPLANATION = "explanation"


@dataclasses.dataclass
class LayerRecord:
    """What the plugin knows about a layer it made (``metadata["l2gnet"]``)."""

    role: str = ""  # "segmentation" (Segment), "explanation" (Explain), "" (not the plugin's)
    source_image: str | None = None  # the image layer's name
    checkpoint: str | None = None  # the model file that made it
    axis: int = 0  # the slice axis the model ran along
    class_names: list[str] = dataclasses.field(default_factory=list)
    model_labels: Any = None  # numpy array: the model's output, as it was before any edit
    explanation: Any = None  # training.inference.Explanation, or None
    edited: bool = False  # the user changed the layer (a re-run then leaves it alone)
    found: list[str] = dataclasses.field(default_factory=list)  # classes found
    spurious: dict[str, int] = dataclasses.field(default_factory=dict)  # class -> voxels
    what: str = ""  # an explanation layer: what it shows
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)  # keys this version lacks

    @property
    def is_segmentation(self) -> bool:
        return self.role == SEGMENTATION

    def to_metadata(self) -> dict[str, Any]:
        """The dict stored under ``metadata["l2gnet"]`` (unknown keys from ``extra`` kept)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
               if f.name != "extra"}
        return {**self.extra, **out}

    @classmethod
    def from_metadata(cls, value: Any) -> LayerRecord:
        """The record in a ``metadata["l2gnet"]`` value; anything not a mapping: empty."""
        if not isinstance(value, Mapping):
            return cls()
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        kwargs = {k: v for k, v in value.items() if k in known}
        extra = {k: v for k, v in value.items() if k not in known}
        record = cls(**kwargs, extra=extra)
        # old or hand-written records: None where a value is expected
        record.role = str(record.role or "")
        record.axis = int(record.axis) if record.axis is not None else 0
        record.class_names = [str(n) for n in (record.class_names or [])]
        record.found = list(record.found or [])
        record.spurious = dict(record.spurious or {})
        record.edited = bool(record.edited)
        record.what = str(record.what or "")
        return record


def read_record(layer_or_metadata: Any) -> LayerRecord:
    """The plugin's record on a layer (or a layer's metadata dict); empty when there is none.

    ``class_names`` falls back to the layer's own ``metadata["class_names"]``, which the
    DICOM SEG reader and the sample set on labels the plugin did not segment.
    """
    if layer_or_metadata is None:
        return LayerRecord()
    metadata = getattr(layer_or_metadata, "metadata", layer_or_metadata)
    if not isinstance(metadata, Mapping):
        return LayerRecord()
    record = LayerRecord.from_metadata(metadata.get(META_KEY))
    if not record.class_names and metadata.get("class_names"):
        record.class_names = [str(n) for n in metadata["class_names"]]
    return record


def write_record(layer_or_metadata: Any, record: LayerRecord) -> None:
    """Store ``record`` as the layer's ``metadata["l2gnet"]`` (the one writer)."""
    metadata = getattr(layer_or_metadata, "metadata", layer_or_metadata)
    metadata[META_KEY] = record.to_metadata()


def mark_edited(layer) -> None:
    """The user changed ``layer``: Segment will not replace it on a re-run."""
    record = read_record(layer)
    record.edited = True
    write_record(layer, record)
