"""Fine-tune widget: teach the current checkpoint the user's corrected slices, then Accept.

Image + corrected Labels layers -> the annotated slices (painted, or every non-empty slice)
-> a job (``_finetune_job``) run in its own process (``training.finetuning.process``) with a
live loss / Dice plot (epoch 0 is the starting model) -> a report: Dice on the corrected
slices before and after, how much the uncorrected slices changed, and per class on the
corrected slices (a painted class that was not learned in red, with what to do) -> Accept
(asking before replacing a file) makes the new checkpoint the session's, so Segment uses it,
and saves this scan's corrections to the local annotation store; the next run includes the
store's cases ("Include earlier corrections"). "Where to correct next" lists the slices the
model is least sure of; a click jumps there. Closing the panel (its dock) or the viewer ends
a running child and removes its temporary folder.

The panel composes: ``_paint_tracker.PaintTracker`` (which slices were painted on which
layer), ``_finetune_run.RunController`` (the child process, its folder, polling, Stop,
Accept, the store case), ``_finetune_result.ResultView`` (plot, result, outcome and change
tables); it builds the form (``_forms``, ``_tooltips``) and connects them. The Qt-free logic
lives in ``training.finetuning``, ``scan_io.annotation_store`` and
``training.inference.uncertainty``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import (
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QMessageBox,
    QProgressBar,
    QVBoxLayout,
    QWidget,
)

from training.finetuning.coverage import before_run_note
from training.finetuning.finetune import FinetuneSettings, change_scores

from .._layer_record import read_record
from .._session import is_segmentation, same_layer, session_for
from . import _tooltips
from ._annotations import (
    annotated_slices,
    copy_atomically,
    default_output_path,
    layer_axis,
    painted_slices,
    user_finetune_dir,
)
from ._finetune_job import JobForm, prepare, scan_spacing
from ._finetune_result import ResultView
from ._finetune_run import NotAccepted, RunController
from ._forms import (
    add_row,
    check_box,
    combo_box,
    hbox,
    line_edit,
    note_label,
    push_button,
    spin_box,
)
from ._layers import LayerCombo, is_labels, is_scan_image
from ._new_classes import NewClassesBox
from ._paint_tracker import PaintTracker
from ._panel_close import on_panel_closed
from ._scroll import make_scrollable
from ._section import Section
from ._slice_ranking import SliceRanking
from ._store_box import StoreBox

__all__ = ["FinetuneWidget", "change_scores", "copy_atomically", "default_output_path",
           "painted_slices", "user_finetune_dir"]

PAINTED = "slices I painted"
NON_EMPTY = "all non-empty slices"
tips = _tooltips.Finetune


class FinetuneWidget(QWidget):
    """Image + corrected labels -> fine-tuned checkpoint, shown before/after, then Accept.

    Composed of a ``PaintTracker`` (which slices were painted on which layer), a
    ``RunController`` (the child process, its folder, Stop, Accept) and a ``ResultView``
    (plot, result, per-class outcome and change tables); this class builds the form and
    connects them. Start, Stop, Accept and the status line stay at the bottom of the panel,
    outside its scroll area, so they are in view however short the dock is.
    """

    def __init__(self, napari_viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.session = session_for(napari_viewer)
        self._output_edited = False
        self._closed = False
        self.last_output: Path | None = None
        self.last_store_case = None  # scan_io.annotation_store.StoredCase saved by Accept
        self._names_cache: tuple[str, list[str]] | None = None
        self.runner = RunController(self)
        self.runner.events.connect(self._on_events)
        self.runner.finished.connect(self._on_finished)
        self.destroyed.connect(self.runner.cleanup)  # also when Qt deletes the panel
        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(500)
        self._debounce.timeout.connect(self._after_edit)
        self._build()
        self.paint = PaintTracker(self.viewer, on_paint=self._on_paint, on_data=self._on_data)
        self.viewer.layers.events.inserted.connect(self._on_inserted)
        self.session.checkpoint_changed.connect(self._on_session_checkpoint)
        on_panel_closed(self, self._close)
        self._default_output()
        self._on_labels_changed()

    # ================================================================ form
    def _build(self) -> None:
        self.new_classes = NewClassesBox()  # label values the model lacks: name them to add
        self.ranking = SliceRanking(self.viewer, self._rank_request, self._fail)
        self.ranking.setTitle("")
        self.store_box = StoreBox()
        self.store_box.setTitle("")
        self.view = ResultView(self.viewer, lambda: self.labels_combo.layer())
        # its parts, where scripts and tests look for them
        self.plot, self.result_label = self.view.plot, self.view.result_label
        self.outcomes, self.changes = self.view.outcomes, self.view.changes
        settings = self._settings_box()
        self.settings = Section(self._settings_title(), settings, expanded=False)
        layout = QVBoxLayout(self)
        layout.addWidget(self._data_box())
        layout.addWidget(self.new_classes)
        self.ranking_section = Section("Where to correct next", self.ranking, expanded=False,
                                       tip=tips.RANK)
        layout.addWidget(self.ranking_section)
        layout.addWidget(self.settings)
        layout.addWidget(Section("Earlier corrections (annotation store)", self.store_box,
                                 expanded=False, tip=tips.STORE_INCLUDE))
        layout.addWidget(self.view)
        layout.addStretch(1)
        self.scroll = make_scrollable(self, min_visible=140)
        self.layout().addWidget(self._run_bar())  # outside the scroll area: always in view

    def _data_box(self) -> QGroupBox:
        self.image_combo = LayerCombo(self.viewer, is_scan_image)
        self.labels_combo = LayerCombo(self.viewer, is_labels)
        self.slices_combo = combo_box([PAINTED, NON_EMPTY], tips.ANNOTATED,
                                      on=self.update_count)
        self.count_label = note_label()
        box = QGroupBox("Corrections")
        form = QFormLayout(box)
        add_row(form, "Image", self.image_combo, tips.IMAGE)
        add_row(form, "Corrected labels", self.labels_combo, tips.LABELS,
                on=self._on_labels_changed)
        add_row(form, "Annotated", hbox(self.slices_combo, push_button(
            "Forget painted", self.forget_painted, tips.FORGET)))
        form.addRow(self.count_label)
        return box

    def _settings_box(self) -> QWidget:
        d = FinetuneSettings()
        self.epochs_spin = spin_box(1, 10_000, d.epochs, tip=tips.epochs(d.samples_per_epoch))
        self.lr_spin = spin_box(1e-6, 1.0, d.lr, decimals=6, tip=tips.LR)
        self.batch_spin = spin_box(1, 256, d.batch_size, tip=tips.BATCH)
        self.keep_spin = spin_box(0.0, 10.0, d.keep_weight, decimals=2, tip=tips.KEEP)
        self.input_edit = line_edit(self.session.checkpoint or "",
                                    "checkpoint to start from (.safetensors)", tips.INPUT)
        self.input_edit.editingFinished.connect(self._default_output)
        self.input_edit.editingFinished.connect(self.update_count)
        self.output_edit = line_edit(placeholder="where Accept saves the fine-tuned checkpoint",
                                     tip=tips.OUTPUT)
        self.output_edit.textEdited.connect(self._mark_output_edited)
        self.overwrite_check = check_box("overwrite the input checkpoint", tip=tips.OVERWRITE)
        box = QWidget()
        form = QFormLayout(box)
        add_row(form, "Epochs", self.epochs_spin, on=self._retitle_settings)
        add_row(form, "Learning rate", self.lr_spin, on=self._retitle_settings)
        add_row(form, "Batch size", self.batch_spin)
        add_row(form, "Keep what it knows", self.keep_spin)
        add_row(form, "Input checkpoint", hbox(self.input_edit, push_button(
            "…", self._browse_input, tips.BROWSE_INPUT)), tips.INPUT)
        add_row(form, "Output checkpoint", hbox(self.output_edit, push_button(
            "…", self._browse_output, tips.BROWSE_OUTPUT)), tips.OUTPUT)
        add_row(form, "", self.overwrite_check)
        return box

    def _settings_title(self) -> str:
        return (f"Settings: {self.epochs_spin.value()} epochs, learning rate "
                f"{self.lr_spin.value():g}")

    def _retitle_settings(self, *_args) -> None:
        if hasattr(self, "settings"):
            self.settings.set_title(self._settings_title())

    def _run_bar(self) -> QWidget:
        """Start / Stop / Accept, the progress bar and the status line."""
        self.start_button = push_button("Start", self.start, tips.START)
        self.stop_button = push_button("Stop", self.stop, tips.STOP)
        self.stop_button.setEnabled(False)
        self.accept_button = push_button("Accept", lambda: self.accept(), tips.ACCEPT)
        self.accept_button.setEnabled(False)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setMaximumHeight(14)
        self.status = note_label()
        bar = QWidget()
        col = QVBoxLayout(bar)
        col.setContentsMargins(9, 4, 9, 6)
        col.setSpacing(3)
        col.addWidget(hbox(self.start_button, self.stop_button, self.accept_button,
                           stretch_first=False))
        col.addWidget(self.progress)
        col.addWidget(self.status)
        return bar

    @property
    def change_rows(self) -> list[dict[str, Any]]:
        return self.changes.rows

    def refresh_changes(self, *_args) -> None:
        self.changes.refresh()

    # the run's state
    @property
    def process(self):
        return self.runner.process

    @property
    def last_report(self):
        return self.runner.last_report

    @property
    def last_error(self) -> str | None:
        return self.runner.last_error

    def is_running(self) -> bool:
        return self.runner.is_running()

    # ================================================================ layers and slices
    def _on_inserted(self, event) -> None:
        layer = event.value
        if is_labels(layer) and is_segmentation(layer) and not self.is_running():
            self.labels_combo.setCurrentText(layer.name)  # follow Segment's new layer

    def _on_paint(self, layer) -> None:
        if same_layer(layer, self.labels_combo.layer()):
            self.update_count()
            self._debounce.start()

    def _on_data(self, layer) -> None:
        if same_layer(layer, self.labels_combo.layer()):
            self._debounce.start()

    def _after_edit(self) -> None:
        self.update_count()
        self.refresh_changes()

    def _on_labels_changed(self, *_args) -> None:
        layer = self.labels_combo.layer()
        source = read_record(layer).source_image
        if source and source in self.viewer.layers and is_scan_image(self.viewer.layers[source]):
            self.image_combo.setCurrentText(source)
        self.update_count()
        self.refresh_changes()

    def forget_painted(self) -> None:
        self.paint.forget(self.labels_combo.layer())
        self.update_count()
        self.refresh_changes()

    def annotated_slices(self, layer=None) -> list[int]:
        """The slice indices (along the layer's axis) that count as annotated now."""
        layer = layer if layer is not None else self.labels_combo.layer()
        if layer is None:
            return []
        return annotated_slices(layer.data, layer_axis(layer), self.paint.painted(layer),
                                read_record(layer).model_labels,
                                self.slices_combo.currentText() == NON_EMPTY)

    def _no_slices_message(self, layer) -> str:
        text = f"No annotated slices on '{layer.name}' yet: paint corrections on it"
        if self.slices_combo.currentText() == PAINTED:
            text += f", or choose '{NON_EMPTY}'"
        return text

    def update_count(self, *_args) -> None:
        if not hasattr(self, "paint"):
            return  # still being built
        layer = self.labels_combo.layer()
        slices = self.annotated_slices(layer)
        if layer is None:
            text = "No labels layer: run Segment, or add a Labels layer and paint"
        elif not slices:
            text = self._no_slices_message(layer)
        else:
            shown = ", ".join(str(i) for i in slices[:12]) + (" …" if len(slices) > 12 else "")
            text = f"{len(slices)} annotated slice{'s' * (len(slices) != 1)}: {shown}"
            labelled = annotated_slices(layer.data, layer_axis(layer), set(), non_empty=True)
            note = before_run_note(labelled, slices)
            text += f"\n{note}" if note else ""
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
        return np.asarray(image.data), src, axis, done, scan_spacing(image)

    def rank_slices(self) -> bool:
        """Segment with the input checkpoint in a thread; list the most uncertain slices."""
        return self.ranking.rank()

    # ================================================================ running
    def _fail(self, message: str) -> None:
        self.status.setStyleSheet("color: #e05d5d;")
        self.status.setText(message)
        show_error(message)

    def _say(self, message: str) -> None:
        self.status.setStyleSheet("")
        self.status.setText(message)

    def _job_form(self) -> JobForm:
        """The form as Start reads it (``_finetune_job.prepare`` checks and builds the job)."""

        def new_classes(labels, model_colors):
            self._refresh_new_classes(labels)
            return self.new_classes.request(model_colors)

        def store():
            self.store_box.refresh()
            return self.store_box.store if self.store_box.include else None

        settings = FinetuneSettings(epochs=self.epochs_spin.value(),
                                    lr=float(self.lr_spin.value()),
                                    batch_size=self.batch_spin.value(),
                                    keep_weight=float(self.keep_spin.value()))
        return JobForm(image=self.image_combo.layer(), labels=self.labels_combo.layer(),
                       checkpoint=self.input_edit.text(), output=self.output_edit.text(),
                       overwrite=self.overwrite_check.isChecked(), settings=settings,
                       annotated=self.annotated_slices, no_slices=self._no_slices_message,
                       new_classes=new_classes, store=store)

    def start(self) -> bool:
        """Start fine-tuning in its own process; False (with a message) if it cannot."""
        if self.is_running():
            self._fail("Fine-tuning is already running")
            return False
        try:
            job, out_path, extras = prepare(self._job_form())
        except (ValueError, OSError) as err:
            self._fail(str(err))
            return False
        self.accept_button.setEnabled(False)
        self.view.running()
        try:
            info = self.runner.start(job, out_path, extras)
        except RuntimeError as err:
            self._fail(str(err))
            return False
        self.progress.setRange(0, 0)  # busy until the first step arrives
        self.start_button.setEnabled(False)
        self.stop_button.setEnabled(True)
        self.stop_button.setText("Stop")
        scans, slices = info.earlier
        more = (f" and {slices} of {scans} earlier scan{'s' * (scans != 1)} from the store"
                if scans else "")
        self._say(f"Scoring the starting model, then fine-tuning on {info.slices} "
                  f"slices of this scan{more}…" + "".join(f"\n{note}" for note in info.notes))
        if out_path.exists():
            self._say(self.status.text() + f"\n{out_path} exists: Accept will ask before "
                      "replacing it.")
        return True

    def stop(self) -> None:
        """Stop after the current step (the best model so far is kept); a second press kills."""
        what = self.runner.stop()
        if what == "killed":
            self._say("Ending the training process…")
        elif what == "stopping":
            self.stop_button.setText("Force stop")
            self._say("Stopping after the current step…")

    def _on_events(self, events: list) -> None:
        info = self.runner.info
        if info.total:
            self.progress.setRange(0, max(info.total, 1))
            self.progress.setValue(info.step)
        said = self.view.add_events(events)
        if said:
            self._say(said)

    def _on_finished(self, report) -> None:
        self.start_button.setEnabled(True)
        self.stop_button.setEnabled(False)
        self.stop_button.setText("Stop")
        self.progress.setRange(0, 1)
        self.progress.setValue(1 if report is not None else 0)
        if report is None:
            self._fail(f"Fine-tuning failed: {_last_line(self.runner.last_error or '')}")
            self.view.show_failure()
            return
        info = self.runner.info
        how = "Stopped early" if report.stopped else "Done"
        self.view.show_report(report, info.corrected_labels, info.class_names)
        QTimer.singleShot(0, self._show_result)  # once the longer text is laid out
        if report.chosen_epoch == 0:
            self._say(f"{how}: no epoch beat the starting model on the corrected slices, so "
                      "it is kept (nothing to accept).")
        else:
            self.accept_button.setEnabled(True)
            self._say(f"{how} after {info.step} steps. Check the result above; "
                      "Accept to make Segment use the fine-tuned model."
                      + (f" {info.out} exists: Accept will ask before replacing it."
                         if info.out.exists() else ""))

    def _show_result(self) -> None:
        """Scroll the result's summary into view (the per-class table is just below it)."""
        try:
            self.scroll.widget().layout().activate()
            self.scroll.ensureWidgetVisible(self.result_label, 0, 8)
        except RuntimeError:  # the panel was closed meanwhile
            pass

    def accept(self, replace_existing: bool | None = None) -> bool:
        """Save the fine-tuned checkpoint to the output path; Segment uses it from now on.

        An existing file there is replaced only when the user agrees: ``replace_existing``
        None asks (a question box), True/False answers for them. The corrections trained on
        are saved to the annotation store when its tick box says so.
        """
        try:
            saved = self.runner.accept(lambda out: self._may_replace(out, replace_existing))
        except NotAccepted as why:
            (self._fail if why.error else self._say)(str(why))
            return False
        self.last_output = saved
        self.accept_button.setEnabled(False)
        stored = self._save_to_store() if self.store_box.save_check.isChecked() else ""
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
                self.runner.info.input).resolve():
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
        try:
            self.last_store_case = self.runner.save_case(self.store_box.store)
        except (OSError, ValueError) as err:
            return f"\nThe corrections were not saved to the annotation store: {err}"
        finally:
            self.store_box.refresh()
        if self.last_store_case is None:
            return ""
        return (f"\nCorrections saved to the annotation store as "
                f"{self.last_store_case.case_id}: the next fine-tune learns from them too.")

    # ================================================================ going away
    def shutdown(self) -> None:
        """End a run still going and remove its folder (the panel or the viewer is closing)."""
        self.runner.shutdown()
        try:
            self._debounce.stop()
            self.ranking.shutdown()
        except RuntimeError:  # the Qt side is gone already (the viewer was closed)
            pass

    def _close(self) -> None:
        """End the run and stop listening to the viewer and the session (once); called by
        ``on_panel_closed`` when the panel is closed or only its dock is (its x, or
        ``remove_dock_widget``, which takes the panel out without closing or deleting it)."""
        self.shutdown()
        if self._closed:
            return
        self._closed = True
        self.session.checkpoint_changed.disconnect(self._on_session_checkpoint)
        self.viewer.layers.events.inserted.disconnect(self._on_inserted)
        self.paint.close()


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else text

