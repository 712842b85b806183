"""Label colours from a checkpoint's ``class_colors`` (no Qt: the sample data uses it too)."""

from __future__ import annotations

from collections.abc import Sequence


def label_colormap(colors: Sequence[Sequence[float]] | None, num_classes: int):
    """napari colormap from the checkpoint's class colours (napari's default when absent)."""
    from napari.utils.colormaps import DirectLabelColormap
    from napari.utils.colormaps import label_colormap as default_cmap

    if not colors:
        return default_cmap(max(num_classes, 2))
    mapping = {i: (*[float(c) for c in rgb[:3]], 1.0) for i, rgb in enumerate(colors) if i}
    mapping[0] = (0.0, 0.0, 0.0, 0.0)
    mapping[None] = (0.0, 0.0, 0.0, 0.0)
    return DirectLabelColormap(color_dict=mapping)
