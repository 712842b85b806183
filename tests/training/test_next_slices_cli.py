"""``l2gnet next-slices``: the Fine-tune panel's *Where to correct next* list from the shell, on
the real CT of ../shared/data with the demo model; bad input is one line and exit 2."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from scan_io.nifti import display_orientation, from_display
from scan_io.volume import load_scan
from tests.helpers import cli_fails
from training.cli import main
from training.commands.next_slices import parse_slices

DEMO = "napari_l2gnet/resources/demo_l2gnet.safetensors"


@pytest.fixture(scope="module")
def ct(shared_data):
    return shared_data / "ct_abdomen" / "example_ct_sm.nii.gz"


def _json(argv, capsys) -> list[dict]:
    assert main(argv) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_lists_beyond_the_corrections_first(ct, capsys) -> None:
    assert main(["next-slices", str(ct), "--checkpoint", DEMO, "--corrected", "10-15"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].endswith("30 slices, corrected: 10-15; correct next:")
    assert lines[1].split() == ["slice", "4", "not", "taught", "near:", "middle", "of",
                                "slices", "0-8"]
    assert lines[2].split()[:2] == ["slice", "23"] and lines[2].endswith("17-29")
    assert len(lines) == 11 and all("uncertainty" in line for line in lines[3:])


def test_labels_file_counts_its_labelled_slices_as_corrected(ct, shared_data, tmp_path,
                                                             capsys) -> None:
    """A label map with labels on slices 10-15 only (as ``l2gnet finetune --data`` reads
    corrections) gives the list ``--corrected 10-15`` gives; none: the spread."""
    ref = nib.load(str(shared_data / "ct_abdomen" / "example_seg_synapse8.nii.gz"))
    display = load_scan(ref.get_filename(), labels=True).data
    kept = np.zeros_like(display)
    kept[10:16] = display[10:16]  # back to the file's voxel order, on the reference's grid
    raw = from_display(kept, display_orientation(ref.affine)).astype(np.uint8)
    path = tmp_path / "corrections.nii.gz"
    nib.save(nib.Nifti1Image(raw, ref.affine), str(path))
    shown = load_scan(path, labels=True).data
    assert shown[10:16].any() and not shown[:10].any() and not shown[16:].any()
    by_file = _json(["next-slices", str(ct), "--checkpoint", DEMO, "--labels", str(path),
                     "--json"], capsys)
    by_list = _json(["next-slices", str(ct), "--checkpoint", DEMO, "--corrected",
                     "10,11,12-15", "--json"], capsys)
    assert by_file == by_list
    assert [(e["slice"], e["reason"]) for e in by_file[:2]] == [(4, "beyond"), (23, "beyond")]
    spread = _json(["next-slices", str(ct), "--checkpoint", DEMO, "--json", "--count", "6"],
                   capsys)
    assert [(e["slice"], e["reason"]) for e in spread] == [
        (z, "spread") for z in (0, 6, 12, 17, 23, 29)]


def test_parse_slices() -> None:
    assert parse_slices("10-12, 20,11") == [10, 11, 12, 20]
    assert parse_slices("") == []


@pytest.mark.parametrize(("extra", "needle"), [
    (["--corrected", "12-3"], "is not a range of slices"),
    (["--corrected", "a-b"], "give slice numbers and ranges"),
    (["--corrected", "30"], "slice 30 is outside the scan's slices 0-29"),
    (["--count", "0"], "list at least 1 slice"),
])
def test_bad_input_is_one_line(ct, capsys, extra, needle) -> None:
    cli_fails(["next-slices", str(ct), "--checkpoint", DEMO, *extra], capsys, needle)


def test_missing_files_are_named(ct, tmp_path, capsys) -> None:
    cli_fails(["next-slices", str(tmp_path / "none.nii.gz"), "--checkpoint", DEMO], capsys,
              "none.nii.gz")
    cli_fails(["next-slices", str(ct), "--checkpoint", str(tmp_path / "none.safetensors")],
              capsys, "none.safetensors")
