"""Fine-tune widget: teach the current checkpoint the user's corrected slices, then Accept.

Image + corrected Labels layers -> the annotated slices (painted, or every non-empty slice)
-> ``training.finetuning.process.FinetuneProcess`` (``training.finetuning.run_finetune`` in its
own process, started from its own module) with a live loss / Dice plot (epoch 0 is the
starting model) -> a report: Dice on the corrected slices before and after, how much the
uncorrected slices changed, and per class on the corrected slices (a painted class that was
not learned in red, with what to do) -> Accept (asking before replacing a file) makes the new
checkpoint the session's, so Segment uses it, and saves this scan's corrections to the local
annotation store; the next run includes the store's cases ("Include earlier corrections").
"Where to correct next" lists the slices the model is least sure of; a click jumps there.
Closing the panel or the viewer ends a running child and removes its temporary folder.
The Qt-free logic lives in ``training.finetuning`` (``finetune``, ``class_outcomes``,
``store_volumes``), ``scan_io.annotation_store`` and ``training.inference.uncertainty``.
"""

from __future__ import annotations

import tempfile
from collections.abc import Hashable
from pathlib import Path
from typing import Any

import numpy as np
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from training.finetuning.class_outcomes import outcomes_of
from training.finetuning.finetune import FinetuneSettings, change_scores

from .._session import is_segmentation, layer_key, same_layer, session_for
from ..models import is_shipped
from ._annotations import (
    _l2g,
    annotated_slices,
    copy_atomically,
    default_output_path,
    layer_axis,
    painted_slices,
    user_finetune_dir,
)
from ._change_table import ChangeTable
from ._layers import LayerCombo, is_labels, is_scan_image
from ._new_classes import NewClassesBox, layer_class_colors
from ._outcome_table import OutcomeTable
from ._run_cleanup import RunCleanup
from ._scroll import make_scrollable
from ._slice_ranking import SliceRanking
from ._store_box import StoreBox
from ._training_plot import TrainingPlot

__all__ = ["FinetuneWidget", "change_scores", "copy_atomically", "default_output_path",
           "painted_slices", "user_finetune_dir"]

PAINTED = "slices I painted"
NON_EMPTY = "all non-empty slices"
POLL_MS = 200


def _row(*widgets, stretch_first: bool = True) -> QWidget:
    box = QWidget()
    layout = QHBoxLayout(box)
    layout.setContentsMargins(0, 0, 0, 0)
    for i, w in enumerate(widgets):
        layout.addWidget(w, 1 if (i == 0 and stretch_first) else 0)
    return box


def _spin(low, high, value, decimals=None, tip="") -> QSpinBox | QDoubleSpinBox:
    spin = QSpinBox() if decimals is None else QDoubleSpinBox()
    if decimals is not None:
        spin.setDecimals(decimals)
        spin.setSingleStep(10 ** -decimals * 10)
    spin.setRange(low, high)
    spin.setValue(value)
    spin.setToolTip(tip)
    return spin


def _button(text: str, slot, tip: str = "") -> QPushButton:
    button = QPushButton(text)
    button.clicked.connect(slot)
    button.setToolTip(tip)
    return button


class FinetuneWidget(QWidget):
    """Image + corrected labels -> fine-tuned checkpoint, shown before/after, then Accept."""

    def __init__(self, napari_viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.session = session_for(napari_viewer)
        self.process = None  # training.finetuning.process.FinetuneProcess while a run is on
        self._painted: dict[Hashable, set[int]] = {}  # layer_key(labels) -> slices painted
        self._paint_hooks: dict[Hashable, tuple[Any, Any]] = {}
        self._run: dict[str, Any] = {}
        self._output_edited = False
        self.last_output: Path | None = None
        self.last_report = None  # training.finetuning.finetune.FinetuneReport of the last run
        self.last_error: str | None = None
        self.last_store_case = None  # scan_io.annotation_store.StoredCase saved by Accept
        self._cleanup = RunCleanup()  # ends the child, removes its folder when the panel goes
        self.destroyed.connect(self._cleanup)

        layout = QVBoxLayout(self)
        layout.addWidget(self._data_box())
        self.new_classes = NewClassesBox()  # label values the model lacks: name them to add
        layout.addWidget(self.new_classes)
        self._names_cache: tuple[str, list[str]] | None = None
        self.ranking = SliceRanking(self.viewer, self._rank_request, self._fail)
        layout.addWidget(self.ranking)
        layout.addWidget(self._settings_box())
        self.store_box = StoreBox()
        layout.addWidget(self.store_box)
        layout.addWidget(self._run_box())
        layout.addWidget(self._result_box())
        self.changes = ChangeTable(lambda: self.labels_combo.layer())
        layout.addWidget(self.changes)
        layout.addStretch(1)
        make_scrollable(self)
        self._wire()

    # ================================================================ form
    def _data_box(self) -> QGroupBox:
        self.image_combo = LayerCombo(self.viewer, is_scan_image)
        self.labels_combo = LayerCombo(self.viewer, is_labels)
        self.slices_combo = QComboBox()
        self.slices_combo.addItems([PAINTED, NON_EMPTY])
        self.slices_combo.setToolTip(
            "Which slices count as annotated: the ones you painted on (or that differ from "
            "the model's output), or every slice with some label")
        self.count_label = QLabel()
        self.count_label.setWordWrap(True)
        forget = _button("Forget painted", self.forget_painted,
                         "Forget which slices you painted on this labels layer")
        box = QGroupBox("Corrections")
        form = QFormLayout(box)
        form.addRow("Image", self.image_combo)
        form.addRow("Corrected labels", self.labels_combo)
        form.addRow("Annotated", _row(self.slices_combo, forget))
        form.addRow(self.count_label)
        return box

    def _settings_box(self) -> QGroupBox:
        d = FinetuneSettings()
        self.epochs_spin = _spin(1, 10_000, d.epochs, tip="Each epoch shows the corrected "
                                 f"slices about {d.samples_per_epoch} times, augmented")
        self.lr_spin = _spin(1e-6, 1.0, d.lr, decimals=6, tip="AdamW learning rate")
        self.batch_spin = _spin(1, 256, d.batch_size)
        self.keep_spin = _spin(0.0, 10.0, d.keep_weight, decimals=2, tip=(
            "Keep what the model knows: when it already agrees with your corrections (Dice "
            ">= 0.5), its own labels on uncorrected slices are mixed in, this many per "
            "corrected slice times that Dice (0: off)"))
        self.input_edit = QLineEdit(self.session.checkpoint or "")
        self.input_edit.setPlaceholderText("checkpoint to start from (.safetensors)")
        self.output_edit = QLineEdit()
        self.output_edit.setPlaceholderText("where Accept saves the fine-tuned checkpoint")
        self.overwrite_check = QCheckBox("overwrite the input checkpoint")
        box = QGroupBox("Settings")
        form = QFormLayout(box)
        form.addRow("Epochs", self.epochs_spin)
        form.addRow("Learning rate", self.lr_spin)
        form.addRow("Batch size", self.batch_spin)
        form.addRow("Keep what it knows", self.keep_spin)
        form.addRow("Input checkpoint",
                    _row(self.input_edit, _button("…", self._browse_input)))
        form.addRow("Output checkpoint",
                    _row(self.output_edit, _button("…", self._browse_output)))
        form.addRow("", self.overwrite_check)
        return box

    def _run_box(self) -> QWidget:
        self.start_button = _button("Start", self.start)
        self.stop_button = _button("Stop", self.stop, "Stop after the current step and keep "
                                   "the best model so far (press again to end at once)")
        self.stop_button.setEnabled(False)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.plot = TrainingPlot(self.viewer)
        box = QWidget()
        col = QVBoxLayout(box)
        col.setContentsMargins(0, 0, 0, 0)
        col.addWidget(_row(self.start_button, self.stop_button, stretch_first=False))
        col.addWidget(self.progress)
        col.addWidget(self.status)
        col.addWidget(self.plot)
        return box

    def _result_box(self) -> QGroupBox:
        self.result_label = QLabel("Dice before and after appear here after a run.")
        self.result_label.setWordWrap(True)
        self.outcomes = OutcomeTable()
        self.accept_button = _button("Accept", self.accept, "Save the fine-tuned checkpoint "
                                     "to the output path; Segment uses it from now on")
        self.accept_button.setEnabled(False)
        box = QGroupBox("Result")
        col = QVBoxLayout(box)
        col.addWidget(self.result_label)
        col.addWidget(self.outcomes)
        col.addWidget(self.accept_button)
        return box

    def _wire(self) -> None:
        self.timer = QTimer(self)
        self.timer.setInterval(POLL_MS)
        self.timer.timeout.connect(self._poll)
        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(500)
        self._debounce.timeout.connect(self._after_edit)
        self.viewer.layers.events.inserted.connect(self._on_inserted)
        self.viewer.layers.events.removed.connect(self._on_removed)
        for layer in self.viewer.layers:
            self._hook(layer)
        self.labels_combo.currentTextChanged.connect(self._on_labels_changed)
        self.slices_combo.currentTextChanged.connect(self.update_count)
        self.input_edit.editingFinished.connect(self._default_output)
        self.input_edit.editingFinished.connect(self.update_count)
        self.output_edit.textEdited.connect(self._mark_output_edited)
        self.session.checkpoint_changed.connect(self._on_session_checkpoint)
        self._default_output()
        self._on_labels_changed()

    # ================================================================ layers and slices
    def _on_inserted(self, event) -> None:
        layer = event.value
        self._hook(layer)
        if is_labels(layer) and is_segmentation(layer) and not self.is_running():
            self.labels_combo.setCurrentText(layer.name)  # follow Segment's new layer

    def _on_removed(self, event) -> None:
        layer = event.value
        for emitter, callback in self._paint_hooks.pop(layer_key(layer), ()):
            emitter.disconnect(callback)
        self._painted.pop(layer_key(layer), None)

    def _hook(self, layer) -> None:
        if not is_labels(layer) or layer_key(layer) in self._paint_hooks:
            return

        def on_paint(event, layer=layer) -> None:
            self._on_paint(layer, getattr(event, "value", None))

        def on_data(_event, layer=layer) -> None:
            if same_layer(layer, self.labels_combo.layer()):
                self._debounce.start()

        layer.events.paint.connect(on_paint)
        layer.events.data.connect(on_data)
        self._paint_hooks[layer_key(layer)] = ((layer.events.paint, on_paint),
                                        (layer.events.data, on_data))

    def _on_paint(self, layer, atoms) -> None:
        data_ndim = np.ndim(layer.data)
        axis = layer_axis(layer) if data_ndim == 3 else 0
        found = painted_slices(atoms, axis) if data_ndim == 3 else {0}
        self._painted.setdefault(layer_key(layer), set()).update(found)
        if same_layer(layer, self.labels_combo.layer()):
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
            self._painted.pop(layer_key(layer), None)
        self.update_count()
        self.refresh_changes()

    def annotated_slices(self, layer=None) -> list[int]:
        """The slice indices (along the layer's axis) that count as annotated now."""
        layer = layer if layer is not None else self.labels_combo.layer()
        if layer is None:
            return []
        return annotated_slices(layer.data, layer_axis(layer),
                                self._painted.get(layer_key(layer), set()),
                                _l2g(layer).get("model_labels"),
                                self.slices_combo.currentText() == NON_EMPTY)

    def _no_slices_message(self, layer) -> str:
        text = f"No annotated slices on '{layer.name}' yet: paint corrections on it"
        if self.slices_combo.currentText() == PAINTED:
            text += f", or choose '{NON_EMPTY}'"
        return text

    def update_count(self, *_args) -> None:
        layer = self.labels_combo.layer()
        slices = self.annotated_slices(layer)
        if layer is None:
            text = "No labels layer: run Segment, or add a Labels layer and paint"
        elif not slices:
            text = self._no_slices_message(layer)
        else:
            shown = ", ".join(str(i) for i in slices[:12]) + (" …" if len(slices) > 12 else "")
            text = f"{len(slices)} annotated slice{'s' * (len(slices) != 1)}: {shown}"
        self.count_label.setText(text)
        self._refresh_new_classes(layer)

    def _model_names(self) -> list[str]:
        """The input checkpoint's class names ([] when it cannot be read yet)."""
        from src_model import CheckpointError
        from training.inference.model_handle import open_model

        src = self.input_edit.text().strip()
        if self._names_cache is None or self._names_cache[0] != src:
            try:
                names = list(open_model(src).meta.class_names)
            except (CheckpointError, OSError):
                names = []
            self._names_cache = (src, names)
        return self._names_cache[1]

    def _refresh_new_classes(self, layer=None) -> None:
        layer = layer if layer is not None else self.labels_combo.layer()
        self.new_classes.refresh(layer, self._model_names() if layer is not None else [])

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

    # ================================================================ where to correct next
    def _rank_request(self):
        image, labels = self.image_combo.layer(), self.labels_combo.layer()
        src = self.input_edit.text().strip()
        if image is None or not src:
            self._fail("Choose an image layer and the checkpoint to start from")
            return None
        axis = layer_axis(labels) if labels is not None and np.ndim(image.data) == 3 else 0
        done = self.annotated_slices(labels) if labels is not None else []
        return np.asarray(image.data), src, axis, done

    def rank_slices(self) -> bool:
        """Segment with the input checkpoint in a thread; list the most uncertain slices."""
        return self.ranking.rank()

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
        """The job, where Accept will save, and what Accept stores, checked; ``ValueError``
        says what to fix."""
        from src_model import read_metadata
        from training.data.normalization import IntensityNormalization
        from training.finetuning.finetune import volume_from_arrays
        from training.finetuning.process import FinetuneJob
        from training.finetuning.store_volumes import StoreVolumes, store_volumes
        from training.fitting.new_classes import model_class_names

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
        out_path = self._checked_output(src_path)
        if getattr(image, "multiscale", False) or getattr(labels, "multiscale", False):
            raise ValueError("Fine-tuning needs single-resolution image and labels layers "
                             "(these are multiscale)")
        annotated = self.annotated_slices(labels)
        if not annotated:
            raise ValueError(self._no_slices_message(labels))
        axis = layer_axis(labels) if np.ndim(labels.data) == 3 else 0
        normalization = IntensityNormalization.from_metadata(meta.get("normalization"))
        num_classes = int(meta["model"]["num_classes"])
        self._refresh_new_classes(labels)
        grown = self.new_classes.request(meta.get("class_colors") or
                                         layer_class_colors(labels, num_classes))
        names = list(grown[0]) if grown else model_class_names(meta)
        label_data = np.array(labels.data, copy=True)  # as trained on, for the store
        volume = volume_from_arrays(
            np.asarray(image.data), label_data, annotated, axis=axis,
            normalization=normalization, num_classes=len(names), name=labels.name,
            spacing=_scan_spacing(image))
        self.store_box.refresh()
        source = (image.metadata.get("nifti") or {}).get("path")
        earlier = (store_volumes(self.store_box.store, names, normalization,
                                 current=(source, axis, annotated))
                   if self.store_box.include else StoreVolumes())
        volumes = [volume, *earlier.volumes]
        settings = FinetuneSettings(epochs=self.epochs_spin.value(),
                                    lr=float(self.lr_spin.value()),
                                    batch_size=self.batch_spin.value(),
                                    keep_weight=float(self.keep_spin.value()))
        overrides = {"finetuned_from": str(src_path),
                     "finetune": {"source_image": image.name, "labels": labels.name,
                                  "axis": axis, "slices": annotated,
                                  "store_cases": [c.case_id for c in earlier.cases]}}
        extras = {"class_names": names, "notes": earlier.notes,
                  "earlier": (len(earlier.volumes), earlier.slices),
                  "corrected_labels": [v.labels[v.corrected] for v in volumes],
                  "case": {"image": np.asarray(image.data), "labels": label_data,
                           "corrected": annotated, "axis": axis, "class_names": names,
                           "nifti": image.metadata.get("nifti"),
                           "spacing": tuple(float(x) for x in image.scale)}}
        job = FinetuneJob(str(src_path), volumes, settings, overrides)
        if grown:  # teach the new values as new classes (the model grows; docs/new-classes.md)
            job.class_names, job.class_colors = grown
            job.taught_on = (f"the napari Fine-tune panel: {len(annotated)} corrected slices "
                             f"of '{image.name}'")
        return job, out_path, extras

    def _checked_output(self, src_path: Path) -> Path:
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
        return out_path

    def start(self) -> bool:
        """Start fine-tuning in its own process; False (with a message) if it cannot."""
        if self.is_running():
            self._fail("Fine-tuning is already running")
            return False
        try:
            job, out_path, extras = self._prepare()
        except (ValueError, OSError) as err:
            self._fail(str(err))
            return False
        from training.finetuning.process import FinetuneProcess

        self._discard_run()
        self.plot.reset()
        self.last_error = self.last_report = None
        self.accept_button.setEnabled(False)
        self.result_label.setText("Running…")
        self.outcomes.set_outcomes([])
        run_dir = tempfile.mkdtemp(prefix="l2gnet-finetune-")
        self.process = FinetuneProcess(job, run_dir)
        self._cleanup.track(self.process, run_dir)
        self._run = {"out": out_path, "dir": run_dir, "input": job.checkpoint,
                     "slices": len(job.volumes[0].corrected), "step": 0, "total": 0,
                     **extras}
        try:
            self.process.start()
        except Exception as err:  # noqa: BLE001 - e.g. the process cannot be started
            self.process = None
            self._cleanup.end()
            self._fail(f"Could not start fine-tuning: {err}")
            return False
        self.progress.setRange(0, 0)  # busy until the first step arrives
        self.start_button.setEnabled(False)
        self.stop_button.setEnabled(True)
        self.stop_button.setText("Stop")
        scans, slices = self._run["earlier"]
        more = (f" and {slices} of {scans} earlier scan{'s' * (scans != 1)} from the store"
                if scans else "")
        self._say(f"Scoring the starting model, then fine-tuning on {self._run['slices']} "
                  f"slices of this scan{more}…"
                  + "".join(f"\n{note}" for note in self._run["notes"]))
        if out_path.exists():
            self._say(self.status.text() + f"\n{out_path} exists: Accept will ask before "
                      "replacing it.")
        self.timer.start()
        return True

    def stop(self) -> None:
        """Stop after the current step (the best model so far is kept); a second press kills."""
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
        events = proc.poll()
        for event in events:
            self._on_event(event)
        if events:
            self.plot.redraw()
        if proc.finished:
            self._finish(proc)

    def _on_event(self, event) -> None:
        self._run["total"] = event.total_steps
        if event.kind == "step":
            self._run["step"] = event.step
            self.plot.add_loss(event.step, event.loss)
            self.progress.setRange(0, max(event.total_steps, 1))
            self.progress.setValue(event.step)
            self._say(f"Epoch {event.epoch + 1}, step {event.step}/{event.total_steps}: "
                      f"loss {event.loss:.4f}")
        elif event.kind == "epoch" and event.val_dice:
            mean = event.val_dice.get("mean")
            if mean is not None and np.isfinite(mean):
                self.plot.add_dice(event.step, mean)
            if event.epoch == 0:
                self._say(f"Starting model: Dice {mean:.3f} on the corrected slices; "
                          "fine-tuning…")

    def _finish(self, proc) -> None:
        self.timer.stop()
        self.process = None
        self._cleanup.finished()
        self.start_button.setEnabled(True)
        self.stop_button.setEnabled(False)
        self.stop_button.setText("Stop")
        self.progress.setRange(0, 1)
        report = proc.result
        self.progress.setValue(1 if report is not None else 0)
        if report is None:
            reason = (proc.error or "unknown error").strip()
            self.last_error = reason
            self._fail(f"Fine-tuning failed: {_last_line(reason)}")
            self.result_label.setText("No result.")
            self._discard_run()
            return
        self.last_report = report
        how = "Stopped early" if report.stopped else "Done"
        self.result_label.setText(report.describe())
        self.outcomes.set_outcomes(outcomes_of(report, self._run["corrected_labels"],
                                               self._run["class_names"]))
        if report.chosen_epoch == 0:
            self._say(f"{how}: no epoch beat the starting model on the corrected slices, so "
                      "it is kept (nothing to accept).")
        else:
            self.accept_button.setEnabled(True)
            out = Path(self._run["out"])
            self._say(f"{how} after {self._run['step']} steps. Check the result below; "
                      "Accept to make Segment use the fine-tuned model."
                      + (f" {out} exists: Accept will ask before replacing it."
                         if out.exists() else ""))

    def accept(self, replace_existing: bool | None = None) -> bool:
        """Save the fine-tuned checkpoint to the output path; Segment uses it from now on.

        An existing file there is replaced only when the user agrees: ``replace_existing``
        None asks (a question box), True/False answers for them. The corrections trained on
        are saved to the annotation store when its tick box says so.
        """
        report, out = self.last_report, self._run.get("out")
        if report is None or report.chosen_epoch == 0 or out is None:
            self._fail("Nothing to accept: run fine-tuning first")
            return False
        out = Path(out)
        if is_shipped(out):
            self._fail(f"{out.name} is a model shipped with the plugin and is never replaced: "
                       "choose another output path and Accept again")
            return False
        if out.exists() and not self._may_replace(out, replace_existing):
            self._say(f"Not saved: {out} exists and was kept. Choose another output path "
                      "(or agree to replace it) and Accept again.")
            return False
        try:
            saved = copy_atomically(report.checkpoint, out)
        except OSError as err:
            self._fail(f"Could not save the fine-tuned checkpoint to {out}: {err}")
            return False
        self.last_output = saved
        self.accept_button.setEnabled(False)
        stored = self._save_to_store() if self.store_box.save_check.isChecked() else ""
        self._discard_run()
        self.session.set_checkpoint(saved, origin="finetune")  # Segment and this input follow
        self._output_edited = False
        self._default_output()
        msg = f"Saved to {saved}; Segment now uses it — run Segment again to see the labels."
        self._say(msg + stored)
        show_info(msg)
        return True

    def _may_replace(self, path: Path, answer: bool | None) -> bool:
        """Whether the existing ``path`` may be replaced: ``answer``, else ask the user (the
        input checkpoint with 'overwrite the input checkpoint' ticked counts as agreed)."""
        if answer is not None:
            return answer
        if self.overwrite_check.isChecked() and path.resolve() == Path(
                self._run.get("input", "")).resolve():
            return True
        reply = QMessageBox.question(
            self, "Replace the existing file?",
            f"{path} already exists. Replace it with the fine-tuned model? (No keeps it; "
            "you can then choose another output path and Accept again.)",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No)
        return reply == QMessageBox.StandardButton.Yes

    def _save_to_store(self) -> str:
        """Save the scan and corrections trained on as a new store case; a line to show."""
        from scan_io.annotation_store import ScanGrid

        case = self._run.get("case")
        if not case:
            return ""
        nifti = case["nifti"]
        try:
            grid = (ScanGrid.from_layer_metadata(nifti) if nifti and np.ndim(case["image"]) == 3
                    else None)
            self.last_store_case = self.store_box.store.add(
                case["image"], case["labels"], case["corrected"], axis=case["axis"],
                class_names=case["class_names"], grid=grid,
                spacing=(1.0, *case["spacing"])[-3:],
                source=(nifti or {}).get("path"))
        except (OSError, ValueError) as err:
            return f"\nThe corrections were not saved to the annotation store: {err}"
        finally:
            self.store_box.refresh()
        return (f"\nCorrections saved to the annotation store as "
                f"{self.last_store_case.case_id}: the next fine-tune learns from them too.")

    def _discard_run(self) -> None:
        self._cleanup.remove_folder()
        self._run["dir"] = None

    def shutdown(self) -> None:
        """End a run still going and remove its folder (the widget or the viewer is closing)."""
        self.process = None
        self._cleanup.end()
        self._run["dir"] = None
        try:
            self.timer.stop()
            self._debounce.stop()
            self.ranking.shutdown()
        except RuntimeError:  # the Qt side is gone already (the viewer was closed)
            pass

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        self.shutdown()
        self._disconnect()
        super().closeEvent(event)

    def _disconnect(self) -> None:
        """Stop listening to the viewer and the session (the widget is going away)."""
        self.session.checkpoint_changed.disconnect(self._on_session_checkpoint)
        self.viewer.layers.events.inserted.disconnect(self._on_inserted)
        self.viewer.layers.events.removed.disconnect(self._on_removed)
        for hooks in self._paint_hooks.values():
            for emitter, callback in hooks:
                emitter.disconnect(callback)
        self._paint_hooks.clear()

    def refresh_changes(self, *_args) -> None:
        self.changes.refresh()

    @property
    def change_rows(self) -> list[dict[str, Any]]:
        return self.changes.rows


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else text


def _scan_spacing(layer) -> tuple[float, ...] | None:
    """Voxel size in mm in the layer's axis order, when the layer came from a scan file (a
    plain array's scale is not known to be millimetres)."""
    if "nifti" not in layer.metadata:
        return None
    return tuple(float(s) for s in layer.scale[-layer.ndim:])
