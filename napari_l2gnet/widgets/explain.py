"""Explain widget: the transport plans, bucket assignments and VQ codes behind a segmentation.

Everything shown was computed once during segmentation and cached in the segmentation
layer's metadata at bottleneck resolution; the layers are placed over the scan with napari's
scale/translate (never upsampled into memory), so choosing another reference or bucket only
swaps an array view. A table gives each bucket's share of the scan's tokens and the classes
it overlaps.
"""

from __future__ import annotations

import numpy as np
from napari.utils.notifications import show_error
from qtpy.QtWidgets import (
    QFormLayout,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)
from scipy.special import softmax

from .._layer_record import EXPLANATION, LayerRecord, read_record, write_record
from . import _tooltips
from ._forms import add_row, hbox, note_label, push_button, spin_box
from ._layers import LayerCombo, grid_placement
from ._panel_close import on_panel_closed


def _has_explanation(layer) -> bool:
    record = read_record(layer)
    return record.is_segmentation and record.explanation is not None


def bucket_table(plans_r: np.ndarray, buckets_r: np.ndarray, labels_on_grid: np.ndarray,
                 class_names: list[str]) -> list[tuple[int, float, str]]:
    """Per bucket j: the share of the scan's tokens whose strongest bucket is j, and the classes
    those tokens fall on.

    Not the bucket's transport mass: Sinkhorn fixes that to the column marginal (1/t, or the
    model's learned marginal), so it would read the same on every scan.
    ``plans_r`` (S, h, w, t), ``buckets_r`` (S, h, w) argmax over t, ``labels_on_grid``
    (S, h, w) the segmentation sampled at the cell centres. Returns (j, token share, text).
    """
    t = plans_r.shape[-1]
    share = np.bincount(buckets_r.ravel().astype(np.int64), minlength=t)[:t] / max(
        buckets_r.size, 1)
    rows = []
    for j in range(t):
        cls = labels_on_grid[buckets_r == j]
        if cls.size == 0:
            rows.append((j, 0.0, "no token"))
            continue
        counts = np.bincount(cls.ravel().astype(np.int64), minlength=len(class_names))
        top = np.argsort(counts)[::-1][:2]
        text = ", ".join(
            f"{class_names[c] if c < len(class_names) else c} {counts[c] / cls.size:.0%}"
            for c in top if counts[c]
        )
        rows.append((j, float(share[j]), text))
    return rows


def vote_texts(votes_r: np.ndarray, class_names: list[str]) -> list[str]:
    """Per bucket j: the class its learned vote favours and that class's softmax share.

    ``votes_r`` (t, C): reference r's bucket votes (L2GNet ``plan_vote``), the class logits a
    token sent wholly to bucket j adds to the output.
    """
    p = softmax(votes_r.astype(np.float64), axis=-1)
    top = p.argmax(-1)
    return [f"{class_names[c] if c < len(class_names) else c} {p[j, c]:.0%}"
            for j, c in enumerate(top)]


def labels_at_cells(labels: np.ndarray, axis: int, grid_shape: tuple[int, int],
                    grid_scale: tuple[float, float]) -> np.ndarray:
    """The label at each bottleneck cell's centre pixel: (S, h, w), slices first."""
    vol = np.moveaxis(labels, axis, 0)
    h, w = grid_shape
    ys = np.clip(((np.arange(h) + 0.5) * grid_scale[0]).astype(int), 0, vol.shape[1] - 1)
    xs = np.clip(((np.arange(w) + 0.5) * grid_scale[1]).astype(int), 0, vol.shape[2] - 1)
    return vol[:, ys][:, :, xs]


tips = _tooltips.Explain
ROW_HEIGHT = 22
MIN_ROWS = 4


class ExplainWidget(QWidget):
    """Choose reference r (of q) and bucket j (of t); show plan, buckets and codes layers."""

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.seg_combo = LayerCombo(napari_viewer, _has_explanation)
        self.ref_spin = spin_box(0, 0, 0, tip=tips.REFERENCE, on=self._on_choice)
        self.bucket_spin = spin_box(0, 0, 0, tip=tips.BUCKET, on=self._on_choice)
        # not clicked's checked=False as show_layers' select
        self.show_button = push_button("Show layers", lambda: self.show_layers(), tips.SHOW)
        self.info = note_label("Segment an image first, with 'keep transport plans and "
                               "codes' ticked (under Segment's Options).")
        self.table = QTableWidget(0, 4)
        self.table.setHorizontalHeaderLabels(["bucket", "tokens", "classes it covers",
                                              "votes for"])
        self.table.horizontalHeaderItem(1).setToolTip(tips.TOKENS)
        self.table.horizontalHeaderItem(3).setToolTip(tips.VOTES)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(ROW_HEIGHT)
        # the panel's point: never fewer than MIN_ROWS rows in view, and any spare height
        self.table.setMinimumHeight(self.table.horizontalHeader().sizeHint().height()
                                    + MIN_ROWS * ROW_HEIGHT + 2 * self.table.frameWidth())
        bucket_label = QLabel("Bucket j")
        bucket_label.setToolTip(tips.BUCKET)
        form = QFormLayout()
        add_row(form, "Segmentation", self.seg_combo, tips.SEGMENTATION,
                on=self._on_segmentation)
        add_row(form, "Reference r", hbox(self.ref_spin, bucket_label, self.bucket_spin,
                                          self.show_button, stretch_first=False),
                tips.REFERENCE)
        # no scroll area: the table scrolls itself, so the rows above it stay put
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.info)
        layout.addWidget(self.table, 1)
        self._on_segmentation()
        on_panel_closed(self)  # the dock closed: the segmentation picker lets go of the viewer

    # ------------------------------------------------------------------ state
    def _context(self):
        seg = self.seg_combo.layer()
        if seg is None:
            return None
        record = read_record(seg)
        return seg, record, record.explanation

    def _on_segmentation(self, *_args) -> None:
        ctx = self._context()
        if ctx is None:
            self.ref_spin.setRange(0, 0)
            self.bucket_spin.setRange(0, 0)
            return
        _, _record, exp = ctx
        if exp.plans is not None:
            _, q, h, w, t = exp.plans.shape
            self.ref_spin.setRange(0, q - 1)
            self.bucket_spin.setRange(0, t - 1)
            self.info.setText(f"q = {q} references x t = {t} buckets on a {h} x {w} grid per "
                              f"slice; one cell = {exp.grid_scale[0]:.1f} x "
                              f"{exp.grid_scale[1]:.1f} pixels.")
        else:
            self.info.setText("This model has no transport plans (codes only).")
        self._fill_table()

    def _on_choice(self, *_args) -> None:
        if self._layer_names() and self._layer_names()[0] in self.viewer.layers:
            self.show_layers(select=False)
        self._fill_table()

    def _layer_names(self) -> tuple[str, str, str] | tuple[()]:
        ctx = self._context()
        if ctx is None:
            return ()
        name = ctx[0].name
        return f"{name} plan", f"{name} buckets", f"{name} codes"

    # ------------------------------------------------------------------ layers
    def show_layers(self, select: bool = True) -> list:
        """Create (or update in place) the plan, bucket and code layers; returns them."""
        ctx = self._context()
        if ctx is None:
            show_error("No segmentation with an explanation: run Segment with 'keep transport "
                       "plans and codes' ticked.")
            return []
        seg, record, exp = ctx
        axis = record.axis
        scale, translate = grid_placement(seg, axis, exp.grid_scale)
        r, j = self.ref_spin.value(), self.bucket_spin.value()
        plan_name, bucket_name, code_name = self._layer_names()
        made = []
        if exp.plans is not None:
            plan = np.moveaxis(exp.plans[:, r, :, :, j], 0, axis).astype(np.float32)  # no resize
            made.append(self._upsert(plan_name, plan, "image", scale, translate, dict(
                colormap="inferno", blending="additive", opacity=0.5,
                contrast_limits=(0.0, float(max(plan.max(), 1e-6)))),
                f"T[:, r={r}, :, j={j}]"))
            buckets = np.moveaxis(exp.buckets[:, r], 0, axis)
            made.append(self._upsert(bucket_name, buckets, "labels", scale, translate,
                                     dict(opacity=0.4, visible=False),
                                     f"argmax over buckets, r={r}"))
        if exp.codes is not None:
            codes = np.moveaxis(exp.codes, 0, axis)
            made.append(self._upsert(code_name, codes, "labels", scale, translate,
                                     dict(opacity=0.4, visible=False), "VQ code index"))
        if select and made:
            self.viewer.layers.selection.active = made[0]
        return made

    def _upsert(self, name, data, kind, scale, translate, style, what):
        meta: dict = {}
        write_record(meta, LayerRecord(role=EXPLANATION, what=what))
        if name in self.viewer.layers:
            layer = self.viewer.layers[name]
            layer.data = data
            layer.metadata = meta
            if kind == "image" and "contrast_limits" in style:
                layer.contrast_limits = style["contrast_limits"]
            return layer
        add = self.viewer.add_image if kind == "image" else self.viewer.add_labels
        return add(data, name=name, scale=scale, translate=translate, metadata=meta, **style)

    def _fill_table(self) -> None:
        ctx = self._context()
        self.table.setRowCount(0)
        if ctx is None or ctx[2].plans is None:
            return
        seg, record, exp = ctx
        r = self.ref_spin.value()
        grid = labels_at_cells(np.asarray(seg.data), record.axis,
                               exp.plans.shape[2:4], exp.grid_scale)
        names = record.class_names
        rows = bucket_table(exp.plans[:, r], exp.buckets[:, r], grid, names)
        votes = (vote_texts(exp.bucket_votes[r], names) if exp.bucket_votes is not None
                 else [""] * len(rows))
        self.table.setColumnHidden(3, exp.bucket_votes is None)
        self.table.setRowCount(len(rows))
        for i, ((j, share, text), vote) in enumerate(zip(rows, votes, strict=True)):
            for col, value in enumerate((str(j), f"{share:.1%}", text, vote)):
                self.table.setItem(i, col, QTableWidgetItem(value))
        self.table.resizeColumnsToContents()
        self.table.selectRow(self.bucket_spin.value())
