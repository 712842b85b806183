"""4-D cine through the reader, Segment on every frame, and the Measure panel (volumes that
follow painting and Segment, cardiac indices from ED/ES layers or a cine), docked through the
manifest, on real ACDC frames written as NIfTI (1.5625 x 1.5625 x 10 mm)."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_l2gnet.testing import dock, dock_segment, open_scan, write_scan
from scan_io.nifti import affine_from_scale
from training.data.readers import read_h5_volumes
from training.evaluation.measure import CardiacClasses, cardiac_indices
from training.inference import predict_volume

REPO = Path(__file__).resolve().parents[2]
ACDC = REPO / "napari_l2gnet" / "resources" / "acdc_cine_mri_l2gnet.safetensors"
SPACING = (10.0, 1.5625, 1.5625)
ML = 1.5625 * 1.5625 * 10 / 1000
NAMES = "background,RV,Myo,LV"
TIMEOUT_MS = 60_000


def write_cine(path: Path, frames: np.ndarray, spacing=SPACING) -> Path:
    """(t, slices, rows, columns) display-layout frames as a 4-D NIfTI (x, y, z, t)."""
    img = nib.Nifti1Image(np.ascontiguousarray(frames.transpose(3, 2, 1, 0)),
                          affine_from_scale(spacing))
    img.header.set_xyzt_units("mm", "msec")
    img.header["pixdim"][4] = 40.0
    nib.save(img, str(path))
    return path


@pytest.fixture(scope="module")
def patient(shared_data):
    cases = {c.name: c for c in read_h5_volumes(shared_data / "acdc" / "val_volumes")
             if c.name.startswith("patient002")}
    return cases["patient002_frame01"], cases["patient002_frame02"]


def test_a_4d_nifti_opens_as_a_time_series(make_napari_viewer, tmp_path):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 1000, (3, 5, 12, 10)).astype(np.int16)
    viewer = make_napari_viewer()
    layer = open_scan(viewer, write_cine(tmp_path / "cine.nii.gz", frames))
    assert layer.data.shape == (3, 5, 12, 10) and viewer.dims.ndim == 4
    np.testing.assert_array_equal(layer.data, frames)
    np.testing.assert_allclose(layer.scale, (1.0, *SPACING))
    assert layer.metadata["cine"] == {"frames": 3, "frame_interval_ms": 40.0}
    # a 4-D file with one frame is a 3-D scan
    one = open_scan(viewer, write_cine(tmp_path / "one.nii.gz", frames[:1]))
    assert one.ndim == 3
    np.testing.assert_array_equal(one.data, frames[0])


def test_a_4d_file_with_time_on_another_axis_is_refused(make_napari_viewer, tmp_path):
    path = tmp_path / "t_on_axis4.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((6, 5, 4, 1, 3), np.int16), np.eye(4)), str(path))
    viewer = make_napari_viewer()
    with pytest.raises(Exception, match="time on axis 3"):
        viewer.open(str(path), plugin="napari-l2gnet")


def test_segment_runs_every_frame_of_a_cine(make_napari_viewer, qtbot, tiny_checkpoint,
                                            tmp_path):
    frames = np.random.default_rng(1).random((2, 4, 40, 36), dtype=np.float32)
    viewer = make_napari_viewer()
    open_scan(viewer, write_cine(tmp_path / "cine.nii.gz", frames))
    widget = dock_segment(viewer, tiny_checkpoint)
    assert not widget.postprocess_check.isEnabled()  # the tiny model chose none
    widget.run()
    assert widget.progress_bar.maximum() == 2 * 4  # every slice of every frame
    qtbot.waitUntil(lambda: widget.worker is None, timeout=TIMEOUT_MS)
    labels = widget.last_layer.data
    assert labels.shape == frames.shape
    for t in range(2):
        expected = predict_volume(frames[t], tiny_checkpoint, device="cpu", batch_size=4)
        np.testing.assert_array_equal(labels[t], expected.labels)
    assert widget.progress_bar.value() == 8


def test_segment_offers_the_shipped_models_post_processing(make_napari_viewer):
    viewer = make_napari_viewer()
    widget = dock(viewer, "Segment")
    widget.set_checkpoint(ACDC)
    assert widget.postprocess_check.isEnabled() and widget.postprocess_check.isChecked()
    assert "RV, Myo, LV" in widget.postprocess_check.text()


def test_measure_volumes_follow_painting(make_napari_viewer, qtbot, tmp_path, patient):
    ed, _ = patient
    viewer = make_napari_viewer()
    layer = open_scan(viewer, write_scan(tmp_path / "ed_seg.nii.gz", ed.label, SPACING))
    panel = dock(viewer, "Measure")
    panel.names_edit.setText(NAMES)
    panel.names_edit.editingFinished.emit()
    table = panel.volumes
    assert [r.name for r in table.classes] == ["RV", "Myo", "LV"]
    for row in table.classes:
        assert row.voxels == int((ed.label == row.label).sum())
        assert row.volume_ml == pytest.approx(row.voxels * ML)
    assert panel.table.item(2, 0).text() == "LV"
    before = panel.volumes.by_name("LV").voxels
    layer.brush_size = 1
    layer.paint((5, 20, 20), 3, refresh=True)  # one voxel, far from the heart
    qtbot.waitUntil(lambda: panel.volumes.by_name("LV").voxels == before + 1, timeout=5000)
    assert panel.table.item(2, 1).text() == str(before + 1)


def test_measure_cardiac_from_ed_es_layers_and_from_a_cine(make_napari_viewer, tmp_path,
                                                           patient):
    ed, es = patient
    viewer = make_napari_viewer()
    open_scan(viewer, write_scan(tmp_path / "ed_seg.nii.gz", ed.label, SPACING))
    open_scan(viewer, write_scan(tmp_path / "es_seg.nii.gz", es.label, SPACING))
    panel = dock(viewer, "Measure")
    panel.names_edit.setText(NAMES)
    panel.ed_combo.setCurrentText("ed_seg")
    panel.es_combo.setCurrentText("es_seg")
    panel.names_edit.editingFinished.emit()
    expected = cardiac_indices(ed.label, es.label, CardiacClasses(3, 1, 2), ML).to_dict()
    assert panel.indices.to_dict() == expected  # the same numpy counts: exact

    cine = open_scan(viewer, write_cine(tmp_path / "cine_seg.nii.gz",
                                        np.stack([es.label, ed.label, es.label])))
    assert cine.ndim == 4
    panel.ed_combo.setCurrentText("cine_seg")
    assert (panel.ed_frame.value(), panel.es_frame.value()) == (1, 0)  # largest, smallest LV
    assert panel.indices.to_dict() == expected
    lv, rv = panel.cine_curves
    assert lv.tolist() == pytest.approx([(es.label == 3).sum() * ML, (ed.label == 3).sum() * ML,
                                         (es.label == 3).sum() * ML])
    assert panel.plot.isVisibleTo(panel) and len(panel.plot.ax.lines) >= 2
    # a basal slice's link shows the cine at that frame (ES: frame 0) and slice
    z = panel.basal.es[0]
    assert panel.go_to_basal(f"es:{z}")
    assert tuple(viewer.dims.current_step[:2]) == (0, z)
    panel.es_frame.setValue(1)  # the user overrides ES: the indices follow
    assert panel.indices.lv.sv_ml == 0

    text = panel.copy_text()
    assert "LV" in text and "EF" in text and "cine_seg" in text
    out = panel.save_csv(tmp_path / "m.csv")
    assert "label,name,voxels,volume_ml,touches_border" in out.read_text()
    assert "structure,EDV_ml,ESV_ml,SV_ml,EF_percent,mass_g" in out.read_text()
    with pytest.raises(FileExistsError):
        panel.save_csv(out)


def test_measure_follows_segment(make_napari_viewer, qtbot, tmp_path, tiny_checkpoint, scan):
    viewer = make_napari_viewer()
    open_scan(viewer, write_scan(tmp_path / "scan.nii.gz", scan, (3.0, 0.5, 0.5)))
    panel = dock(viewer, "Measure")
    segment = dock_segment(viewer, tiny_checkpoint)
    segment.run()
    qtbot.waitUntil(lambda: segment.worker is None, timeout=TIMEOUT_MS)
    labels = np.asarray(segment.last_layer.data)
    assert panel.labels_combo.currentText() == segment.last_layer.name
    qtbot.waitUntil(lambda: panel.volumes.by_name("organ a").voxels == (labels == 1).sum(),
                    timeout=5000)
    assert [r.name for r in panel.volumes.classes] == ["organ a", "organ b"]
    assert panel.volumes.voxel_ml == pytest.approx(3.0 * 0.5 * 0.5 / 1000)
    assert panel.volumes.by_name("organ a").voxels == int((labels == 1).sum())
    # Segment again after a change: the table follows the replaced data
    segment.last_layer.data = np.zeros_like(labels)
    qtbot.waitUntil(lambda: panel.volumes.by_name("organ a").voxels == 0, timeout=5000)


def test_a_cine_segmentation_saves_as_a_4d_nifti(make_napari_viewer, qtbot, tiny_checkpoint,
                                                 tmp_path):
    from scan_io.cine import load_cine
    from scan_io.nifti import read_class_names

    frames = np.random.default_rng(2).random((2, 3, 40, 36), dtype=np.float32)
    source = write_cine(tmp_path / "cine.nii.gz", frames)
    viewer = make_napari_viewer()
    open_scan(viewer, source)
    widget = dock_segment(viewer, tiny_checkpoint)
    widget.run()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=TIMEOUT_MS)
    layer = widget.last_layer
    out = tmp_path / "cine_seg.nii.gz"
    layer.save(str(out), plugin="napari-l2gnet")
    img = nib.load(str(out))
    assert img.shape == nib.load(str(source)).shape  # (x, y, z, t) like the scan
    np.testing.assert_allclose(img.affine, nib.load(str(source)).affine)
    saved = load_cine(out, labels=True)
    np.testing.assert_array_equal(saved.frames, np.asarray(layer.data))
    assert read_class_names(out) == ["background", "organ a", "organ b"]


def test_measure_points_to_the_basal_slices(make_napari_viewer, tmp_path, patient):
    """The panel names the most basal heart slices at ED and ES (the stack starts at the
    base in ACDC; reversed, the same slices counted from the other end)."""
    ed, es = patient
    viewer = make_napari_viewer()
    open_scan(viewer, write_scan(tmp_path / "ed_seg.nii.gz", ed.label, SPACING))
    open_scan(viewer, write_scan(tmp_path / "es_seg.nii.gz", es.label, SPACING))
    open_scan(viewer, write_scan(tmp_path / "ed_flip.nii.gz", ed.label[::-1].copy(), SPACING))
    open_scan(viewer, write_scan(tmp_path / "es_flip.nii.gz", es.label[::-1].copy(), SPACING))
    panel = dock(viewer, "Measure")
    panel.names_edit.setText(NAMES)
    panel.ed_combo.setCurrentText("ed_seg")
    panel.es_combo.setCurrentText("es_seg")
    panel.names_edit.editingFinished.emit()
    heart_ed = np.flatnonzero(ed.label.reshape(len(ed.label), -1).any(1))
    heart_es = np.flatnonzero(es.label.reshape(len(es.label), -1).any(1))
    assert (panel.basal.ed, panel.basal.es) == (tuple(heart_ed[:2]), tuple(heart_es[:2]))
    assert f"slices {heart_ed[0]}, {heart_ed[1]} at ED" in panel.basal_note.text()
    # each named slice is a link that shows it: the ES layer, selected, at that slice
    assert f'<a href="es:{heart_es[1]}" style=' in panel.basal_links.text()
    viewer.layers["es_seg"].visible = False
    panel.basal_links.linkActivated.emit(f"es:{heart_es[1]}")
    assert viewer.layers.selection.active.name == "es_seg"
    assert viewer.layers["es_seg"].visible
    assert viewer.dims.current_step[0] == heart_es[1]
    assert panel.go_to_basal(f"ed:{heart_ed[0]}") and viewer.dims.current_step[0] == heart_ed[0]
    assert viewer.layers.selection.active.name == "ed_seg"
    assert not panel.go_to_basal("mid:3")
    last = len(ed.label) - 1
    panel.ed_combo.setCurrentText("ed_flip")
    panel.es_combo.setCurrentText("es_flip")
    assert panel.basal.ed == tuple(int(last - z) for z in heart_ed[:2])
    assert panel.basal.es == tuple(int(last - z) for z in heart_es[:2])
    panel.ed_combo.setCurrentText("ed_seg")
    panel.es_combo.setCurrentText("ed_seg")  # no ES chosen: no indices, no slices named
    assert panel.basal is None and panel.basal_note.text() == ""
