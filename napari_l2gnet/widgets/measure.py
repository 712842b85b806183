"""Measure panel: per-class volumes of a labels layer, and cardiac function (EDV, ESV, SV, EF,
myocardial mass) from ED/ES labels layers or a cine.

Volumes: the selected labels layer's voxel count, volume in mL and border contact per class
(``training.evaluation.measure.class_volumes``), recomputed when Segment replaces the layer's
data and after every paint stroke; for a cine, of the frame on screen. The voxel size comes from the
scan's affine kept in ``metadata["nifti"]`` by the reader; a layer without one (a plain
array) gets voxel counts and a note, no mL.

Cardiac: the structures are found by class name (LV, RV, Myo; ``find_cardiac_classes``).
With a cine labels layer (time, slices, rows, columns) the panel plots LV and RV volume over
time and sets ED and ES to the frames of largest and smallest LV volume (editable); with two
3-D labels layers, one is ED and the other ES. Under the indices, the most basal slices at ED
and ES are named for the reader to check (``basal_slices``: ventricle or atrium there decides
most of the RV EF error). Copy as text puts both tables on the
clipboard; Save CSV writes them. numpy and matplotlib only: no model is run here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import (
    QApplication,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from training.evaluation.measure import (
    BasalSlices,
    CardiacIndices,
    VolumeTable,
    basal_slices,
    cardiac_indices,
    class_volumes,
    find_cardiac_classes,
    frame_volumes,
    pick_ed_es,
    scan_voxel_ml,
)

from .._layer_record import read_record
from .._session import layer_key
from . import _tooltips
from ._forms import add_row, line_edit, note_label, push_button, spin_box
from ._layers import LayerCombo, is_labels
from ._panel_close import Hooks, on_panel_closed
from ._scroll import make_scrollable
from ._training_plot import _theme_colors

LV_COLOR, RV_COLOR = "#f05050", "#4c9be8"
tips = _tooltips.Measure


def layer_class_names(layer, fallback: str = "") -> list[str]:
    """Class names of a labels layer: the model's (Segment's metadata), else its features,
    else ``fallback`` (comma-separated names, background first), else those its label file
    carries (written by this package)."""
    names = read_record(layer).class_names  # the model's, or a SEG file's
    if names:
        return list(names)
    features = getattr(layer, "features", None)
    if features is not None and "class" in getattr(features, "columns", ()):
        return [str(n) for n in features["class"].tolist()]
    if fallback.strip():
        return [n.strip() for n in fallback.split(",")]
    return _file_class_names(layer)


def _file_class_names(layer) -> list[str]:
    """The names a label file written by this package keeps in its header (else none)."""
    from scan_io.nifti import read_class_names

    nifti = layer.metadata.get("nifti") or {}
    path = nifti.get("path")
    if nifti.get("kind") != "labels" or not path or not Path(path).is_file():
        return []
    try:
        return read_class_names(path) or []
    except (OSError, ValueError):
        return []


def layer_voxel_ml(layer) -> tuple[float | None, str | None]:
    """One voxel's volume in mL from the scan grid the layer carries, or (None, note)."""
    from scan_io.nifti import header_from_bytes

    nifti = layer.metadata.get("nifti") or {}
    if "affine" not in nifti:
        return None, ("no voxel size (this layer did not come from a scan file): voxel counts "
                      "only, no mL")
    header = header_from_bytes(nifti["header"]) if nifti.get("header") else None
    return scan_voxel_ml(np.asarray(nifti["affine"], float), header)


class VolumePlot(FigureCanvasQTAgg):
    """LV and RV volume (mL) against the frame, with ED and ES marked."""

    def __init__(self, viewer=None) -> None:
        self.figure = Figure(figsize=(4, 2.0), tight_layout=True)
        super().__init__(self.figure)
        self.setMinimumHeight(140)
        self.ax = self.figure.add_subplot(111)
        self._bg, self._fg = _theme_colors(viewer)
        self.figure.set_facecolor(self._bg)
        self.lv: np.ndarray = np.zeros(0)
        self.rv: np.ndarray = np.zeros(0)

    def show_curves(self, lv: np.ndarray, rv: np.ndarray, ed: int, es: int, unit: str) -> None:
        self.lv, self.rv = lv, rv
        ax, fg = self.ax, self._fg
        ax.clear()
        ax.set_facecolor(self._bg)
        ax.tick_params(colors=fg, labelsize=7)
        for spine in ax.spines.values():
            spine.set_color(fg)
        frames = np.arange(len(lv))
        ax.plot(frames, lv, "o-", color=LV_COLOR, ms=3, lw=1.2, label="LV")
        ax.plot(frames, rv, "o-", color=RV_COLOR, ms=3, lw=1.2, label="RV")
        for frame, name in ((ed, "ED"), (es, "ES")):
            ax.axvline(frame, color=fg, lw=0.8, ls="--")
            ax.text(frame, ax.get_ylim()[1], f" {name}", color=fg, fontsize=7, va="top")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("frame", color=fg, fontsize=8)
        ax.set_ylabel(f"volume ({unit})", color=fg, fontsize=8)
        ax.legend(fontsize=7, facecolor=self._bg, labelcolor=fg, frameon=False)
        self.draw_idle()


def _text_color(viewer) -> str:
    """The napari theme's text colour (links are then told apart by their underline)."""
    from napari.utils.theme import get_theme

    try:
        return get_theme(viewer.theme).text.as_hex()
    except (AttributeError, KeyError, ValueError):  # an unknown or custom theme
        return "#f0f1f2"


class MeasureWidget(QWidget):
    """Volumes of a labels layer; cardiac indices from ED/ES layers or a cine."""

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.volumes: VolumeTable | None = None
        self.indices: CardiacIndices | None = None
        self.cine_curves: tuple[np.ndarray, np.ndarray] | None = None
        self._changed: set[str] = set()
        self._timer = QTimer(self)
        self._timer.setSingleShot(True)
        self._timer.setInterval(0)
        self._timer.timeout.connect(self._after_change)

        self.labels_combo = LayerCombo(napari_viewer, is_labels)
        self.names_edit = line_edit(placeholder="background,RV,Myo,LV", tip=tips.NAMES)
        self.table = QTableWidget(0, 4)
        self.table.setHorizontalHeaderLabels(["class", "voxels", "volume (mL)", "at border"])
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)
        self.table.verticalHeader().setVisible(False)
        self.table.setMinimumHeight(120)
        self.note = note_label(color="orange")

        self.ed_combo = LayerCombo(napari_viewer, is_labels)
        self.es_combo = LayerCombo(napari_viewer, is_labels)
        self.ed_frame = spin_box(0, 0, 0, tip=tips.ED_FRAME, on=self.update_cardiac)
        self.es_frame = spin_box(0, 0, 0, tip=tips.ES_FRAME, on=self.update_cardiac)
        self.plot = VolumePlot(napari_viewer)
        self.cardiac_table = QTableWidget(3, 5)
        self.cardiac_table.setHorizontalHeaderLabels(["EDV (mL)", "ESV (mL)", "SV (mL)",
                                                      "EF (%)", "mass (g)"])
        self.cardiac_table.setVerticalHeaderLabels(["LV", "RV", "Myo (ED)"])
        self.cardiac_table.horizontalHeader().setSectionResizeMode(
            QHeaderView.ResizeMode.Stretch)
        self.cardiac_table.setFixedHeight(120)
        self.cardiac = note_label(color="orange")
        self.basal: BasalSlices | None = None  # the basal slices to check (ED, ES)
        self.basal_note = note_label(selectable=True)
        self.basal_links = QLabel()  # "Go to: ED 0, 1 · ES 0, 1", each a link to the slice
        self.basal_links.setTextFormat(Qt.TextFormat.RichText)
        self.basal_links.setTextInteractionFlags(Qt.TextInteractionFlag.LinksAccessibleByMouse)
        self.basal_links.setToolTip(tips.BASAL_LINKS)
        self.basal_links.linkActivated.connect(self.go_to_basal)
        self.copy_button = push_button("Copy as text", lambda: self.copy_text(), tips.COPY)
        self.save_button = push_button("Save CSV…", self._save_dialog, tips.SAVE)

        volumes_box = QGroupBox("Volumes")
        form = QFormLayout()
        add_row(form, "Labels", self.labels_combo, tips.LABELS, on=self.update_volumes)
        add_row(form, "Class names", self.names_edit, on=self._refresh_all)
        box = QVBoxLayout(volumes_box)
        box.addLayout(form)
        box.addWidget(self.table)
        box.addWidget(self.note)

        cardiac_box = QGroupBox("Cardiac function (LV, RV, Myo)")
        cform = QFormLayout()
        add_row(cform, "ED labels or cine", self.ed_combo, tips.ED_LABELS,
                on=self._on_cardiac_source)
        self._es_row_label = add_row(cform, "ES labels", self.es_combo, tips.ES_LABELS,
                                     on=self.update_cardiac)
        frames = QHBoxLayout()
        for text, spin in (("ED frame", self.ed_frame), ("ES frame", self.es_frame)):
            frames.addWidget(QLabel(text))
            frames.addWidget(spin)
        self._frames_widget = QWidget()
        self._frames_widget.setLayout(frames)
        cbox = QVBoxLayout(cardiac_box)
        cbox.addLayout(cform)
        cbox.addWidget(self._frames_widget)
        cbox.addWidget(self.plot)
        cbox.addWidget(self.cardiac_table)
        cbox.addWidget(self.cardiac)
        cbox.addWidget(self.basal_note)
        cbox.addWidget(self.basal_links)

        buttons = QHBoxLayout()
        buttons.addWidget(self.copy_button)
        buttons.addWidget(self.save_button)
        layout = QVBoxLayout(self)
        layout.addWidget(volumes_box)
        layout.addWidget(cardiac_box)
        layout.addLayout(buttons)
        layout.addStretch()
        make_scrollable(self, min_visible=120)

        self._hooks = Hooks()  # undone when the dock is closed (``on_panel_closed``)
        self._hooks.connect(napari_viewer.layers.events.inserted,
                            lambda e: self._watch(e.value))
        self._hooks.connect(napari_viewer.layers.events.removed,
                            lambda e: self._hooks.disconnect(layer_key(e.value)))
        self._hooks.connect(napari_viewer.dims.events.current_step, self._on_step)
        self._hooks.connect(napari_viewer.layers.selection.events.active, self._on_active)
        for layer in napari_viewer.layers:
            self._watch(layer)
        on_panel_closed(self, self._hooks.disconnect_all)
        self._on_cardiac_source()
        self.update_volumes()

    # ------------------------------------------------------------------ events
    def _watch(self, layer) -> None:
        """Recompute when a labels layer's data are replaced (Segment) or painted."""
        if not is_labels(layer) or self._hooks.has(layer_key(layer)):
            return
        for event in (layer.events.data, layer.events.paint):
            self._hooks.connect(event, lambda _e, lyr=layer: self._on_layer_changed(lyr.name),
                                key=layer_key(layer))

    def _on_layer_changed(self, name: str) -> None:
        """napari emits ``paint`` before it writes the voxels: recompute once the event loop
        is back (one timer for a burst of strokes)."""
        self._changed.add(name)
        self._timer.start()

    def _after_change(self) -> None:
        changed, self._changed = self._changed, set()
        if self.labels_combo.currentText() in changed:
            self.update_volumes()
        if changed & {self.ed_combo.currentText(), self.es_combo.currentText()}:
            self._on_cardiac_source()

    def _on_active(self, event) -> None:
        """Follow the layer the user selects in the layer list, when it is a labels layer."""
        layer = event.value
        if layer is not None and is_labels(layer):
            self.labels_combo.setCurrentText(layer.name)

    def _on_step(self, _event=None) -> None:
        layer = self.labels_combo.layer()
        if layer is not None and layer.ndim == 4:
            self.update_volumes()

    def _refresh_all(self) -> None:
        self.update_volumes()
        self._on_cardiac_source()

    def _names(self, layer) -> list[str]:
        return layer_class_names(layer, self.names_edit.text())

    # ------------------------------------------------------------------ volumes
    def _current_frame(self, layer) -> int:
        step = self.viewer.dims.current_step
        axis = self.viewer.dims.ndim - layer.ndim  # the layer's time axis in the viewer's dims
        return int(np.clip(step[axis], 0, layer.data.shape[0] - 1))

    def update_volumes(self, *_args) -> VolumeTable | None:
        """Recompute and show the volume table of the selected labels layer."""
        layer = self.labels_combo.layer()
        self.table.setRowCount(0)
        if layer is None:
            self.volumes = None
            self.note.setText("Open or make a labels layer to measure it.")
            return None
        data = np.asarray(layer.data)
        where = ""
        if data.ndim == 4:
            frame = self._current_frame(layer)
            data, where = data[frame], f" (frame {frame})"
        ml, note = layer_voxel_ml(layer)
        self.volumes = class_volumes(data, self._names(layer), voxel_ml=ml, note=note)
        self.table.setRowCount(len(self.volumes.classes))
        for r, row in enumerate(self.volumes.classes):
            cells = [row.name, str(row.voxels),
                     "-" if row.volume_ml is None else f"{row.volume_ml:.1f}",
                     "yes" if row.touches_border else ""]
            for c, text in enumerate(cells):
                self.table.setItem(r, c, QTableWidgetItem(text))
        border = [r.name for r in self.volumes.classes if r.touches_border]
        lines = [note] if note else []
        if border:
            lines.append(f"At the scan's border{where}: {', '.join(border)}. A structure cut "
                         "by the field of view or the first/last slice may be larger.")
        self.note.setText("\n".join(lines))
        self.note.setVisible(bool(lines))
        return self.volumes

    # ------------------------------------------------------------------ cardiac
    def _on_cardiac_source(self, *_args) -> None:
        """Cine (4-D) source: frames and plot; 3-D: an ES layer is needed too."""
        layer = self.ed_combo.layer()
        cine = layer is not None and layer.ndim == 4
        self._es_row_label.setVisible(not cine)
        self.es_combo.setVisible(not cine)
        self._frames_widget.setVisible(cine)
        self.plot.setVisible(cine)
        self.cine_curves = None
        if cine:
            try:
                classes = find_cardiac_classes(self._names(layer))
            except ValueError as err:
                self._cardiac_message(str(err))
                return
            ml, _ = layer_voxel_ml(layer)
            data = np.asarray(layer.data)
            lv = frame_volumes(data, classes.lv, ml or 1.0)
            rv = frame_volumes(data, classes.rv, ml or 1.0)
            self.cine_curves = (lv, rv)
            ed, es = pick_ed_es(lv) if len(lv) > 1 else (0, 0)
            for spin, value in ((self.ed_frame, ed), (self.es_frame, es)):
                spin.blockSignals(True)
                spin.setRange(0, len(lv) - 1)
                spin.setValue(value)
                spin.blockSignals(False)
        self.update_cardiac()

    def _cardiac_message(self, text: str) -> None:
        self.indices = None
        self._show_basal(None)
        self.cardiac_table.clearContents()
        self.cardiac.setText(text)
        self.cardiac.setVisible(True)

    def update_cardiac(self, *_args) -> CardiacIndices | None:
        """Recompute the cardiac indices from the chosen layers / frames."""
        layer = self.ed_combo.layer()
        if layer is None:
            self._cardiac_message("Choose the ED labels (or a cine's labels).")
            return None
        try:
            classes = find_cardiac_classes(self._names(layer))
        except ValueError as err:
            self._cardiac_message(str(err).replace("--class-names", "Class names"))
            return None
        ml, note = layer_voxel_ml(layer)
        if ml is None:
            self._cardiac_message(f"{note}: cardiac volumes need the voxel size in mm.")
            return None
        if layer.ndim == 4:
            data = np.asarray(layer.data)
            ed, es = self.ed_frame.value(), self.es_frame.value()
            ed_labels, es_labels = data[ed], data[es]
            if self.cine_curves is not None:
                self.plot.show_curves(*self.cine_curves, ed, es, "mL")
        else:
            es_layer = self.es_combo.layer()
            if es_layer is None or es_layer.name == layer.name:
                self._cardiac_message("Choose the ES labels: another labels layer on the same "
                                      "grid.")
                return None
            ed_labels, es_labels = np.asarray(layer.data), np.asarray(es_layer.data)
        try:
            self.indices = cardiac_indices(ed_labels, es_labels, classes, ml)
        except ValueError as err:
            self._cardiac_message(str(err))
            return None
        self._show_indices(self.indices)
        self._show_basal(basal_slices(ed_labels, es_labels, classes))
        return self.indices

    def _show_basal(self, basal: BasalSlices | None) -> None:
        self.basal = basal
        self.basal_note.setText(basal.message() if basal else "")
        if basal is None:
            self.basal_links.setText("")
            return

        color = _text_color(self.viewer)  # Qt's default link blue is unreadable on dark

        def links(kind: str, slices: tuple[int, ...]) -> str:
            return ", ".join(f'<a href="{kind}:{z}" style="color: {color}">{z}</a>'
                             for z in slices) or "none"

        self.basal_links.setText(f"Go to: ED {links('ed', basal.ed)} · "
                                 f"ES {links('es', basal.es)}")

    def go_to_basal(self, link: str) -> bool:
        """Show a named basal slice (``"ed:3"``, ``"es:0"``: the link clicked): that slice of
        the ED or ES labels layer, selected and visible, or of the cine's ED or ES frame."""
        kind, _, index = link.partition(":")
        layer = self.ed_combo.layer()
        if kind not in ("ed", "es") or not index.isdigit() or layer is None:
            return False
        z = int(index)
        if layer.ndim == 4:  # a cine: (time, slices, rows, columns)
            frame = (self.ed_frame if kind == "ed" else self.es_frame).value()
            steps = {0: frame, 1: z}
        else:
            layer = layer if kind == "ed" else self.es_combo.layer()
            if layer is None:
                return False
            layer.visible = True
            self.viewer.layers.selection.active = layer
            steps = {0: z}
        first = self.viewer.dims.ndim - layer.ndim  # the layer's axes are the last ones
        for axis, step in steps.items():
            self.viewer.dims.set_point(first + axis,
                                       layer.translate[axis] + step * layer.scale[axis])
        return True

    def _show_indices(self, idx: CardiacIndices) -> None:
        self.cardiac_table.clearContents()
        for r, v in enumerate((idx.lv, idx.rv)):
            for c, value in enumerate((v.edv_ml, v.esv_ml, v.sv_ml, v.ef_percent)):
                self.cardiac_table.setItem(r, c, QTableWidgetItem(f"{value:.1f}"))
        self.cardiac_table.setItem(2, 4, QTableWidgetItem(f"{idx.myo_mass_g:.1f}"))
        self.cardiac.setText("")
        self.cardiac.setVisible(False)

    # ------------------------------------------------------------------ output
    def as_text(self) -> str:
        """The volume table and the cardiac indices, tab-separated, for a report."""
        parts = []
        layer = self.labels_combo.layer()
        if self.volumes is not None and layer is not None:
            parts.append(f"Volumes: {layer.name}\n{self.volumes.to_text()}")
        if self.indices is not None:
            source = self.ed_combo.currentText()
            if self.cine_curves is not None:
                source += f" (ED frame {self.ed_frame.value()}, ES frame {self.es_frame.value()})"
            else:
                source += f" (ED), {self.es_combo.currentText()} (ES)"
            parts.append(f"Cardiac function: {source}\n{self.indices.to_text()}")
        return "\n\n".join(parts)

    def copy_text(self) -> str:
        text = self.as_text()
        QApplication.clipboard().setText(text)
        return text

    def save_csv(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """The volume table, then the cardiac indices, as one CSV (never over a file unless
        ``overwrite``)."""
        from training.evaluation.measure import write_text

        parts = []
        if self.volumes is not None:
            parts.append(self.volumes.to_csv())
        if self.indices is not None:
            parts.append(self.indices.to_csv())
        return write_text("\n".join(parts), path, overwrite=overwrite)

    def _save_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save measurements", "measurements.csv",
                                              "CSV (*.csv)")
        if path:  # the dialog has asked before replacing an existing file
            self.save_csv(path, overwrite=True)
