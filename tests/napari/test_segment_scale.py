"""The Segment panel uses the scan's voxel size when the model works at a physical pixel size
(``target_spacing_mm``), docked and opened as a user does."""

from __future__ import annotations

import numpy as np

from napari_l2gnet.testing import dock, open_scan

TIMEOUT_MS = 60_000


def test_segment_panel_resamples_to_the_models_pixel_size(make_napari_viewer, qtbot, tmp_path,
                                                          scan, scan_file):
    import torch

    from src_model import build_model, save_checkpoint
    from src_model.testing import tiny_config
    from training.inference import predict_volume

    torch.manual_seed(3)
    model = build_model("l2gnet", 3, **tiny_config("l2gnet"))
    with torch.no_grad():  # an untrained model says "background" everywhere: make its
        model.head.bias.zero_()  # output depend on the pixels it sees
        model.head.weight.mul_(100)
    path = save_checkpoint(tmp_path / "scaled.safetensors", model, {
        "class_names": ["background", "organ a", "organ b"], "input_size": [32, 32],
        "normalization": {"kind": "none"}, "target_spacing_mm": [0.25, 0.25]})
    physical = predict_volume(scan, str(path), device="cpu", spacing=(2.0, 0.5, 0.5)).labels
    plain = predict_volume(scan, str(path), device="cpu").labels
    assert not np.array_equal(physical, plain)  # the pixel size matters for this model

    viewer = make_napari_viewer()
    open_scan(viewer, scan_file)  # the plugin's reader: scale (2, 0.5, 0.5) mm
    widget = dock(viewer, "Segment")
    widget.set_checkpoint(path)
    widget.device_combo.setCurrentText("cpu")
    widget.run()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=TIMEOUT_MS)
    np.testing.assert_array_equal(widget.last_layer.data, physical)
