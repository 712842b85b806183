"""Fine-tune widget: train the current checkpoint on the user's corrected slices.

Image + corrected Labels layers -> the annotated slices (those the user painted, or every
non-empty slice) -> ``training.background.FitProcess`` (``fit`` in a separate process, so GPU
memory returns when it ends) with a live loss / Dice plot, Start and Stop -> a new checkpoint,
which becomes the session's checkpoint so that Segment uses it. A panel reports how much the
user changed the model's output (Dice and HD95 per class between the model's labels kept in
``metadata["l2gnet"]["model_labels"]`` and the layer now), as MONAI Label does.

Torch is imported only when a run starts (napari starts fast).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from scan_io.atomic import atomic_write_path

from .._session import META_KEY, session_for
from ._layers import LayerCombo, is_labels, is_scan_image

PAINTED = "slices I painted"
NON_EMPTY = "all non-empty slices"
POLL_MS = 200
_SUFFIX = re.compile(r"_finetuned(_\d+)?$")


def _l2g(layer) -> dict[str, Any]:
    meta = layer.metadata.get(META_KEY) if layer is not None else None
    return meta if isinstance(meta, dict) else {}


def layer_axis(layer) -> int:
    """The slice axis of a labels layer (``metadata["l2gnet"]["axis"]``, default 0)."""
    axis = _l2g(layer).get("axis", 0)
    return int(axis) if axis is not None else 0


def painted_slices(atoms, axis: int) -> set[int]:
    """Slice indices along ``axis`` touched by a Labels ``paint`` event's history atoms.

    napari >= 0.6 records mask edits (``slice_key``: a bounding box of slices, ``mask``: the
    changed voxels in it, or None when all of it changed); older napari and ``data_setitem``
    record ``(indices, old_values, new_values)`` with a numpy multi-index.
    """
    out: set[int] = set()
    for atom in atoms or ():
        key = getattr(atom, "slice_key", None)
        if key is not None:
            sl = key[axis]
            if isinstance(sl, slice):
                start = sl.start or 0
                mask = getattr(atom, "mask", None)
                if mask is not None and np.ndim(mask) == len(key):
                    other = tuple(d for d in range(mask.ndim) if d != axis)
                    hit = np.flatnonzero(np.asarray(mask).any(axis=other))
                    out.update(int(start + i) for i in hit)
                elif sl.stop is not None:
                    out.update(range(start, sl.stop))
                else:
                    out.add(int(start))
            else:
                out.add(int(sl))
            continue
        try:
            indices = atom[0]
            along = np.asarray(indices[axis])
        except (TypeError, IndexError):
            continue
        out.update(int(i) for i in np.unique(along))
    return out


def default_output_path(input_path: str | os.PathLike) -> Path:
    """``<stem>_finetuned.safetensors`` next to ``input_path`` (or in ~/l2gnet_checkpoints when
    that folder is not writable), made unique: ``_finetuned_2``, ``_finetuned_3``..."""
    src = Path(input_path)
    folder = src.parent
    if not os.access(folder, os.W_OK):
        folder = Path.home() / "l2gnet_checkpoints"
    stem = _SUFFIX.sub("", src.name.removesuffix(".safetensors"))
    path, n = folder / f"{stem}_finetuned.safetensors", 2
    while path.exists():
        path, n = folder / f"{stem}_finetuned_{n}.safetensors", n + 1
    return path


def copy_atomically(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Copy to a temporary name beside ``dst`` and rename: never a partial file at ``dst``."""
    dst = Path(dst)
    with atomic_write_path(dst) as tmp:
        shutil.copyfile(src, tmp)
    return dst


def change_scores(model_labels: np.ndarray, labels: np.ndarray, class_names, spacing=None):
    """Per foreground class: how much ``labels`` differs from the model's ``model_labels``.

    Rows of ``{"name", "dice", "hd95", "changed", "present"}``; Dice and HD95 (clinical
    protocol, in the units of ``spacing``) come from ``training.metrics.score_case`` on the
    class's bounding box; an untouched class scores Dice 1 and HD95 0 without computing; a
    class only one side has scores Dice 0 and HD95 None (undefined); a class neither has,
    None and None.
    """
    from training.metrics import score_case

    model_labels, labels = np.asarray(model_labels), np.asarray(labels)
    if model_labels.shape != labels.shape:
        raise ValueError(f"The model's labels {model_labels.shape} and the layer's "
                         f"{labels.shape} have different shapes")
    top = int(max(model_labels.max(initial=0), labels.max(initial=0)))
    names = list(class_names or [])
    num_classes = max(len(names), top + 1)
    rows = []
    for c in range(1, num_classes):
        before, after = model_labels == c, labels == c
        diff = before != after
        changed = int(diff.sum())
        present = bool(before.any() or after.any())
        name = names[c] if c < len(names) else f"class {c}"
        if not present:
            rows.append(dict(name=name, dice=None, hd95=None, changed=0, present=False))
            continue
        if not changed:
            rows.append(dict(name=name, dice=1.0, hd95=0.0, changed=0, present=True))
            continue
        box = _bbox(before | after, margin=1)
        score = score_case(after[box].astype(np.uint8), before[box].astype(np.uint8), 2,
                           protocol="clinical", spacing=spacing)[0]
        # one side empty (the model missed the class, or the user erased all of it): Dice 0
        d = 0.0 if score["dice"] is None else score["dice"]
        rows.append(dict(name=name, dice=d, hd95=score["hd95"], changed=changed, present=True))
    return rows


def _bbox(mask: np.ndarray, margin: int = 1) -> tuple[slice, ...]:
    out = []
    for d in range(mask.ndim):
        other = tuple(i for i in range(mask.ndim) if i != d)
        hit = np.flatnonzero(mask.any(axis=other))
        out.append(slice(max(int(hit[0]) - margin, 0), int(hit[-1]) + margin + 1))
    return tuple(out)


class FinetuneWidget(QWidget):
    """Image + corrected labels -> fine-tuned checkpoint, with live loss and Dice."""

    def __init__(self, napari_viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.session = session_for(napari_viewer)
        self.process = None  # training.background.FitProcess while a run is on
        self._painted: dict[int, set[int]] = {}  # id(labels layer) -> slices painted
        self._paint_hooks: dict[int, tuple[Any, Any]] = {}
        self._run: dict[str, Any] = {}
        self._output_edited = False
        self.last_output: Path | None = None
        self.last_error: str | None = None
        self.change_rows: list[dict[str, Any]] = []

        # ---------------------------------------------------------------- data
        self.image_combo = LayerCombo(napari_viewer, is_scan_image)
        self.labels_combo = LayerCombo(napari_viewer, is_labels)
        self.slices_combo = QComboBox()
        self.slices_combo.addItems([PAINTED, NON_EMPTY])
        self.slices_combo.setToolTip(
            "Which slices count as annotated: the ones you painted on (or that differ from "
            "the model's output), or every slice with some label")
        self.count_label = QLabel()
        self.count_label.setWordWrap(True)
        forget = QPushButton("Forget painted")
        forget.setToolTip("Forget which slices you painted on this labels layer")
        forget.clicked.connect(self.forget_painted)

        # ---------------------------------------------------------------- training
        self.epochs_spin = QSpinBox()
        self.epochs_spin.setRange(1, 10_000)
        self.epochs_spin.setValue(5)
        self.lr_spin = QDoubleSpinBox()
        self.lr_spin.setDecimals(6)
        self.lr_spin.setRange(1e-6, 1.0)
        self.lr_spin.setSingleStep(1e-4)
        self.lr_spin.setValue(1e-3)
        self.lr_spin.setToolTip("AdamW learning rate (fine-tuning on a handful of slices)")
        self.batch_spin = QSpinBox()
        self.batch_spin.setRange(1, 256)
        self.batch_spin.setValue(4)
        self.input_edit = QLineEdit(self.session.checkpoint or "")
        self.input_edit.setPlaceholderText("checkpoint to start from (.safetensors)")
        in_browse = QPushButton("…")
        in_browse.setMaximumWidth(30)
        in_browse.clicked.connect(self._browse_input)
        self.output_edit = QLineEdit()
        self.output_edit.setPlaceholderText("where to save the fine-tuned checkpoint")
        out_browse = QPushButton("…")
        out_browse.setMaximumWidth(30)
        out_browse.clicked.connect(self._browse_output)
        self.overwrite_check = QCheckBox("overwrite the input checkpoint")

        form = QFormLayout()
        form.addRow("Image", self.image_combo)
        form.addRow("Corrected labels", self.labels_combo)
        slices_row = QHBoxLayout()
        slices_row.addWidget(self.slices_combo, 1)
        slices_row.addWidget(forget)
        form.addRow("Annotated", _wrap(slices_row))
        form.addRow(self.count_label)
        form.addRow("Epochs", self.epochs_spin)
        form.addRow("Learning rate", self.lr_spin)
        form.addRow("Batch size", self.batch_spin)
        in_row = QHBoxLayout()
        in_row.addWidget(self.input_edit, 1)
        in_row.addWidget(in_browse)
        form.addRow("Input checkpoint", _wrap(in_row))
        out_row = QHBoxLayout()
        out_row.addWidget(self.output_edit, 1)
        out_row.addWidget(out_browse)
        form.addRow("Output checkpoint", _wrap(out_row))
        form.addRow("", self.overwrite_check)

        # ---------------------------------------------------------------- run
        self.start_button = QPushButton("Start")
        self.start_button.clicked.connect(self.start)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("Stop after the current step and keep the model so far "
                                    "(press again to end the process at once)")
        self.stop_button.setEnabled(False)
        self.stop_button.clicked.connect(self.stop)
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button)
        buttons.addWidget(self.stop_button)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.status = QLabel("")
        self.status.setWordWrap(True)

        self.figure = Figure(figsize=(4, 2.6), tight_layout=True)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(180)
        self.loss_ax = self.figure.add_subplot(111)
        self.dice_ax = self.loss_ax.twinx()
        self._style_plot()
        self._reset_plot()

        # ---------------------------------------------------------------- changes
        self.change_box = QGroupBox("How much you changed the model's output")
        self.change_table = QTableWidget(0, 4)
        self.change_table.setHorizontalHeaderLabels(["class", "Dice", "HD95", "voxels changed"])
        self.change_table.verticalHeader().setVisible(False)
        self.change_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.change_table.horizontalHeader().setSectionResizeMode(
            QHeaderView.ResizeMode.ResizeToContents)
        self.change_table.horizontalHeader().setStretchLastSection(True)
        self.change_table.verticalHeader().setDefaultSectionSize(20)
        self.change_table.setMinimumHeight(20 * 10 + 12)
        self.change_label = QLabel("")
        self.change_label.setWordWrap(True)
        refresh = QPushButton("Refresh")
        refresh.clicked.connect(self.refresh_changes)
        change_layout = QVBoxLayout(self.change_box)
        change_layout.addWidget(self.change_label)
        change_layout.addWidget(self.change_table)
        change_layout.addWidget(refresh)

        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(self.canvas)
        layout.addWidget(self.change_box)
        layout.addStretch(1)

        # ---------------------------------------------------------------- wiring
        self.timer = QTimer(self)
        self.timer.setInterval(POLL_MS)
        self.timer.timeout.connect(self._poll)
        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(500)
        self._debounce.timeout.connect(self._after_edit)

        napari_viewer.layers.events.inserted.connect(self._on_inserted)
        napari_viewer.layers.events.removed.connect(self._on_removed)
        for layer in napari_viewer.layers:
            self._hook(layer)
        self.labels_combo.currentTextChanged.connect(self._on_labels_changed)
        self.slices_combo.currentTextChanged.connect(self.update_count)
        self.input_edit.editingFinished.connect(self._default_output)
        self.output_edit.textEdited.connect(self._mark_output_edited)
        self.session.checkpoint_changed.connect(self._on_session_checkpoint)
        self._default_output()
        self._on_labels_changed()

    # ================================================================ layers and slices
    def _on_inserted(self, event) -> None:
        self._hook(event.value)

    def _on_removed(self, event) -> None:
        layer = event.value
        hook = self._paint_hooks.pop(id(layer), None)
        if hook is not None:
            for emitter, callback in hook:
                emitter.disconnect(callback)
        self._painted.pop(id(layer), None)

    def _hook(self, layer) -> None:
        if not is_labels(layer) or id(layer) in self._paint_hooks:
            return

        def on_paint(event, layer=layer) -> None:
            self._on_paint(layer, getattr(event, "value", None))

        def on_data(_event, layer=layer) -> None:
            if layer is self.labels_combo.layer():
                self._debounce.start()

        layer.events.paint.connect(on_paint)
        layer.events.data.connect(on_data)
        self._paint_hooks[id(layer)] = ((layer.events.paint, on_paint),
                                        (layer.events.data, on_data))

    def _on_paint(self, layer, atoms) -> None:
        data_ndim = np.ndim(layer.data)
        axis = layer_axis(layer) if data_ndim == 3 else 0
        found = painted_slices(atoms, axis) if data_ndim == 3 else {0}
        self._painted.setdefault(id(layer), set()).update(found)
        if layer is self.labels_combo.layer():
            self.update_count()
            self._debounce.start()

    def _after_edit(self) -> None:
        self.update_count()
        self.refresh_changes()

    def _on_labels_changed(self, *_args) -> None:
        layer = self.labels_combo.layer()
        source = _l2g(layer).get("source_image")
        if source and source in self.viewer.layers and is_scan_image(self.viewer.layers[source]):
            self.image_combo.setCurrentText(source)
        self.update_count()
        self.refresh_changes()

    def forget_painted(self) -> None:
        layer = self.labels_combo.layer()
        if layer is not None:
            self._painted.pop(id(layer), None)
        self.update_count()

    def annotated_slices(self, layer=None) -> list[int]:
        """The slice indices (along the layer's axis) that count as annotated now."""
        layer = layer if layer is not None else self.labels_combo.layer()
        if layer is None:
            return []
        data = np.asarray(layer.data)
        if data.ndim == 2:
            data = data[None]
            axis = 0
        elif data.ndim == 3:
            axis = layer_axis(layer)
        else:
            return []
        if self.slices_combo.currentText() == NON_EMPTY:
            other = tuple(d for d in range(3) if d != axis)
            return [int(i) for i in np.flatnonzero(data.any(axis=other))]
        found = set(self._painted.get(id(layer), set()))
        model = _l2g(layer).get("model_labels")
        if model is not None and np.shape(model) == data.shape:  # corrections outside paint
            other = tuple(d for d in range(3) if d != axis)
            found.update(int(i) for i in np.flatnonzero((np.asarray(model) != data)
                                                        .any(axis=other)))
        return sorted(i for i in found if 0 <= i < data.shape[axis])

    def update_count(self, *_args) -> None:
        slices = self.annotated_slices()
        if not slices:
            text = "No annotated slices yet: paint corrections on the labels layer"
            if self.slices_combo.currentText() == PAINTED:
                text += " (or choose all non-empty slices)"
        else:
            shown = ", ".join(str(i) for i in slices[:12]) + (" …" if len(slices) > 12 else "")
            text = f"{len(slices)} annotated slice{'s' * (len(slices) != 1)}: {shown}"
        self.count_label.setText(text)

    # ================================================================ checkpoints
    def _browse_input(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Checkpoint to start from",
                                              self.input_edit.text(), "Checkpoints (*.safetensors)")
        if path:
            self.input_edit.setText(path)
            self._default_output()

    def _browse_output(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save the fine-tuned checkpoint as",
                                              self.output_edit.text(),
                                              "Checkpoints (*.safetensors)")
        if path:
            self.output_edit.setText(path)
            self._output_edited = True

    def _mark_output_edited(self, *_args) -> None:
        self._output_edited = True

    def _default_output(self) -> None:
        if self._output_edited:
            return
        text = self.input_edit.text().strip()
        self.output_edit.setText(str(default_output_path(text)) if text else "")

    def _on_session_checkpoint(self, path: str) -> None:
        if self.is_running():
            return
        try:
            self.input_edit.setText(path)
        except RuntimeError:  # the Qt side of this widget is gone
            return
        self._default_output()

    # ================================================================ running
    def is_running(self) -> bool:
        return self.process is not None

    def _fail(self, message: str) -> None:
        self.status.setStyleSheet("color: #e05d5d;")
        self.status.setText(message)
        show_error(message)

    def _say(self, message: str) -> None:
        self.status.setStyleSheet("")
        self.status.setText(message)

    def _prepare(self):
        """Everything a run needs, checked; ``ValueError`` with a message for the user."""
        from src_model import read_metadata
        from training.background import FitJob, slices_as_case
        from training.data.cases import slices_from_arrays
        from training.fit import TrainConfig
        from training.normalization import IntensityNormalization

        image, labels = self.image_combo.layer(), self.labels_combo.layer()
        if image is None:
            raise ValueError("Choose an image layer (the scan the labels were drawn on)")
        if labels is None:
            raise ValueError("Choose a labels layer with your corrections (run Segment first, "
                             "or add a Labels layer and paint)")
        src = self.input_edit.text().strip()
        if not src:
            raise ValueError("Choose the checkpoint to start from")
        src_path = Path(src).expanduser()
        meta = read_metadata(src_path)  # CheckpointError (a ValueError) says what is wrong
        out = self.output_edit.text().strip()
        if not out:
            raise ValueError("Choose where to save the fine-tuned checkpoint")
        out_path = Path(out).expanduser()
        if out_path.suffix != ".safetensors":
            raise ValueError(f"The output checkpoint {out_path.name} must end in .safetensors")
        if out_path.resolve() == src_path.resolve() and not self.overwrite_check.isChecked():
            raise ValueError("The output is the input checkpoint: choose another output path, "
                             "or tick 'overwrite the input checkpoint'")
        if out_path.is_dir():
            raise ValueError(f"The output {out_path} is a folder; give a file name")

        if getattr(image, "multiscale", False) or getattr(labels, "multiscale", False):
            raise ValueError("Fine-tuning needs single-resolution image and labels layers "
                             "(these are multiscale)")
        volume, lab = np.asarray(image.data), np.asarray(labels.data)
        if volume.ndim == 2 and lab.ndim == 2:
            volume, lab, axis = volume[None], lab[None], 0
        elif volume.ndim == 3 and lab.ndim == 3:
            axis = layer_axis(labels)
        else:
            raise ValueError(f"Fine-tuning needs a 2-D or 3-D image and labels; got shapes "
                             f"{volume.shape} and {lab.shape}")
        num_classes = int(meta["model"]["num_classes"])
        top = int(lab.max(initial=0))
        if top >= num_classes:
            raise ValueError(
                f"Labels layer '{labels.name}' has label {top} but the model has {num_classes} "
                f"classes (0..{num_classes - 1}): fix those voxels or use a checkpoint with "
                "more classes")
        annotated = self.annotated_slices(labels)
        if not annotated:
            raise ValueError("No annotated slices: paint corrections on the labels layer, or "
                             f"choose '{NON_EMPTY}'")
        norm = IntensityNormalization.from_metadata(meta.get("normalization"))
        slices = slices_from_arrays(volume, lab, annotated, axis=axis, normalization=norm,
                                    num_classes=num_classes)
        run_dir = tempfile.mkdtemp(prefix="l2gnet-finetune-")
        config = TrainConfig(
            epochs=self.epochs_spin.value(), batch_size=self.batch_spin.value(),
            lr=float(self.lr_spin.value()), optimizer="adamw",
            input_size=tuple(meta.get("input_size") or (224, 224)), out_dir=run_dir,
        )
        overrides = {"finetuned_from": str(src_path),
                     "finetune": {"source_image": image.name, "labels": labels.name,
                                  "axis": axis, "slices": annotated}}
        job = FitJob(str(src_path), slices, config, val_cases=[slices_as_case(slices)],
                     metadata=overrides)
        return job, out_path, run_dir

    def start(self) -> bool:
        """Start fine-tuning in a separate process; False (with a message) if it cannot."""
        if self.is_running():
            self._fail("Fine-tuning is already running")
            return False
        try:
            job, out_path, run_dir = self._prepare()
        except (ValueError, OSError) as err:
            self._fail(str(err))
            return False
        from training.background import FitProcess

        self._reset_plot()
        self.last_error = None
        self.process = FitProcess(job)
        self._run = {"out": out_path, "dir": run_dir, "slices": len(job.slices),
                     "input": job.checkpoint, "step": 0, "total": 0}
        try:
            self.process.start()
        except Exception as err:  # noqa: BLE001 - e.g. the process cannot be spawned
            self.process = None
            shutil.rmtree(run_dir, ignore_errors=True)
            self._fail(f"Could not start fine-tuning: {err}")
            return False
        self.progress.setRange(0, 0)  # busy until the first step arrives
        self.start_button.setEnabled(False)
        self.stop_button.setEnabled(True)
        self.stop_button.setText("Stop")
        self._say(f"Fine-tuning on {len(job.slices)} slices (starting the training "
                  "process…)")
        self.timer.start()
        return True

    def stop(self) -> None:
        """Stop after the current step (the model so far is kept); a second press kills."""
        if self.process is None:
            return
        if self.process.stop_requested:
            self.process.kill()
            self._say("Ending the training process…")
            return
        self.process.stop()
        self.stop_button.setText("Force stop")
        self._say("Stopping after the current step…")

    def _poll(self) -> None:
        proc = self.process
        if proc is None:
            self.timer.stop()
            return
        try:
            events = proc.poll()
        except Exception as err:  # noqa: BLE001 - never a traceback dialog from a timer
            events = []
            proc.error = proc.error or str(err)
        for event in events:
            self._on_event(event)
        if events:
            self._draw()
        if proc.finished or (proc.error is not None and not proc.is_alive()):
            self._finish(proc)

    def _on_event(self, event) -> None:
        self._run["total"] = event.total_steps
        if event.kind == "step":
            self._run["step"] = event.step
            self._steps.append(event.step)
            self._losses.append(event.loss)
            self.progress.setRange(0, max(event.total_steps, 1))
            self.progress.setValue(event.step)
            self._say(f"Epoch {event.epoch + 1}, step {event.step}/{event.total_steps}: "
                      f"loss {event.loss:.4f}")
        elif event.kind == "epoch" and event.val_dice:
            mean = event.val_dice.get("mean")
            if mean is not None and np.isfinite(mean):
                self._dice_steps.append(event.step)
                self._dice.append(mean)

    def _finish(self, proc) -> None:
        self.timer.stop()
        self.process = None
        run = self._run
        self.start_button.setEnabled(True)
        self.stop_button.setEnabled(False)
        self.stop_button.setText("Stop")
        self.progress.setRange(0, 1)
        self.progress.setValue(1 if proc.result is not None else 0)
        try:
            if proc.result is None:
                reason = (proc.error or "unknown error").strip()
                self._fail(f"Fine-tuning failed: {_last_line(reason)}")
                self.last_error = reason
                return
            result = proc.result
            src = result.best_checkpoint or result.last_checkpoint
            out = copy_atomically(src, run["out"])
            self.last_output = out
            self.session.set_checkpoint(out)  # Segment uses it from now on
            self._output_edited = False
            self._default_output()
            how = "Stopped early" if result.stopped else "Done"
            which = "best Dice on the annotated slices" if result.best_checkpoint else "last"
            msg = (f"{how} after {run['step']} steps on {run['slices']} slices. Saved the "
                   f"model ({which}) to {out}; Segment now uses it — run Segment again to see "
                   "the new labels.")
            self._say(msg)
            show_info(msg)
        except OSError as err:
            self._fail(f"Could not save the fine-tuned checkpoint to {run['out']}: {err}")
        finally:
            if run.get("dir"):
                shutil.rmtree(run["dir"], ignore_errors=True)

    def shutdown(self) -> None:
        """End a run still going (the widget or the viewer is closing)."""
        self.timer.stop()
        self._debounce.stop()
        if self.process is not None:
            self.process.stop()
            if not self.process.join(10):
                self.process.kill()
            self.process = None
            if self._run.get("dir"):
                shutil.rmtree(self._run["dir"], ignore_errors=True)

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        self.shutdown()
        self._disconnect()
        super().closeEvent(event)

    def _disconnect(self) -> None:
        """Stop listening to the viewer and the session (the widget is going away)."""
        self.session.checkpoint_changed.disconnect(self._on_session_checkpoint)
        for emitter, callback in (
            (self.viewer.layers.events.inserted, self._on_inserted),
            (self.viewer.layers.events.removed, self._on_removed),
        ):
            emitter.disconnect(callback)
        for hooks in self._paint_hooks.values():
            for emitter, callback in hooks:
                emitter.disconnect(callback)
        self._paint_hooks.clear()

    # ================================================================ plot
    def _style_plot(self) -> None:
        try:
            from napari.utils.theme import get_theme

            theme = get_theme(self.viewer.theme)
            self._bg, self._fg = theme.background.as_hex(), theme.text.as_hex()
        except Exception:  # noqa: BLE001 - plain colours when the theme is unknown
            self._bg, self._fg = "#262930", "#f0f1f2"
        self.figure.set_facecolor(self._bg)

    def _reset_plot(self) -> None:
        self._steps: list[int] = []
        self._losses: list[float] = []
        self._dice_steps: list[int] = []
        self._dice: list[float] = []
        self._draw()

    def _draw(self) -> None:
        fg, loss_c, dice_c = self._fg, "#4c9be8", "#f0a030"
        ax, ax2 = self.loss_ax, self.dice_ax
        ax.clear()
        ax2.clear()
        for a in (ax, ax2):
            a.set_facecolor(self._bg)
            a.tick_params(colors=fg, labelsize=7)
            for spine in a.spines.values():
                spine.set_color(fg)
        ax.plot(self._steps, self._losses, color=loss_c, lw=1.2, label="loss")
        ax.set_xlabel("step", color=fg, fontsize=8)
        ax.set_ylabel("loss", color=loss_c, fontsize=8)
        ax2.plot(self._dice_steps, self._dice, "o-", color=dice_c, ms=3, lw=1.2)
        ax2.set_ylim(0, 1)
        ax2.set_ylabel("Dice (annotated slices)", color=dice_c, fontsize=8)
        ax2.yaxis.set_label_position("right")
        if not self._steps:
            ax.text(0.5, 0.5, "loss and Dice appear here while fine-tuning",
                    transform=ax.transAxes, ha="center", va="center", color=fg, fontsize=8)
        self.canvas.draw_idle()

    # ================================================================ changes panel
    def refresh_changes(self, *_args) -> None:
        """Dice and HD95 per class between the model's labels and the layer now."""
        layer = self.labels_combo.layer()
        meta = _l2g(layer)
        model = meta.get("model_labels")
        self.change_table.setRowCount(0)
        self.change_rows = []
        if layer is None:
            self.change_label.setText("No labels layer")
            return
        if model is None:
            self.change_label.setText(
                f"'{layer.name}' keeps no model output to compare with (only layers made by "
                "Segment do)")
            return
        try:
            spacing = tuple(float(s) for s in layer.scale)
            rows = change_scores(model, np.asarray(layer.data), meta.get("class_names"),
                                 spacing)
        except ValueError as err:
            self.change_label.setText(str(err))
            return
        changed = sum(r["changed"] for r in rows)
        self.change_label.setText(
            f"{changed} voxels changed; Dice 1 = as the model drew it; HD95 in the layer's "
            "scale units (mm for scans)")
        self.change_table.setRowCount(len(rows))
        for i, row in enumerate(rows):
            cells = [row["name"],
                     "—" if row["dice"] is None else f"{row['dice']:.3f}",
                     "—" if row["hd95"] is None else f"{row['hd95']:.2f}",
                     str(row["changed"]) if row["present"] else "absent"]
            for j, text in enumerate(cells):
                self.change_table.setItem(i, j, QTableWidgetItem(text))
        self.change_rows = rows


def _wrap(layout) -> QWidget:
    widget = QWidget()
    layout.setContentsMargins(0, 0, 0, 0)
    widget.setLayout(layout)
    return widget


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else text
