"""Segment's model chooser, the session hand-over to Fine-tune, and the fit warnings (Xvfb)."""

from __future__ import annotations

import os

import numpy as np

from napari_l2gnet._session import DEMO_CHECKPOINT, session_for
from napari_l2gnet.models import shipped_models
from napari_l2gnet.testing import PLUGIN, dock, open_scan

TIMEOUT_MS = 120_000


def test_chooser_lists_shipped_models_by_their_metadata(make_napari_viewer):
    viewer = make_napari_viewer()
    widget = dock(viewer, "Segment")
    summaries = shipped_models()
    assert DEMO_CHECKPOINT in [m.path for m in summaries]
    items = [widget.model_combo.itemData(i) for i in range(widget.model_combo.count())]
    assert [str(m.path) for m in summaries] == items[:len(summaries)]
    demo = next(m for m in summaries if m.path == DEMO_CHECKPOINT)
    assert "Phantom-only demo" in demo.description and demo.modality == "CT"
    # the demo is the session's default: its full description is shown, wrapped, not cut
    assert widget.model_combo.currentData() == str(DEMO_CHECKPOINT)
    assert widget.model_info.wordWrap()
    assert "Phantom-only demo" in widget.model_info.text()
    assert "aorta" in widget.model_info.text() and "stomach" in widget.model_info.text()
    assert demo.training_command in widget.model_info.toolTip()


def test_long_descriptions_wrap_instead_of_widening_the_panel(make_napari_viewer,
                                                              tiny_checkpoint):
    viewer = make_napari_viewer()
    widget = dock(viewer, "Segment")
    widget.set_checkpoint(tiny_checkpoint)
    widget.model_combo.addItem("A model with a very long display name " * 4, "x.safetensors")
    assert widget.minimumSizeHint().width() < 450


def test_choice_is_published_and_fine_tuned_model_is_adopted(make_napari_viewer,
                                                              tiny_checkpoint, tmp_path):
    viewer = make_napari_viewer()
    widget = dock(viewer, "Segment")
    session = session_for(viewer)
    heard: list[tuple[str, str]] = []
    session.checkpoint_changed.connect(lambda path, origin: heard.append((path, origin)))

    widget.set_checkpoint(tiny_checkpoint)  # e.g. Browse: Fine-tune's input follows
    assert session.checkpoint == str(tiny_checkpoint)
    assert heard == [(str(tiny_checkpoint), "segment")]
    assert widget.model_combo.currentText() == "File: tiny.safetensors"

    index = widget.model_combo.findData(str(DEMO_CHECKPOINT))
    widget.model_combo.setCurrentIndex(index)
    widget.model_combo.activated.emit(index)  # what a click in the list does
    assert session.checkpoint == str(DEMO_CHECKPOINT)

    # the same shipped file spelt relatively (a typed path) selects its entry, adds none
    count = widget.model_combo.count()
    widget.set_checkpoint(os.path.relpath(DEMO_CHECKPOINT))
    assert widget.model_combo.currentData() == str(DEMO_CHECKPOINT)
    assert widget.model_combo.count() == count

    tuned = tmp_path / "tiny_finetuned.safetensors"
    tuned.write_bytes(tiny_checkpoint.read_bytes())
    session.set_checkpoint(tuned, "finetune")  # the user accepted a fine-tuned model
    assert widget.checkpoint_edit.text() == str(tuned)
    assert widget.model_combo.currentData() == str(tuned)
    assert "fine-tuned" in widget.status.text()


def test_real_mr_with_the_ct_phantom_model_is_warned_not_blocked(make_napari_viewer, qtbot,
                                                                 shared_data):
    viewer = make_napari_viewer()
    [image] = viewer.open(str(shared_data / "ct_abdomen" / "example_mr_sm.nii.gz"),
                          plugin=PLUGIN)
    widget = dock(viewer, "Segment")  # docked after opening, with the default demo model
    assert widget.checkpoint_edit.text() == str(DEMO_CHECKPOINT)
    assert widget.fit_label.isVisibleTo(widget)
    text = widget.fit_label.text()
    assert "trained on CT; this image looks like MRI" in text
    assert [i.kind for i in widget.fit_issues] == ["modality"]

    widget.device_combo.setCurrentText("cpu")
    widget.run()  # the warning does not stop the run
    qtbot.waitUntil(lambda: widget.worker is None, timeout=TIMEOUT_MS)
    layer = widget.last_layer
    assert layer is not None and layer.data.shape == image.data.shape
    status = widget.status.text()
    assert "Found:" in status
    meta = layer.metadata["l2gnet"]
    counts = np.bincount(layer.data.ravel(), minlength=9)
    # the phantom model on an MR finds organs and stray voxels (docs/user-guide.md, Fit check)
    assert meta["found"] and meta["spurious"], (meta["found"], meta["spurious"])
    for name, voxels in meta["spurious"].items():  # tiny classes are named as such
        assert f"{name}: {voxels} voxel" in status and name not in meta["found"]
        assert counts[meta["class_names"].index(name)] == voxels < 50
    for name in meta["found"]:
        assert counts[meta["class_names"].index(name)] >= 50


def test_fitting_image_gives_no_warning(make_napari_viewer, tiny_checkpoint, scan_file):
    viewer = make_napari_viewer()
    open_scan(viewer, scan_file)  # [0, 1] intensities, what the tiny model expects
    widget = dock(viewer, "Segment")
    widget.set_checkpoint(tiny_checkpoint)
    assert widget.fit_issues == [] and not widget.fit_label.isVisibleTo(widget)


def test_fine_tune_input_follows_the_model_chosen_in_segment(make_napari_viewer,
                                                             tiny_checkpoint):
    viewer = make_napari_viewer()
    segment = dock(viewer, "Segment")
    finetune = dock(viewer, "Fine-tune")
    assert finetune.input_edit.text() == segment.checkpoint_edit.text()
    segment.set_checkpoint(tiny_checkpoint)
    assert finetune.input_edit.text() == str(tiny_checkpoint)
    finetune.close()


def test_choosing_models_again_reads_each_header_once_and_builds_nothing(make_napari_viewer,
                                                                          tiny_checkpoint):
    from training.inference.model_handle import cache_stats, clear_cache, open_model

    viewer = make_napari_viewer()
    widget = dock(viewer, "Segment")
    clear_cache()
    demo = widget.model_combo.findData(str(DEMO_CHECKPOINT))
    for _ in range(3):  # back and forth, as a user comparing two models would
        widget.set_checkpoint(tiny_checkpoint)
        widget.model_combo.setCurrentIndex(demo)
        widget.model_combo.activated.emit(demo)
        widget.update_fit_check()
    hits, reads = cache_stats()
    assert reads == 2 and hits >= 6  # one header read per file, every later choice a hit
    assert "tiny" in widget.model_combo.itemText(widget.model_combo.count() - 1)
    assert open_model(tiny_checkpoint).built == () and open_model(DEMO_CHECKPOINT).built == ()
