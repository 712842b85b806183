"""New classes through the panels, as a user goes (docs/new-classes.md): paint a label the
model does not have, the Fine-tune panel asks for its name before Start and teaches it; a
model with an added class names it in Segment's output, the status bar, the Explain vote
column, and the saved NIfTI and DICOM SEG files (all through the checkpoint's metadata)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import torch

from napari_l2gnet._session import session_for
from scan_io.nifti import read_class_names
from src_model import build_model, load_checkpoint, save_checkpoint
from src_model.checkpoint_meta import AddedClass
from src_model.class_growth import grow_classes, grown_metadata
from src_model.testing import tiny_config
from tests.helpers import save_finetune_start

PLUGIN = "napari-l2gnet"
NAMES = ["background", "organ a", "organ b"]
TIMEOUT_MS = 120_000


def _tiny(tmp_path: Path) -> Path:
    return save_finetune_start(tmp_path / "tiny.safetensors", names=NAMES, plan_vote=True)


def _scan_file(tmp_path: Path) -> Path:
    """A small NIfTI scan in [0, 1] with a bright square (the 'lesion')."""
    import nibabel as nib

    rng = np.random.default_rng(0)
    data = rng.random((32, 32, 4), dtype=np.float32) * 0.3
    data[20:28, 4:12, :] = 1.0
    path = tmp_path / "scan.nii.gz"
    nib.save(nib.Nifti1Image(data, np.diag([1.0, 1.0, 3.0, 1.0])), str(path))
    return path


def _segment(viewer, qtbot, checkpoint):
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Segment")
    widget.set_checkpoint(checkpoint)
    widget.device_combo.setCurrentText("cpu")
    widget.run()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=TIMEOUT_MS)
    return widget.last_layer


def test_finetune_panel_asks_for_a_name_and_teaches_the_new_label(make_napari_viewer, qtbot,
                                                                  tmp_path) -> None:
    checkpoint = _tiny(tmp_path)
    viewer = make_napari_viewer()
    session_for(viewer).set_checkpoint(checkpoint)
    viewer.open(str(_scan_file(tmp_path)), plugin=PLUGIN)
    labels = _segment(viewer, qtbot, checkpoint)
    _, panel = viewer.window.add_plugin_dock_widget(PLUGIN, "Fine-tune")
    panel.epochs_spin.setValue(1)
    panel.batch_spin.setValue(2)
    assert not panel.new_classes.isVisibleTo(panel)  # only the model's classes so far
    labels.brush_size = 8
    for z in (1, 2):  # the user paints label 3, which the model does not have
        labels.paint((z, 24, 8), 3)
    # the panel says so as soon as it is painted, before Start
    qtbot.waitUntil(lambda: panel.new_classes.isVisibleTo(panel), timeout=5000)
    assert panel.new_classes.new_values == [3]
    assert not panel.start()  # refused until the new value has a name ...
    assert "Label 3 is not one of the model's classes: give it a name under 'New classes'" \
        in panel.status.text()
    assert panel.new_classes.isVisibleTo(panel) and panel.new_classes.new_values == [3]
    note = panel.new_classes.note.text()
    assert "the model does not have (3)" in note and "Not named yet: 3" in note
    shown = labels.colormap.map(np.asarray([3]))[0, :3]
    np.testing.assert_allclose(panel.new_classes.rows[3][1].rgb, shown, atol=1e-6)
    panel.new_classes.set_name(3, "lesion")  # ... named: Start runs
    assert panel.start(), panel.status.text()
    qtbot.waitUntil(lambda: not panel.is_running(), timeout=TIMEOUT_MS)
    report = panel.last_report
    assert report is not None, panel.last_error
    assert report.new_classes == ["lesion"]
    model, meta = load_checkpoint(report.checkpoint)
    assert model.num_classes == 4 and meta.class_names == (*NAMES, "lesion")
    np.testing.assert_allclose(meta.class_colors[3][:3], shown, atol=1e-6)
    assert "napari Fine-tune panel" in meta.card.added_classes[0].taught_on


def test_too_many_or_out_of_order_new_values_are_refused(make_napari_viewer, qtbot,
                                                         tmp_path) -> None:
    checkpoint = _tiny(tmp_path)
    viewer = make_napari_viewer()
    session_for(viewer).set_checkpoint(checkpoint)
    viewer.open(str(_scan_file(tmp_path)), plugin=PLUGIN)
    labels = _segment(viewer, qtbot, checkpoint)
    _, panel = viewer.window.add_plugin_dock_widget(PLUGIN, "Fine-tune")
    labels.paint((1, 5, 5), 5)  # skips label 3
    assert not panel.start()
    assert "label 5 but the model has 3 classes (0..2): new classes take the next labels " \
        "in order (3); repaint with label 3" in panel.status.text()
    labels.data_setitem((np.full(200, 2), np.repeat(np.arange(20), 10),
                         np.tile(np.arange(10), 20)), np.arange(3, 203))
    assert not panel.start()
    assert "more than 8 new classes at once is refused" in panel.status.text()


def _grown_checkpoint(tmp_path: Path) -> Path:
    """A tiny model grown by 'lesion', made to predict it everywhere (bias and bucket votes),
    so that every place that shows class names has the new one to show."""
    model = build_model("l2gnet", 3, **tiny_config("l2gnet"), plan_vote=True).eval()
    grown = grow_classes(model, 1)
    with torch.no_grad():
        grown.head.bias[3] = 50.0
        grown.bottleneck.bucket_votes.zero_()
        grown.bottleneck.bucket_votes[0, 2, 3] = 4.0  # reference 0, bucket 2 votes lesion
    meta = grown_metadata({"model": {"name": "l2gnet", "num_classes": 3}, "class_names": NAMES,
                           "input_size": [32, 32], "normalization": {"kind": "none"}},
                          [AddedClass("lesion", 3, taught_on="a test")],
                          colors=[[0, 0, 0], [1, 0, 0], [0, 1, 0], [0.2, 0.4, 1.0]])
    return save_checkpoint(tmp_path / "grown.safetensors", grown, meta)


def test_an_added_class_is_named_everywhere(make_napari_viewer, qtbot, tmp_path) -> None:
    from scan_io.testing import write_dicom_series

    checkpoint = _grown_checkpoint(tmp_path)
    viewer = make_napari_viewer()
    session_for(viewer).set_checkpoint(checkpoint)
    rng = np.random.default_rng(1)
    series = tmp_path / "series"
    write_dicom_series(series, (rng.random((3, 32, 32)) * 400).astype(np.int16),
                       np.diag([0.8, 0.8, 3.0, 1.0]), series_description="test")
    [image] = viewer.open(str(series), plugin=PLUGIN)
    layer = _segment(viewer, qtbot, checkpoint)
    # Segment's output and its layer
    assert (np.asarray(layer.data) == 3).all()
    assert layer.metadata["l2gnet"]["class_names"][-1] == "lesion"
    np.testing.assert_allclose(layer.colormap.map(np.asarray([3]))[0, :3], [0.2, 0.4, 1.0])
    # the status bar (napari reads the layer's features under the cursor)
    status = layer.get_status((1, 10, 10), world=True)
    assert "lesion" in str(status)
    # the Explain table's vote column
    _, explain = viewer.window.add_plugin_dock_widget(PLUGIN, "Explain")
    explain.ref_spin.setValue(0)
    explain._fill_table()
    assert explain.table.item(2, 3).text().startswith("lesion")
    # saved files: NIfTI (class names in its header) and DICOM SEG (segment labels)
    nifti = tmp_path / "labels.nii.gz"
    layer.save(str(nifti), plugin=PLUGIN)
    assert read_class_names(nifti) == [*NAMES, "lesion"]
    seg = tmp_path / "labels.dcm"
    layer.save(str(seg), plugin=PLUGIN)
    assert {s.SegmentLabel for s in pydicom.dcmread(seg).SegmentSequence} == {"lesion"}
    del image
