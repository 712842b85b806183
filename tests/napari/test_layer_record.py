"""``metadata["l2gnet"]`` as a ``LayerRecord``: one writer, one reader that copes with what the
plugin did not make and with older sessions; Segment's layers carry it, the reader's don't."""

from __future__ import annotations

import numpy as np

from napari_l2gnet._layer_record import (
    META_KEY,
    SEGMENTATION,
    LayerRecord,
    mark_edited,
    read_record,
    write_record,
)
from napari_l2gnet.testing import dock, open_scan


def test_round_trip_keeps_every_field_and_unknown_keys() -> None:
    labels = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    record = LayerRecord(role=SEGMENTATION, source_image="scan", checkpoint="/m/a.safetensors",
                         axis=2, class_names=["background", "liver"], model_labels=labels,
                         explanation=object(), edited=True, found=["liver"],
                         spurious={"spleen": 3}, extra={"from_a_newer_version": 1})
    metadata: dict = {"nifti": {"kind": "image"}}
    write_record(metadata, record)
    assert isinstance(metadata[META_KEY], dict)  # napari copies metadata as plain data
    assert metadata[META_KEY]["from_a_newer_version"] == 1  # written back unchanged
    back = read_record(metadata)
    assert back.model_labels is labels and back.explanation is record.explanation
    assert {k: v for k, v in vars(back).items() if k not in ("model_labels",)} == {
        k: v for k, v in vars(record).items() if k not in ("model_labels",)}
    assert metadata["nifti"] == {"kind": "image"}  # the rest of the metadata untouched


def test_reader_tolerates_old_sessions_and_other_layers() -> None:
    old = {META_KEY: {"role": "segmentation", "source_image": "scan", "axis": None,
                      "class_names": ("background", "liver"), "model_labels": None}}
    record = read_record(old)
    assert record.is_segmentation and record.axis == 0 and not record.edited
    assert record.class_names == ["background", "liver"] and record.found == []
    assert record.spurious == {} and record.checkpoint is None
    for nothing in ({}, {META_KEY: None}, {META_KEY: "junk"}, None):
        assert read_record(nothing) == LayerRecord()
    # a SEG file's labels (the DICOM SEG reader) name their classes outside the record
    assert read_record({"class_names": ["background", "lesion"]}).class_names == [
        "background", "lesion"]


def test_mark_edited_keeps_the_rest() -> None:
    metadata: dict = {}
    write_record(metadata, LayerRecord(role=SEGMENTATION, axis=1, class_names=["bg", "a"]))

    class Layer:  # anything with a metadata dict, as napari's layers and proxies have
        pass

    layer = Layer()
    layer.metadata = metadata
    mark_edited(layer)
    record = read_record(layer)
    assert record.edited and record.axis == 1 and record.class_names == ["bg", "a"]


def test_segment_writes_it_and_the_reader_does_not(make_napari_viewer, qtbot, tiny_checkpoint,
                                                   scan_file) -> None:
    viewer = make_napari_viewer()
    image = open_scan(viewer, scan_file)
    assert read_record(image) == LayerRecord()  # opened, not made by the plugin
    assert META_KEY not in image.metadata
    segment = dock(viewer, "Segment")
    segment.set_checkpoint(tiny_checkpoint)
    segment.device_combo.setCurrentText("cpu")
    segment.run()
    qtbot.waitUntil(lambda: segment.worker is None, timeout=60_000)
    layer = viewer.layers["scan [tiny]"]
    record = read_record(layer)
    assert record.is_segmentation and record.source_image == "scan"
    assert record.checkpoint == str(tiny_checkpoint) and record.axis == 0
    assert record.class_names == ["background", "organ a", "organ b"]
    np.testing.assert_array_equal(record.model_labels, layer.data)
    assert record.explanation is not None and not record.edited
    assert set(record.found) | set(record.spurious) <= set(record.class_names)
    layer.paint((2, 10, 10), 1)
    assert read_record(layer).edited

