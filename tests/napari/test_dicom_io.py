"""DICOM through napari: a series opens as exactly its NIfTI twin's layer, and labels made on
it save as DICOM SEG (and still as NIfTI). The series is generated from the real CT."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest

from napari_l2gnet._reader import get_reader, read_dicom, read_nifti
from napari_l2gnet._writer import LayerWriteError
from scan_io.dicom_seg import read_seg_labels
from scan_io.testing import display_affine_lps, write_dicom_series
from scan_io.volume import load_scan

PLUGIN = "napari-l2gnet"
SYNAPSE = ["background", "aorta", "gallbladder", "left_kidney", "right_kidney", "liver",
           "pancreas", "spleen", "stomach"]


@pytest.fixture(scope="module")
def ct(shared_data) -> Path:
    return shared_data / "ct_abdomen" / "example_ct_sm.nii.gz"


@pytest.fixture(scope="module")
def series(ct, tmp_path_factory) -> Path:
    twin = load_scan(ct)
    folder = tmp_path_factory.mktemp("dicom") / "abdomen"
    write_dicom_series(folder, twin.data, display_affine_lps(twin.nifti), slope=1.0,
                       intercept=-1024, seed=11, series_description="Abdomen CT")
    return folder


def test_reader_claims_dicom_folders_and_files_only(series, tmp_path):
    assert get_reader(str(series)) is read_dicom
    assert get_reader(str(next(series.iterdir()))) is read_dicom  # no extension, preamble
    (tmp_path / "pics").mkdir()
    (tmp_path / "pics" / "a.png").write_bytes(b"\x89PNG....")
    (tmp_path / "pics" / "notes").write_text("no suffix, not DICOM")
    (tmp_path / "pics" / "scan.h5").write_bytes(bytes(200))
    assert get_reader(str(tmp_path / "pics")) is None
    for name in ("a.png", "notes", "scan.h5"):
        assert get_reader(str(tmp_path / "pics" / name)) is None


def test_manifest_lets_suffix_less_files_reach_the_reader(series):
    """DICOM is recognised by content: the manifest must not filter files by name."""
    import npe2

    pm = npe2.PluginManager.instance()
    pm.discover()
    one = next(series.iterdir())
    assert "." not in one.name
    assert PLUGIN in {r.plugin_name for r in pm.iter_compatible_readers([str(one)])}


def test_manifest_offers_dicom_reader_and_seg_writer():
    import npe2

    pm = npe2.PluginManager.instance()
    pm.discover()
    assert PLUGIN in {r.plugin_name for r in pm.iter_compatible_readers(["x/a.dcm"])}
    writers = [w for w in pm.iter_compatible_writers(["labels"])
               if w.command == f"{PLUGIN}.write_labels_seg"]
    assert writers and writers[0].filename_extensions == [".dcm"]


def test_series_layer_equals_the_nifti_layer(make_napari_viewer, series, ct):
    viewer = make_napari_viewer()
    [from_dicom] = viewer.open(str(series), plugin=PLUGIN)
    [from_nifti] = viewer.open(str(ct), plugin=PLUGIN)
    np.testing.assert_array_equal(from_dicom.data, from_nifti.data)
    assert from_dicom.data.dtype == from_nifti.data.dtype
    np.testing.assert_allclose(from_dicom.scale, from_nifti.scale, rtol=1e-6)
    np.testing.assert_array_equal(from_dicom.translate, from_nifti.translate)
    assert tuple(from_dicom.contrast_limits) == tuple(from_nifti.contrast_limits)
    assert from_dicom.metadata["display"]["kind"] == "ct_soft_tissue"
    assert from_dicom.name == "Abdomen CT"
    ids = from_dicom.metadata["dicom"]
    first = pydicom.dcmread(ids["files"][0], stop_before_pixels=True)
    assert ids["series_instance_uid"] == first.SeriesInstanceUID
    assert ids["sop_instance_uids"][0] == first.SOPInstanceUID
    assert len(ids["files"]) == 30
    assert not any(isinstance(v, np.ndarray) for v in ids.values())  # identifiers only


def test_labels_made_on_a_series_save_as_seg_and_as_nifti(make_napari_viewer, series, shared_data,
                                                          tmp_path):
    viewer = make_napari_viewer()
    [image] = viewer.open(str(series), plugin=PLUGIN)
    truth = load_scan(shared_data / "ct_abdomen" / "example_seg_synapse8.nii.gz", labels=True)
    # What the Segment widget gives a segmentation: the scan's grid (only "nifti"), the names.
    layer = viewer.add_labels(truth.data, scale=image.scale, name="seg", metadata={
        "nifti": dict(image.metadata["nifti"]),
        "l2gnet": {"class_names": SYNAPSE, "checkpoint": "/models/demo_l2gnet.safetensors",
                   "edited": True}})
    out = tmp_path / "seg.dcm"
    layer.save(str(out), plugin=PLUGIN)
    scan = load_scan(series)
    back = read_seg_labels(out)
    voxels = scan.to_voxels(truth.data)
    for k, uid in enumerate(scan.dicom.ids.sop_instance_uids):
        expected = voxels[:, :, k].T
        np.testing.assert_array_equal(back.get(uid, np.zeros(expected.shape, np.uint16)),
                                      expected)
    ds = pydicom.dcmread(out, stop_before_pixels=True)
    # the flag Segment sets on a paint (the chain: test_painting_a_segmentation_makes_its_seg_...)
    assert ds.SegmentSequence[0].SegmentAlgorithmType == "SEMIAUTOMATIC"
    assert ds.ReferencedSeriesSequence[0].SeriesInstanceUID == scan.dicom.ids.series_instance_uid

    nifti_out = tmp_path / "seg.nii.gz"
    layer.save(str(nifti_out), plugin=PLUGIN)
    [(reread, _, kind)] = read_nifti(nifti_out)
    assert kind == "labels"
    np.testing.assert_array_equal(reread, truth.data)


def test_seg_writer_refuses_a_layer_without_a_dicom_source(make_napari_viewer, ct, tmp_path):
    viewer = make_napari_viewer()
    [image] = viewer.open(str(ct), plugin=PLUGIN)
    layer = viewer.add_labels(np.ones(image.data.shape, np.uint8),
                              metadata={"nifti": dict(image.metadata["nifti"])})
    from napari_l2gnet._writer import write_labels_seg

    with pytest.raises(LayerWriteError, match="not made on a DICOM series"):
        write_labels_seg(str(tmp_path / "x.dcm"), layer.data, {"name": "l",
                                                              "metadata": layer.metadata})
    assert not (tmp_path / "x.dcm").exists()


def test_labels_never_saved_over_a_dicom_image(make_napari_viewer, series, tmp_path):
    viewer = make_napari_viewer()
    [image] = viewer.open(str(series), plugin=PLUGIN)
    target = tmp_path / "slice.dcm"
    target.write_bytes(Path(image.metadata["dicom"]["files"][0]).read_bytes())
    layer = viewer.add_labels(np.ones(image.data.shape, np.uint8), metadata=image.metadata)
    with pytest.raises(LayerWriteError, match="DICOM image of a scan"):
        layer.save(str(target), plugin=PLUGIN)
    assert target.read_bytes() == Path(image.metadata["dicom"]["files"][0]).read_bytes()


def test_segment_a_series_then_save_seg(make_napari_viewer, qtbot, series, tiny_checkpoint,
                                        tmp_path):
    """As a user: open the folder, segment it in the Segment panel, save the result as SEG."""
    from napari_l2gnet.testing import dock_segment

    viewer = make_napari_viewer()
    [image] = viewer.open(str(series), plugin=PLUGIN)
    widget = dock_segment(viewer, tiny_checkpoint)
    widget.batch_spin.setValue(8)
    widget.run()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=120_000)
    layer = widget.last_layer
    assert layer is not None and layer.data.shape == image.data.shape
    rows, cols = np.mgrid[40:50, 40:50].reshape(2, -1)
    layer.data_setitem((np.full(rows.size, 10), rows, cols), 1)  # some class, whatever the
    labels = np.asarray(layer.data).copy()  # model says, painted as the brush does
    out = tmp_path / "pred.dcm"
    layer.save(str(out), plugin=PLUGIN)
    scan = load_scan(series)
    back = read_seg_labels(out)
    voxels = scan.to_voxels(labels)
    for k, uid in enumerate(scan.dicom.ids.sop_instance_uids):
        expected = voxels[:, :, k].T
        np.testing.assert_array_equal(back.get(uid, np.zeros(expected.shape, np.uint16)),
                                      expected)
    labels_names = {s.SegmentLabel for s in pydicom.dcmread(out).SegmentSequence}
    present = {["background", "organ a", "organ b"][c] for c in np.unique(labels) if c}
    assert "organ a" in present and labels_names == present  # one segment per class present


# ------------------------------------------------------------------ real PACS exports (issue 27)


def test_one_suffix_less_siemens_file_opens_its_series(make_napari_viewer, ct_dicom):
    viewer = make_napari_viewer()
    one = sorted((ct_dicom / "siemens_jpeg2000").iterdir())[3]
    [layer] = viewer.open(str(one), plugin=PLUGIN)
    assert layer.data.shape == (20, 512, 512) and layer.name == "CT Body 3.0"
    assert layer.metadata["dicom"]["generated_uids"] == ["StudyInstanceUID",
                                                         "SeriesInstanceUID"]


def test_dcmqi_seg_opens_on_the_open_series(make_napari_viewer, ct_dicom):
    from scan_io.dicom_seg_read import load_seg_on_series

    viewer = make_napari_viewer()
    [image] = viewer.open(str(ct_dicom / "ct3slice"), plugin=PLUGIN)
    seg = ct_dicom / "ct3slice_liver_seg.dcm"
    layers = viewer.open(str(seg), plugin=PLUGIN)
    assert [type(x).__name__ for x in layers] == ["Labels"] and len(viewer.layers) == 2
    labels = layers[0]
    _, expected, _ = load_seg_on_series(seg)
    np.testing.assert_array_equal(labels.data, expected)
    np.testing.assert_allclose(labels.scale, image.scale)
    assert labels.metadata["class_names"] == ["background", "Liver"]
    assert list(labels.features["class"]) == ["background", "Liver"]
    assert labels.metadata["nifti"]["affine"] == image.metadata["nifti"]["affine"]
    import highdicom as hd

    lab = pydicom.dcmread(seg).SegmentSequence[0].RecommendedDisplayCIELabValue
    rgb = np.array(hd.color.CIELabColor.from_dicom_value(lab).to_rgb(clip=True)) / 255
    np.testing.assert_allclose(np.ravel(labels.colormap.map(1))[:3], rgb, atol=1e-6)


def test_seg_opened_alone_brings_its_series_beside_it(make_napari_viewer, ct_dicom):
    viewer = make_napari_viewer()
    layers = viewer.open(str(ct_dicom / "ct3slice_liver_seg.dcm"), plugin=PLUGIN)
    assert [type(x).__name__ for x in layers] == ["Image", "Labels"]
    image, labels = layers
    assert image.data.shape == labels.data.shape == (3, 512, 512)
    assert np.count_nonzero(labels.data) > 30_000


def test_labels_on_the_siemens_series_save_as_seg_and_reopen(make_napari_viewer, ct_dicom,
                                                            tmp_path):
    """Anonymised series: the save warns that the SEG references generated UIDs; reopened,
    the SEG lands on the series with the painted classes."""
    import shutil

    folder = shutil.copytree(ct_dicom / "siemens_jpeg2000", tmp_path / "ct")
    viewer = make_napari_viewer()
    [image] = viewer.open(str(folder), plugin=PLUGIN)
    layer = viewer.add_labels(np.zeros(image.data.shape, np.uint8), scale=image.scale,
                              metadata={"nifti": dict(image.metadata["nifti"]),
                                        "class_names": ["background", "organ a", "organ b"]})
    layer.paint((5, 200, 200), 2)  # a brush stroke on slice 5: class 2
    painted = np.asarray(layer.data).copy()
    assert painted[5].sum() > 0
    out = tmp_path / "pred.dcm"
    with pytest.warns(UserWarning, match="references generated UIDs"):
        layer.save(str(out), plugin=PLUGIN)
    [reopened] = viewer.open(str(out), plugin=PLUGIN)
    np.testing.assert_array_equal(reopened.data, painted)
    assert reopened.metadata["class_names"][2] == "organ b"
    # The SEG recommends the colour the user saw; reopened, the label shows in it again.
    np.testing.assert_allclose(np.ravel(reopened.colormap.map(2))[:3],
                               np.ravel(layer.colormap.map(2))[:3], atol=2 / 255)


def test_painting_a_segmentation_makes_its_seg_semiautomatic(make_napari_viewer, qtbot, series,
                                                             tmp_path):
    """The chain a user runs: Segment (docked through the manifest) makes the labels, saved
    untouched they are AUTOMATIC; one brush stroke later, the same layer saves SEMIAUTOMATIC."""
    viewer = make_napari_viewer()
    [image] = viewer.open(str(series), plugin=PLUGIN)
    _dock, segment = viewer.window.add_plugin_dock_widget(PLUGIN, "Segment")
    segment.device_combo.setCurrentText("cpu")  # the shipped phantom CT model, the default
    segment.run()
    qtbot.waitUntil(lambda: segment.worker is None, timeout=240_000)
    assert segment.last_layer is not None, segment.status.text()
    layer = viewer.layers[segment.last_layer.name]

    def algorithm_type(path: Path) -> set[str]:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        return {s.SegmentAlgorithmType for s in ds.SegmentSequence}

    untouched = tmp_path / "model.dcm"
    layer.save(str(untouched), plugin=PLUGIN)
    assert algorithm_type(untouched) == {"AUTOMATIC"}

    layer.brush_size = 5
    layer.paint((image.data.shape[0] // 2, 60, 50), 1, refresh=True)  # a brush stroke
    painted = tmp_path / "corrected.dcm"
    layer.save(str(painted), plugin=PLUGIN)
    assert algorithm_type(painted) == {"SEMIAUTOMATIC"}


def test_study_folder_opens_every_series_and_the_seg_on_its_series(make_napari_viewer,
                                                                   ct_dicom):
    """ct_dicom, as a PACS viewer opens a study: both series, and dcmqi's liver SEG on ct3slice."""
    from scan_io.dicom_seg_read import load_seg_on_series

    viewer = make_napari_viewer()
    layers = viewer.open(str(ct_dicom), plugin=PLUGIN)
    assert [(x.name, type(x).__name__) for x in layers] == [
        ("ct3slice", "Image"), ("CT Body 3.0", "Image"), ("Liver Segmentation", "Labels")]
    _, expected, _ = load_seg_on_series(ct_dicom / "ct3slice_liver_seg.dcm")
    np.testing.assert_array_equal(layers[2].data, expected)
    assert layers[2].metadata["dicom"]["files"] == layers[0].metadata["dicom"]["files"]


def test_series_folder_with_a_seg_inside_opens_both(make_napari_viewer, ct_dicom, tmp_path):
    import shutil

    folder = shutil.copytree(ct_dicom / "ct3slice", tmp_path / "export")
    shutil.copy(ct_dicom / "ct3slice_liver_seg.dcm", folder / "SEG0001")  # no suffix either
    viewer = make_napari_viewer()
    image, labels = viewer.open(str(folder), plugin=PLUGIN)
    assert type(labels).__name__ == "Labels" and labels.data.shape == image.data.shape
    assert labels.metadata["class_names"] == ["background", "Liver"]


def test_seg_on_a_series_not_in_the_folder_is_named(make_napari_viewer, ct_dicom, tmp_path):
    import shutil

    folder = shutil.copytree(ct_dicom / "siemens_jpeg2000", tmp_path / "export")
    shutil.copy(ct_dicom / "ct3slice_liver_seg.dcm", folder / "liver_seg.dcm")
    viewer = make_napari_viewer()
    with pytest.warns(UserWarning, match="liver_seg.dcm: not opened .*its series is not among"):
        layers = viewer.open(str(folder), plugin=PLUGIN)
    assert [type(x).__name__ for x in layers] == ["Image"]


def test_selecting_every_file_of_a_series_opens_it_once(make_napari_viewer, series):
    viewer = make_napari_viewer()
    files = sorted(str(f) for f in series.iterdir())
    layers = viewer.open(files, plugin=PLUGIN)  # as File > Open with all files selected
    assert len(layers) == 1 and len(viewer.layers) == 1
    assert layers[0].data.shape[0] == len(files)
