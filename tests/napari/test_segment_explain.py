"""Segment and Explain panels end to end on a small volume with a tiny model (under Xvfb),
docked through the manifest as the Plugins menu does."""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtCore import QTimer

from napari_l2gnet._session import same_layer, session_for
from napari_l2gnet.testing import dock, dock_segment, open_scan, write_scan
from napari_l2gnet.widgets.explain import bucket_table, vote_texts
from napari_l2gnet.widgets.segment import SegmentWidget

TIMEOUT_MS = 60_000


def _segment(qtbot, viewer, checkpoint, **choices) -> SegmentWidget:
    widget = dock_segment(viewer, checkpoint)
    widget.batch_spin.setValue(choices.get("batch", 2))
    widget.run()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=TIMEOUT_MS)
    return widget


def test_segment_adds_aligned_labels_layer(make_napari_viewer, qtbot, tiny_checkpoint, scan):
    viewer = make_napari_viewer()
    image = viewer.add_image(scan, name="scan", scale=(3.0, 0.7, 0.8), translate=(5, -2, 1),
                             metadata={"nifti": {"kind": "image", "path": "/x/scan.nii.gz"}})
    widget = _segment(qtbot, viewer, tiny_checkpoint)

    layer = widget.last_layer
    assert layer is not None and layer.name == "scan [tiny]"
    assert layer.data.shape == scan.shape and layer.data.dtype == np.uint8
    np.testing.assert_allclose(layer.scale, image.scale)
    np.testing.assert_allclose(layer.translate, image.translate)
    meta = layer.metadata["l2gnet"]
    assert meta["class_names"] == ["background", "organ a", "organ b"]
    np.testing.assert_array_equal(meta["model_labels"], layer.data)
    assert meta["model_labels"] is not layer.data  # the model's output is kept apart
    assert layer.metadata["nifti"]["path"] == "/x/scan.nii.gz"  # saving lands on the scan grid
    assert layer.features["class"].tolist()[1] == "organ a"
    assert widget.status.text().startswith("Segmented 6 slices on the CPU in ")
    assert ", 2 slices a batch. Layer: scan [tiny]. Found: " in widget.status.text()


def test_rerun_replaces_only_the_plugins_unedited_layer(make_napari_viewer, qtbot,
                                                        tiny_checkpoint, scan_file):
    viewer = make_napari_viewer()
    open_scan(viewer, scan_file)
    widget = _segment(qtbot, viewer, tiny_checkpoint)
    first = widget.last_layer
    n_layers = len(viewer.layers)

    widget.run()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=TIMEOUT_MS)
    assert same_layer(widget.last_layer, first) and len(viewer.layers) == n_layers

    first.paint((2, 10, 10), 1)  # the user corrects it: it is theirs now
    assert first.metadata["l2gnet"]["edited"]
    corrected = first.data.copy()
    widget.run()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=TIMEOUT_MS)
    assert not same_layer(widget.last_layer, first) and len(viewer.layers) == n_layers + 1
    np.testing.assert_array_equal(first.data, corrected)


def test_cancel_stops_within_a_batch_and_adds_nothing(make_napari_viewer, qtbot,
                                                      tiny_checkpoint, tmp_path):
    viewer = make_napari_viewer()
    open_scan(viewer, write_scan(tmp_path / "long.nii.gz",
                                 np.random.default_rng(1).random((60, 32, 32), np.float32)))
    widget = dock_segment(viewer, tiny_checkpoint)
    widget.batch_spin.setValue(1)
    batches = []
    widget.run()
    widget.worker.yielded.connect(lambda value: (batches.append(value), widget.cancel()))
    qtbot.waitUntil(lambda: widget.worker is None, timeout=TIMEOUT_MS)
    assert widget.last_layer is None and len(viewer.layers) == 1
    assert "Cancelled" in widget.status.text()
    assert 1 <= len(batches) <= 2  # stopped at the next batch, far from the 60 slices
    assert widget.run_button.isEnabled()


def test_viewer_event_loop_runs_during_segmentation(make_napari_viewer, qtbot,
                                                    tiny_checkpoint, tmp_path):
    """The GUI thread keeps serving events while the model runs: between every two batches
    the worker hands over (yields), the event loop has turned (a zero-interval timer, which
    fires on every turn of the loop, has ticked). Counting ticks over the whole run instead
    would depend on how fast the machine is."""
    viewer = make_napari_viewer()
    open_scan(viewer, write_scan(tmp_path / "mid.nii.gz",
                                 np.random.default_rng(2).random((24, 32, 32), np.float32)))
    ticks: list[int] = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(1))
    widget = SegmentWidget(viewer)
    widget.set_checkpoint(tiny_checkpoint)
    widget.device_combo.setCurrentText("cpu")
    widget.batch_spin.setValue(4)
    ticks_at_yield: list[int] = []
    timer.start(0)
    widget.run()
    widget.worker.yielded.connect(lambda _value: ticks_at_yield.append(len(ticks)))
    qtbot.waitUntil(lambda: widget.worker is None, timeout=TIMEOUT_MS)
    timer.stop()
    assert widget.last_layer is not None
    assert len(ticks_at_yield) == 6  # 24 slices in batches of 4
    between = np.diff(ticks_at_yield)
    assert (between >= 1).all(), ticks_at_yield


def test_progress_is_the_panels_bar_not_naparis_activity_spinner(make_napari_viewer, qtbot,
                                                                 tiny_checkpoint, tmp_path):
    """Progress shows in the panel's bar, batch by batch, up to every slice. No
    ``napari.utils.progress`` is opened: its activity spinner repaints the whole window many
    times a second, which under software OpenGL starved the worker (3.5x slower than
    ``l2gnet predict``; benchmarks/segment_panel_speed.py)."""
    from napari.utils import progress

    viewer = make_napari_viewer()
    open_scan(viewer, write_scan(tmp_path / "ten.nii.gz",
                                 np.random.default_rng(3).random((10, 32, 32), np.float32)))
    widget = dock_segment(viewer, tiny_checkpoint)
    widget.batch_spin.setValue(4)
    seen: list[tuple[int, int, int]] = []
    widget.run()
    assert widget.progress_bar.maximum() == 10 and widget.progress_bar.value() == 0
    widget.worker.yielded.connect(lambda _v: seen.append(
        (widget.progress_bar.value(), widget.progress_bar.maximum(),
         len(progress._all_instances))))
    qtbot.waitUntil(lambda: widget.worker is None, timeout=TIMEOUT_MS)
    assert [(v, m) for v, m, _ in seen] == [(4, 10), (8, 10), (10, 10)]
    assert all(open_bars == 0 for _, _, open_bars in seen)
    assert widget.last_layer is not None


def test_segment_follows_the_session_checkpoint(make_napari_viewer, tiny_checkpoint):
    viewer = make_napari_viewer()
    widget = dock(viewer, "Segment")
    session_for(viewer).set_checkpoint(tiny_checkpoint)
    assert widget.checkpoint_edit.text() == str(tiny_checkpoint)
    assert "l2gnet" in widget.model_info.text() and "3 classes" in widget.model_info.text()


def test_bad_checkpoint_is_reported_not_run(make_napari_viewer, tmp_path, scan_file):
    viewer = make_napari_viewer()
    open_scan(viewer, scan_file)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a checkpoint")
    widget = dock(viewer, "Segment")
    widget.set_checkpoint(bad)
    assert "not a readable" in widget.model_info.text()
    widget.set_checkpoint(tmp_path / "missing.safetensors")
    widget.run()
    assert widget.worker is None and len(viewer.layers) == 1


def test_explain_layers_align_and_switch_without_rerun(make_napari_viewer, qtbot,
                                                       tiny_checkpoint, scan_file):
    viewer = make_napari_viewer()
    image = open_scan(viewer, scan_file)  # 2 mm slices, 0.5 mm pixels
    segment = _segment(qtbot, viewer, tiny_checkpoint)
    exp = segment.last_layer.metadata["l2gnet"]["explanation"]
    s, q, h, w, t = exp.plans.shape
    assert (s, h, w) == (6, 2, 2) and (q, t) == (2, 4)  # 32x32 input, stride 16, tiny config

    explain = dock(viewer, "Explain")
    assert explain.seg_combo.currentText() == "scan [tiny]"
    assert explain.ref_spin.maximum() == q - 1 and explain.bucket_spin.maximum() == t - 1
    plan, buckets, codes = explain.show_layers()
    assert plan.data.shape == (6, 2, 2) and buckets.data.shape == (6, 2, 2)
    assert codes.data.shape == (6, 2, 2)
    assert not buckets.visible and not codes.visible  # hidden until asked for
    # One cell covers 40/2 x 36/2 pixels: the grid spans exactly the image's extent.
    np.testing.assert_allclose(plan.scale, (2.0, 0.5 * 20, 0.5 * 18))
    np.testing.assert_allclose(plan.translate, (0.0, 0.5 * 9.5, 0.5 * 8.5))
    grid_lo = plan.translate[1:] - plan.scale[1:] / 2
    image_lo = np.asarray(image.translate[1:]) - np.asarray(image.scale[1:]) / 2
    np.testing.assert_allclose(grid_lo, image_lo)

    explain.ref_spin.setValue(1)
    explain.bucket_spin.setValue(3)
    assert segment.worker is None  # nothing re-ran
    np.testing.assert_allclose(plan.data, exp.plans[:, 1, :, :, 3].astype(np.float32))
    names = [lyr.name for lyr in viewer.layers]
    assert len([n for n in names if n.startswith("scan [tiny] ")]) == 3
    assert explain.table.rowCount() == t
    assert explain.table.isColumnHidden(3)  # no bucket votes in this model


def test_explain_places_a_stride_8_grid_over_the_scan(make_napari_viewer, qtbot, tmp_path,
                                                     scan_file):
    """An output-stride-8 model: twice the cells per side, still spanning the image exactly,
    and the table's token shares cover every token."""
    import torch

    from src_model import build_model, save_checkpoint
    from src_model.testing import tiny_config

    torch.manual_seed(0)
    model = build_model("l2gnet", 3, **tiny_config("l2gnet"), encoder_output_stride=8)
    path = tmp_path / "os8.safetensors"
    save_checkpoint(path, model, {"input_size": [32, 32], "normalization": {"kind": "none"}})
    viewer = make_napari_viewer()
    image = open_scan(viewer, scan_file)  # the scan first: 2 mm slices, 0.5 mm pixels
    segment = _segment(qtbot, viewer, path)
    explain = dock(viewer, "Explain")
    plan, buckets, _ = explain.show_layers()
    assert plan.data.shape == (6, 4, 4) == buckets.data.shape  # 32 / 8 cells per side
    np.testing.assert_allclose(plan.scale, (2.0, 0.5 * 10, 0.5 * 9))
    grid_lo = plan.translate[1:] - plan.scale[1:] / 2
    image_lo = np.asarray(image.translate[1:]) - np.asarray(image.scale[1:]) / 2
    np.testing.assert_allclose(grid_lo, image_lo)
    shares = [float(explain.table.item(i, 1).text().rstrip("%"))
              for i in range(explain.table.rowCount())]
    assert sum(shares) == pytest.approx(100.0, abs=0.3)
    assert segment.worker is None


def test_explain_table_says_what_each_bucket_votes_for(make_napari_viewer, qtbot, tmp_path,
                                                      scan_file):
    """A model with bucket votes (the default): the table's last column reads them."""
    import torch

    from src_model import build_model, save_checkpoint
    from src_model.testing import tiny_config

    torch.manual_seed(0)
    model = build_model("l2gnet", 3, **{**tiny_config("l2gnet"), "plan_vote": True})
    with torch.no_grad():
        model.bottleneck.bucket_votes.zero_()
        model.bottleneck.bucket_votes[0, 2, 1] = 4.0  # reference 0, bucket 2 votes "organ a"
    path = tmp_path / "voting.safetensors"
    save_checkpoint(path, model, {"class_names": ["background", "organ a", "organ b"],
                                  "input_size": [32, 32], "normalization": {"kind": "none"}})
    viewer = make_napari_viewer()
    open_scan(viewer, scan_file)
    segment = _segment(qtbot, viewer, path)
    exp = segment.last_layer.metadata["l2gnet"]["explanation"]
    assert exp.bucket_votes.shape == (2, 4, 3)
    explain = dock(viewer, "Explain")
    explain.ref_spin.setValue(0)
    explain._fill_table()
    assert not explain.table.isColumnHidden(3)
    assert explain.table.item(2, 3).text() == "organ a 96%"
    assert explain.table.item(0, 3).text() == "background 33%"


def test_bucket_table_token_shares_and_classes():
    plans = np.zeros((1, 2, 2, 3), np.float32)  # (S, h, w, t)
    plans[0, 0, 0, 0] = plans[0, 0, 1, 0] = plans[0, 1, 0, 0] = 0.2
    plans[0, 1, 1, 1] = 0.2
    plans[0, :, :, 2] = 0.1  # mass everywhere, never a token's strongest bucket
    buckets = plans.argmax(-1)
    grid = np.array([[[1, 1], [2, 0]]])
    rows = bucket_table(plans, buckets, grid, ["background", "liver", "spleen"])
    assert [r[1] for r in rows] == pytest.approx([0.75, 0.25, 0.0])
    assert "liver 67%" in rows[0][2] and "spleen 33%" in rows[0][2]
    assert rows[1][2] == "background 100%"
    assert rows[2] == (2, 0.0, "no token")


def test_vote_texts_name_each_buckets_favoured_class():
    votes = np.array([[5.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 1.0, 3.0]])
    texts = vote_texts(votes, ["background", "liver", "spleen"])
    assert texts[0] == "background 99%"
    assert texts[1] == "background 33%"  # a flat vote: no class stands out
    assert texts[2] == "spleen 84%"


def test_layer_choosers_follow_renames(make_napari_viewer, scan_file):
    viewer = make_napari_viewer()
    widget = dock(viewer, "Segment")
    layer = open_scan(viewer, scan_file)
    assert widget.image_combo.currentText() == "scan"
    layer.name = "renamed scan"
    assert widget.image_combo.currentText() == "renamed scan"
    assert same_layer(widget.image_combo.layer(), layer)


def test_explain_plan_at_a_clicked_point_is_what_the_model_computes_for_that_slice(
        make_napari_viewer, qtbot, tiny_checkpoint, tmp_path):
    """Explain after Segment, the slider moved to slice k, a point clicked: the plan and bucket
    layers' values there are reference r's transport plan row of that token, as a direct
    forward pass of slice k through the model gives it (32 x 32 slices: no resize between)."""
    import torch

    from src_model import load_checkpoint

    volume = np.random.default_rng(5).random((5, 32, 32), np.float32)
    viewer = make_napari_viewer()
    image = open_scan(viewer, write_scan(tmp_path / "square.nii.gz", volume,
                                         spacing=(2.0, 0.5, 0.5)))
    _segment(qtbot, viewer, tiny_checkpoint)
    explain = dock(viewer, "Explain")
    r, j, k = 1, 2, 3
    explain.ref_spin.setValue(r)
    explain.bucket_spin.setValue(j)
    plan, buckets, _codes = explain.show_layers()

    model, _meta = load_checkpoint(tiny_checkpoint)  # its own copy, not the panel's handle
    model.eval()
    with torch.no_grad():
        x = torch.from_numpy(volume[k])[None, None].expand(-1, model.in_channels, -1, -1)
        direct = model(x).aux["plans"][0, r].float().numpy()  # (n tokens, t)
    stride = 16
    direct = direct.reshape(32 // stride, 32 // stride, -1)  # (h, w, t)

    viewer.dims.set_current_step(0, k)  # the slice slider
    buckets.visible = True  # shown hidden; the user ticks its eye
    for row, col in [(5, 5), (5, 27), (27, 5), (27, 27)]:  # one pixel in each cell
        world = image.data_to_world((k, row, col))  # the point the user clicks
        cell = (row // stride, col // stride)
        assert plan.get_value(world, world=True) == pytest.approx(float(direct[cell][j]),
                                                                  rel=2e-3, abs=1e-4)
        assert buckets.get_value(world, world=True) == int(direct[cell].argmax())
    np.testing.assert_allclose(plan.data[k], direct[..., j], rtol=2e-3, atol=1e-4)
    assert not np.allclose(plan.data[k], plan.data[k - 1])  # each slice has its own plan
