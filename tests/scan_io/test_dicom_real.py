"""Real DICOM as PACS exports deliver it (issue 27), on ``../shared/data/ct_dicom``:

* ``siemens_jpeg2000/``: 20 JPEG 2000 slices, file names without a suffix, empty Study, Series,
  SOP Instance and SOP Class UIDs (the file meta still names each instance and its class);
* ``ct3slice/``: 3 uncompressed slices with an empty SpecificCharacterSet, and beside it
  ``ct3slice_liver_seg.dcm``, a SEG made by dcmqi.

Read them, write SEGs on them, read the SEGs back (ours and dcmqi's) on the series' grid.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest

from scan_io.dicom import check_seg_source
from scan_io.dicom_seg import read_seg_labels
from scan_io.dicom_seg_read import label_values, load_seg_on_series, read_seg_info
from scan_io.testing import write_dicom_series
from scan_io.volume import find_scans, load_scan, save_labels_like

SYNAPSE = ["background", "aorta", "gallbladder", "left_kidney", "right_kidney", "liver",
           "pancreas", "spleen", "stomach"]


@pytest.fixture(scope="module")
def siemens(ct_dicom):
    return load_scan(ct_dicom / "siemens_jpeg2000")


def _blob(shape: tuple[int, ...]) -> np.ndarray:
    """Labels 1 and 5 (aorta, liver) in a few slices: something for a SEG to hold."""
    labels = np.zeros(shape, np.uint8)
    labels[1:3, 200:260, 150:230] = 5
    labels[1, 300:320, 250:270] = 1
    return labels


# ------------------------------------------------------------------ reading


def test_siemens_jpeg2000_series_without_suffix_or_uids_opens(ct_dicom, siemens):
    folder = ct_dicom / "siemens_jpeg2000"
    assert all("." in f.name and not f.name.endswith(".dcm") for f in folder.iterdir())
    assert siemens.data.shape == (20, 512, 512) and siemens.data.dtype == np.int16
    np.testing.assert_allclose(siemens.spacing, (2.0, 0.9765625, 0.9765625), rtol=1e-5)
    assert siemens.data.min() <= -1000 and siemens.data.max() > 1000  # air and bone, HU
    ids = siemens.dicom.ids
    assert ids.generated_uids == ("StudyInstanceUID", "SeriesInstanceUID")
    metas = [pydicom.dcmread(f, stop_before_pixels=True).file_meta for f in ids.files]
    assert list(ids.sop_instance_uids) == [m.MediaStorageSOPInstanceUID for m in metas]
    assert ids.sop_class_uid == metas[0].MediaStorageSOPClassUID  # CT Image Storage
    again = load_scan(folder).dicom.ids  # generated UIDs are the same every time
    assert (again.study_instance_uid, again.series_instance_uid) == (
        ids.study_instance_uid, ids.series_instance_uid) and ids.study_instance_uid


def test_one_suffix_less_file_opens_its_whole_series(ct_dicom, siemens):
    one = sorted((ct_dicom / "siemens_jpeg2000").iterdir())[7]
    assert find_scans(one) == [one]
    np.testing.assert_array_equal(load_scan(one).data, siemens.data)


def test_a_study_folder_with_a_seg_beside_its_series_is_not_one_series(ct_dicom):
    """ct_dicom holds a SEG and two series folders: two scans, the SEG is not one."""
    assert find_scans(ct_dicom) == [ct_dicom / "ct3slice", ct_dicom / "siemens_jpeg2000"]


def test_two_decoders_agree_on_the_siemens_jpeg2000(ct_dicom):
    """pylibjpeg (openjpeg) and Pillow decode the same file to the same pixels."""
    f = sorted((ct_dicom / "siemens_jpeg2000").iterdir())[0]
    decoded = []
    for plugin in ("pylibjpeg", "pillow"):
        ds = pydicom.dcmread(f)
        ds.pixel_array_options(decoding_plugin=plugin)
        decoded.append(ds.pixel_array)
    assert decoded[0].shape == (512, 512) and decoded[0].std() > 0
    np.testing.assert_array_equal(decoded[0], decoded[1])


def test_truncated_real_jpeg2000_file_names_the_file_and_the_reason(ct_dicom, tmp_path):
    folder = shutil.copytree(ct_dicom / "siemens_jpeg2000", tmp_path / "s")
    victim = sorted(folder.iterdir())[5]
    victim.chmod(0o644)
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="damaged or truncated") as err, \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        load_scan(folder)
    assert victim.name in str(err.value) and "install" not in str(err.value).lower()


def test_two_anonymised_series_in_one_folder_stay_apart(ct_dicom, siemens, tmp_path):
    """Without SeriesInstanceUIDs the files are grouped by what one acquisition shares."""
    folder = shutil.copytree(ct_dicom / "siemens_jpeg2000", tmp_path / "mixed")
    small = write_dicom_series(tmp_path / "other", np.zeros((3, 16, 16), np.int16),
                               np.diag([1.0, 1.0, 5.0, 1.0]), series_description="scout")
    for f in small:
        ds = pydicom.dcmread(f)
        ds.SeriesInstanceUID = ""
        ds.save_as(folder / f"scout_{f.name}")
    with pytest.warns(UserWarning, match="2 image series; opened the largest"):
        scan = load_scan(folder)
    np.testing.assert_array_equal(scan.data, siemens.data)


# ------------------------------------------------------------------ SEG out


def test_seg_on_the_siemens_series_references_generated_uids_consistently(
        ct_dicom, siemens, tmp_path):
    labels = _blob(siemens.data.shape)
    assert check_seg_source(ct_dicom / "siemens_jpeg2000") == ("StudyInstanceUID",
                                                               "SeriesInstanceUID")
    a = save_labels_like(tmp_path / "a.dcm", labels, siemens, class_names=SYNAPSE)
    b = save_labels_like(tmp_path / "b.dcm", labels, load_scan(ct_dicom / "siemens_jpeg2000"),
                         class_names=SYNAPSE)
    da, db = pydicom.dcmread(a), pydicom.dcmread(b)
    ids = siemens.dicom.ids
    for ds in (da, db):
        assert ds.StudyInstanceUID == ids.study_instance_uid
        ref = ds.ReferencedSeriesSequence[0]
        assert ref.SeriesInstanceUID == ids.series_instance_uid
        assert [r.ReferencedSOPInstanceUID for r in ref.ReferencedInstanceSequence] == list(
            ids.sop_instance_uids)  # the real instance UIDs, from the file meta
        assert ds.SpecificCharacterSet == "ISO_IR 100"  # the source's, kept
    assert da.SOPInstanceUID != db.SOPInstanceUID  # two SEG objects, one source series
    back = read_seg_labels(a)
    voxels = siemens.to_voxels(labels)
    for k, uid in enumerate(ids.sop_instance_uids):
        expected = voxels[:, :, k].T
        np.testing.assert_array_equal(back.get(uid, np.zeros(expected.shape, np.uint16)),
                                      expected)


def test_seg_on_a_series_with_an_empty_character_set(ct_dicom, tmp_path):
    scan = load_scan(ct_dicom / "ct3slice")
    src = pydicom.dcmread(scan.dicom.files[0], stop_before_pixels=True)
    assert src.SpecificCharacterSet == ""  # legal: the default repertoire
    out = save_labels_like(tmp_path / "seg.dcm", _blob(scan.data.shape), scan,
                           class_names=SYNAPSE)
    ds = pydicom.dcmread(out)
    assert "SpecificCharacterSet" not in ds  # absent: the default repertoire
    assert ds.StudyInstanceUID == src.StudyInstanceUID and scan.dicom.ids.generated_uids == ()
    assert ds.PatientName == src.PatientName


def test_series_without_any_sop_class_uid_is_refused(ct_dicom, tmp_path):
    folder = shutil.copytree(ct_dicom / "ct3slice", tmp_path / "noclass")
    for f in folder.iterdir():
        f.chmod(0o644)
        ds = pydicom.dcmread(f)
        ds.SOPClassUID = ""
        ds.file_meta.MediaStorageSOPClassUID = ""
        ds.save_as(f)
    scan = load_scan(folder)  # opening needs no SOP class
    with pytest.raises(ValueError, match="no SOPClassUID .* Save the labels as NIfTI"):
        check_seg_source(folder)
    with pytest.raises(ValueError, match="no SOPClassUID"):
        save_labels_like(tmp_path / "x.dcm", _blob(scan.data.shape), scan, class_names=SYNAPSE)
    assert not (tmp_path / "x.dcm").exists()


# ------------------------------------------------------------------ SEG in


def test_dcmqi_liver_seg_lands_on_its_source_slices(ct_dicom):
    """Checked frame by frame with plain pydicom: each SEG frame equals the label map on the
    slice of the instance that frame references."""
    seg_path = ct_dicom / "ct3slice_liver_seg.dcm"
    scan, labels, names = load_seg_on_series(seg_path)
    assert names == ["background", "Liver"] and labels.shape == scan.data.shape
    voxels = scan.to_voxels(labels)
    ds = pydicom.dcmread(seg_path)
    frames = ds.pixel_array.reshape(-1, ds.Rows, ds.Columns)
    uids = list(scan.dicom.ids.sop_instance_uids)
    seen = set()
    for frame, group in zip(frames, ds.PerFrameFunctionalGroupsSequence, strict=True):
        uid = group.DerivationImageSequence[0].SourceImageSequence[0].ReferencedSOPInstanceUID
        k = uids.index(uid)
        seen.add(k)
        np.testing.assert_array_equal(voxels[:, :, k].T, frame.astype(np.uint8))
    assert seen == {0, 1, 2} and labels.sum() > 30_000
    # The liver lies on the patient's right: the left half of the radiological view.
    assert np.argwhere(labels)[:, 2].mean() < labels.shape[2] / 2


def test_dcmqi_segments_map_to_the_model_classes(ct_dicom):
    seg_path = ct_dicom / "ct3slice_liver_seg.dcm"
    _, labels, names = load_seg_on_series(seg_path, SYNAPSE)
    assert names == SYNAPSE and set(np.unique(labels)) == {0, 5}  # "Liver" is class liver
    info = read_seg_info(seg_path)
    with pytest.raises(ValueError, match=r"segment\(s\) 'Liver' match no class of the model "
                                         r"\(RV, Myo, LV\)"):
        label_values(info.segments, ["background", "RV", "Myo", "LV"], seg_path)


def test_our_seg_on_the_siemens_series_reads_back_with_its_classes(ct_dicom, siemens,
                                                                   tmp_path):
    folder = shutil.copytree(ct_dicom / "siemens_jpeg2000", tmp_path / "study" / "ct")
    labels = _blob(siemens.data.shape)
    seg = save_labels_like(tmp_path / "study" / "pred.dcm", labels, siemens,
                           class_names=SYNAPSE)
    scan, back, names = load_seg_on_series(seg)
    assert scan.dicom.files[0].parent == folder
    np.testing.assert_array_equal(back, labels)  # class numbers from the tracking ids
    assert names[1] == "aorta" and names[5] == "liver"


def test_seg_without_its_series_beside_it_is_refused(ct_dicom, tmp_path):
    lonely = shutil.copy(ct_dicom / "ct3slice_liver_seg.dcm", tmp_path / "seg.dcm")
    with pytest.raises(ValueError, match=r"the series this SEG segments .* is not in"):
        load_seg_on_series(lonely)


def test_seg_frame_off_its_source_slice_is_refused(ct_dicom, tmp_path):
    shutil.copytree(ct_dicom / "ct3slice", tmp_path / "ct3slice")
    ds = pydicom.dcmread(ct_dicom / "ct3slice_liver_seg.dcm")
    position = ds.PerFrameFunctionalGroupsSequence[1].PlanePositionSequence[0]
    position.ImagePositionPatient[2] = float(position.ImagePositionPatient[2]) + 5.0
    ds.save_as(tmp_path / "moved.dcm")
    with pytest.raises(ValueError, match=r"frame 2 lies 5\.00 mm from the source slice"):
        load_seg_on_series(tmp_path / "moved.dcm")


def _third_party_seg(folder: Path, out: Path, kind: str, overlap: bool = False) -> np.ndarray:
    """A two-segment SEG on ct3slice written with highdicom directly, as other tools do
    (MANUAL segments, no tracking ids): BINARY, FRACTIONAL or LABELMAP. Returns the expected
    labels (slice in series order, row, column)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    from scan_io.dicom import series_headers

    headers, _ = series_headers(sorted(folder.iterdir()))
    sources = {str(pydicom.dcmread(f).SOPInstanceUID): pydicom.dcmread(f)
               for f in folder.iterdir()}
    images = [sources[str(h.SOPInstanceUID)] for h in headers]
    for ds in images:
        del ds.SpecificCharacterSet  # empty: highdicom refuses it; absent means the same
    expected = np.zeros((3, 512, 512), np.uint8)
    expected[:, 100:200, 100:300] = 1
    expected[1:, 250:300, 250:300] = 2
    one, two = expected == 1, expected == 2
    if overlap:
        one = one.copy()
        one[1:, 250:260, 250:300] = True  # 2 x 10 x 50 voxels in both segments
    if kind == "LABELMAP":
        pixels = expected
    elif kind == "FRACTIONAL":
        pixels = np.stack([one, two], -1).astype(np.float32) * 0.9
    else:
        pixels = np.stack([one, two], -1).astype(np.uint8)
    descriptions = [hd.seg.SegmentDescription(
        segment_number=n, segment_label=label, segmented_property_category=codes.SCT.Organ,
        segmented_property_type=code, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL)
        for n, label, code in ((1, "Liver", codes.SCT.Liver), (2, "Spleen", codes.SCT.Spleen))]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # highdicom on the source's PatientName
        seg = _highdicom_seg(images, pixels, kind, descriptions)
    seg.save_as(out)
    return expected


def _highdicom_seg(images, pixels, kind, descriptions):
    import highdicom as hd

    return hd.seg.Segmentation(
        source_images=images, pixel_array=pixels,
        segmentation_type=getattr(hd.seg.SegmentationTypeValues, kind),
        segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=9,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="another tool",
        manufacturer_model_name="x", software_versions="1", device_serial_number="1",
        **({"fractional_type": "PROBABILITY"} if kind == "FRACTIONAL" else {}))


@pytest.mark.parametrize("kind", ["BINARY", "FRACTIONAL", "LABELMAP"])
def test_third_party_segs_of_each_type_land_on_the_series(ct_dicom, tmp_path, kind):
    folder = shutil.copytree(ct_dicom / "ct3slice", tmp_path / "ct3slice")
    expected = _third_party_seg(folder, tmp_path / "seg.dcm", kind)
    scan, labels, names = load_seg_on_series(tmp_path / "seg.dcm")
    assert names == ["background", "Liver", "Spleen"]
    voxels = scan.to_voxels(labels)
    np.testing.assert_array_equal(np.stack([voxels[:, :, k].T for k in range(3)]), expected)
    _, mapped, _ = load_seg_on_series(tmp_path / "seg.dcm", SYNAPSE)
    assert set(np.unique(mapped)) == {0, 5, 7}  # liver and spleen of the abdominal model


def test_overlapping_segments_are_reported(ct_dicom, tmp_path):
    folder = shutil.copytree(ct_dicom / "ct3slice", tmp_path / "ct3slice")
    expected = _third_party_seg(folder, tmp_path / "seg.dcm", "BINARY", overlap=True)
    with pytest.warns(UserWarning, match="segments overlap in 1000 voxels"):
        scan, labels, _ = load_seg_on_series(tmp_path / "seg.dcm")
    voxels = scan.to_voxels(labels)
    np.testing.assert_array_equal(np.stack([voxels[:, :, k].T for k in range(3)]), expected)
