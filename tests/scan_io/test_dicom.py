"""DICOM series in and DICOM SEG out, on series generated from the real abdominal CT.

The series are written with pydicom from ``../shared/data/ct_abdomen/example_ct_sm.nii.gz``
(shuffled random file names, LPS axial or oblique orientation, rescale slope/intercept), so
the NIfTI file is the series' twin: same pixels in the same display layout.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate
from pydicom.uid import JPEG2000Lossless, generate_uid

from scan_io.dicom import DicomSeriesWarning, load_dicom_series
from scan_io.dicom_seg import AlgorithmInfo, read_seg_labels, segment_code
from scan_io.testing import display_affine_lps, rotation, write_dicom_series
from scan_io.volume import ScanVolume, load_scan, save_labels_like

SYNAPSE = ["background", "aorta", "gallbladder", "left_kidney", "right_kidney", "liver",
           "pancreas", "spleen", "stomach"]


@pytest.fixture(scope="module")
def twin(shared_data) -> ScanVolume:
    return load_scan(shared_data / "ct_abdomen" / "example_ct_sm.nii.gz")


@pytest.fixture(scope="module")
def truth(shared_data) -> ScanVolume:
    return load_scan(shared_data / "ct_abdomen" / "example_seg_synapse8.nii.gz", labels=True)


@pytest.fixture(scope="module")
def series(twin, tmp_path_factory) -> Path:
    """LPS axial series, stored as (HU + 2048) * 2 (slope 0.5, intercept -2048)."""
    folder = tmp_path_factory.mktemp("dicom") / "ct"
    write_dicom_series(folder, twin.data, display_affine_lps(twin.nifti), slope=0.5,
                       intercept=-2048, seed=3)
    return folder


def _copy(series: Path, dst: Path) -> Path:
    shutil.copytree(series, dst)
    return dst


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file())


def _by_position(folder: Path) -> list[Path]:
    return sorted(_files(folder), key=lambda f: float(
        pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient[2]))


# ------------------------------------------------------------------ reading


def test_series_opens_as_its_nifti_twin(series, twin):
    scan = load_scan(series)
    assert scan.format == "dicom"
    assert scan.data.dtype == np.int16  # slope 0.5 applied, values whole HU again
    np.testing.assert_array_equal(scan.data, twin.data)
    np.testing.assert_allclose(scan.spacing, twin.spacing, rtol=1e-6)
    # The same world position for every display voxel (LPS file vs RAS file).
    np.testing.assert_allclose(display_affine_lps(scan.nifti), display_affine_lps(twin.nifti),
                               atol=1e-4)
    ids = scan.dicom.ids
    assert len(ids.sop_instance_uids) == len(set(ids.sop_instance_uids)) == 30
    assert ids.modality == "CT" and ids.other_series == ()


def test_one_file_opens_its_whole_series(series, twin):
    one = _files(series)[7]
    np.testing.assert_array_equal(load_scan(one).data, twin.data)


def test_oblique_series_matches_its_oblique_nifti_twin(twin, tmp_path):
    import nibabel as nib

    affine = rotation(20, axis=0) @ display_affine_lps(twin.nifti)
    write_dicom_series(tmp_path / "ob", twin.data, affine, seed=5)
    oblique_twin = tmp_path / "ob.nii.gz"
    ras = np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine
    nib.save(nib.Nifti1Image(twin.data.transpose(2, 1, 0), ras), str(oblique_twin))
    scan, nifti = load_scan(tmp_path / "ob"), load_scan(oblique_twin)
    np.testing.assert_array_equal(scan.data, nifti.data)
    np.testing.assert_allclose(scan.spacing, nifti.spacing, rtol=1e-6)
    np.testing.assert_allclose(scan.affine, nifti.affine, atol=1e-4)
    assert scan.orientation == nifti.orientation


def test_slices_sorted_by_position_not_by_name_or_instance_number(series):
    scan = load_scan(series)
    z = [float(pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient[2])
         for f in scan.dicom.files]
    assert z == sorted(z)
    names = [f.name for f in scan.dicom.files]
    assert names != sorted(names)  # the generator's names carry no order


def test_other_series_and_junk_files_are_reported(series, twin, tmp_path):
    folder = _copy(series, tmp_path / "mixed")
    small = tmp_path / "small"
    write_dicom_series(small, twin.data[:5], display_affine_lps(twin.nifti),
                       series_description="scout", seed=9)
    for f in _files(small):
        shutil.copy(f, folder / f"s_{f.name}")
    (folder / "notes.txt").write_text("not dicom")
    with pytest.warns(DicomSeriesWarning) as record:
        scan = load_scan(folder)
    text = " ".join(str(w.message) for w in record)
    assert "2 image series; opened the largest" in text and "scout" in text
    assert "skipped 1 file(s)" in text and "notes.txt" in text
    assert scan.data.shape == twin.data.shape and len(scan.dicom.ids.other_series) == 1


# ------------------------------------------------------------------ refusals


def test_mixed_orientations_are_refused(series, tmp_path):
    folder = _copy(series, tmp_path / "mixed_orient")
    f = _files(folder)[4]
    ds = pydicom.dcmread(f)
    ds.ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
    ds.save_as(f)
    with pytest.raises(ValueError, match="mixed slice orientations"):
        load_scan(folder)


def test_gantry_tilt_is_refused(twin, tmp_path):
    affine = display_affine_lps(twin.nifti)
    affine[1, 2] = 0.3  # each slice shifts 0.3 mm posterior: positions off the normal
    write_dicom_series(tmp_path / "tilt", twin.data, affine)
    with pytest.raises(ValueError, match=r"5\.7 degrees off the slice normal \(gantry tilt\)"):
        load_scan(tmp_path / "tilt")


def test_missing_slice_is_refused(series, tmp_path):
    folder = _copy(series, tmp_path / "missing")
    _by_position(folder)[12].unlink()
    with pytest.raises(ValueError, match=r"1 slice\(s\) missing between .* \(gap 6\.00 mm, "
                                         r"usual 3\.00 mm"):
        load_scan(folder)


def test_uneven_spacing_is_refused(series, tmp_path):
    folder = _copy(series, tmp_path / "uneven")
    f = _by_position(folder)[12]
    ds = pydicom.dcmread(f)
    ds.ImagePositionPatient[2] = float(ds.ImagePositionPatient[2]) + 1.2
    ds.save_as(f)
    with pytest.raises(ValueError, match="uneven slice spacing"):
        load_scan(folder)


def test_two_slices_at_one_position_are_refused(series, tmp_path):
    folder = _copy(series, tmp_path / "dup")
    ds = pydicom.dcmread(_files(folder)[0])
    ds.SOPInstanceUID = generate_uid()
    ds.save_as(folder / "copy")
    with pytest.raises(ValueError, match="lie at the same position"):
        load_scan(folder)


def test_undecodable_compressed_pixels_are_refused(series, tmp_path):
    folder = _copy(series, tmp_path / "j2k")
    f = _files(folder)[0]
    ds = pydicom.dcmread(f)
    ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + bytes(64)])
    ds["PixelData"].VR = "OB"
    ds.save_as(f)
    with pytest.raises(ValueError, match=r"its pixel data \(JPEG 2000 .*\) is damaged or "
                                         r"truncated") as err:
        load_scan(folder)
    assert str(f) in str(err.value) and "install" not in str(err.value).lower()


def test_non_image_objects_are_refused_or_skipped(series, truth, tmp_path):
    scan = load_scan(series)
    seg = save_labels_like(tmp_path / "only" / "seg.dcm", truth.data, scan,
                           class_names=SYNAPSE)
    with pytest.raises(ValueError, match=r"holds only non-image DICOM objects \(SEG\)"):
        load_scan(tmp_path / "only")
    with pytest.raises(ValueError, match="a SEG object, not an image"):
        load_dicom_series(seg)
    folder = _copy(series, tmp_path / "with_seg")
    shutil.copy(seg, folder / "seg.dcm")
    assert load_scan(folder).data.shape == scan.data.shape  # the SEG is skipped


def test_nothing_dicom_is_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "a.txt").write_text("x")
    with pytest.raises(ValueError, match="no DICOM files found"), \
            pytest.warns(DicomSeriesWarning):
        load_scan(tmp_path / "empty")


# ------------------------------------------------------------------ SEG out


def _seg_by_pydicom(path: Path) -> dict[str, np.ndarray]:
    """A second reader: plain pydicom, frame by frame, through the functional groups."""
    ds = pydicom.dcmread(path)
    classes = {int(s.SegmentNumber): int(str(s.TrackingID).split()[-1])
               for s in ds.SegmentSequence}
    frames = ds.pixel_array.reshape(-1, ds.Rows, ds.Columns)
    out: dict[str, np.ndarray] = {}
    for frame, group in zip(frames, ds.PerFrameFunctionalGroupsSequence, strict=True):
        uid = group.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        number = int(group.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        out.setdefault(uid, np.zeros(frame.shape, np.uint16))[frame > 0] = classes[number]
    return out


def test_seg_round_trip_per_source_instance(series, truth, tmp_path):
    scan = load_scan(series)
    out = save_labels_like(tmp_path / "seg.dcm", truth.data, scan, class_names=SYNAPSE,
                           algorithm={"checkpoint": "demo_l2gnet.safetensors"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seg.dcm"]  # nothing beside it
    voxels = scan.to_voxels(truth.data)
    by_highdicom, by_pydicom = read_seg_labels(out), _seg_by_pydicom(out)
    for k, uid in enumerate(scan.dicom.ids.sop_instance_uids):
        expected = voxels[:, :, k].T  # (row, column) of that source instance
        for reader in (by_highdicom, by_pydicom):
            got = reader.get(uid, np.zeros(expected.shape, np.uint16))
            np.testing.assert_array_equal(got, expected)


def test_seg_content(series, truth, tmp_path):
    scan = load_scan(series)
    labels = truth.data.copy()
    labels[labels == 2] = 0  # no gallbladder: no segment for it
    out = save_labels_like(tmp_path / "seg.dcm", labels, scan, class_names=SYNAPSE,
                           algorithm={"checkpoint": "demo_l2gnet.safetensors"})
    ds = pydicom.dcmread(out)
    src = pydicom.dcmread(scan.dicom.files[0], stop_before_pixels=True)
    assert ds.Modality == "SEG" and ds.SegmentationType == "BINARY"
    assert ds.StudyInstanceUID == src.StudyInstanceUID and ds.PatientID == src.PatientID
    assert ds.FrameOfReferenceUID == src.FrameOfReferenceUID
    ref = ds.ReferencedSeriesSequence[0]
    assert ref.SeriesInstanceUID == src.SeriesInstanceUID
    assert {r.ReferencedSOPInstanceUID for r in ref.ReferencedInstanceSequence} == set(
        scan.dicom.ids.sop_instance_uids)
    segments = ds.SegmentSequence
    assert [s.SegmentLabel for s in segments] == [n for i, n in enumerate(SYNAPSE)
                                                  if i not in (0, 2)]
    liver = next(s for s in segments if s.SegmentLabel == "liver")
    assert liver.SegmentedPropertyTypeCodeSequence[0].CodeValue == "10200004"
    left = next(s for s in segments if s.SegmentLabel == "left_kidney")
    assert left.SegmentedPropertyTypeCodeSequence[0].CodeValue == "18639004"
    algo = liver.SegmentationAlgorithmIdentificationSequence[0]
    assert algo.AlgorithmName == "L2GNet" and liver.SegmentAlgorithmType == "AUTOMATIC"
    assert "demo_l2gnet.safetensors" in str(algo.get("AlgorithmSource", ""))


def test_seg_refusals(series, truth, twin, tmp_path):
    scan = load_scan(series)
    out = save_labels_like(tmp_path / "seg.dcm", truth.data, scan, class_names=SYNAPSE)
    with pytest.raises(FileExistsError, match="not overwriting"):
        save_labels_like(out, truth.data, scan, class_names=SYNAPSE)
    with pytest.raises(ValueError, match="labels are empty"):
        save_labels_like(tmp_path / "e.dcm", np.zeros_like(truth.data), scan)
    with pytest.raises(ValueError, match="needs a DICOM source series"):
        save_labels_like(tmp_path / "n.dcm", truth.data, twin)
    with pytest.raises(ValueError, match="is the source scan"):
        save_labels_like(scan.dicom.files[3], truth.data, scan, overwrite=True)
    with pytest.raises(ValueError, match="label value 8 does not fit a model with 3 classes"):
        save_labels_like(tmp_path / "x.dcm", truth.data, scan, class_names=["a", "b", "c"])


def test_nifti_export_of_a_dicom_scan(series, truth, tmp_path):
    scan = load_scan(series)
    out = save_labels_like(tmp_path / "pred.nii.gz", truth.data, scan)
    back = load_scan(out, labels=True)
    np.testing.assert_array_equal(back.data, truth.data)
    np.testing.assert_allclose(back.affine, scan.affine, atol=1e-5)


def test_segment_codes():
    assert segment_code("Right_Kidney")[1].value == "9846003"
    assert segment_code("LV")[1].value == "87878005"
    assert segment_code("Myo")[1].value == "49848007"
    assert segment_code("tumour")[1].meaning == "Tissue"
    assert AlgorithmInfo().name == "L2GNet"


def test_find_scans_in_a_study_folder(series, twin, tmp_path):
    from scan_io.volume import find_scans

    study = tmp_path / "study"
    shutil.copytree(series, study / "ct" / "series1")
    write_dicom_series(study / "ct" / "series2", twin.data[:4], display_affine_lps(twin.nifti))
    shutil.copy(twin.path, study / "a.nii.gz")
    (study / ".a.nii.gz.tmp").write_bytes(b"partial")  # a leftover temporary: never a scan
    (study / "notes.txt").write_text("x")
    assert find_scans(study) == [study / "a.nii.gz", study / "ct" / "series1",
                                 study / "ct" / "series2"]
    assert find_scans(study / "ct" / "series1") == [study / "ct" / "series1"]
    assert find_scans(study / "a.nii.gz") == [study / "a.nii.gz"]
    with pytest.raises(ValueError, match="not a scan"):
        find_scans(study / "notes.txt")
