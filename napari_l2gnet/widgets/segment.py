"""Segment widget: run ``training.inference`` on an Image layer without freezing the viewer.

The work runs in a napari generator ``thread_worker`` that yields after every batch: the
panel's progress bar moves, Cancel takes effect at the next batch, and the viewer stays
responsive. The model runs ``training.inference``'s batched ``SliceInferer``, the one that
``l2gnet predict`` runs. No ``napari.utils.progress`` is opened: its activity spinner repaints
the whole window about 17 times a second, and where OpenGL is software (remote desktops,
VMs, Xvfb) each repaint holds the GIL for ~50 ms, which made the panel 3.5-4x slower than
``l2gnet predict`` (``benchmarks/segment_panel_speed.py``).

The result is a Labels layer aligned with the image (same scale, translate, rotation and
NIfTI metadata), named after the image and the checkpoint, coloured by the checkpoint's
classes. Re-running replaces only a layer the plugin made and the user has not edited.

The model is chosen from the shipped checkpoints (``napari_l2gnet.models``, described by their
own model cards) or any file (Browse / a typed path); the choice is published on the session
so Fine-tune starts from it, and a fine-tuned model Fine-tune sets there is adopted. Before and
after segmenting, ``training.inference.fit_check`` compares the scan with what the model was
trained on
and the panel says so (without blocking) when they disagree, and lists classes with only a
handful of voxels as likely spurious rather than found.
"""

from __future__ import annotations

import dataclasses
import html
import time
from pathlib import Path

import numpy as np
from napari.qt.threading import thread_worker
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QProgressBar,
    QVBoxLayout,
    QWidget,
)

from training.inference.fit_check import summarize_result

from .._colormaps import label_colormap
from .._layer_record import SEGMENTATION, LayerRecord, mark_edited, read_record, write_record
from .._session import is_segmentation, session_for
from ..models import shipped_models
from . import _tooltips
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
from ._layers import LayerCombo, class_features, is_scan_or_cine
from ._panel_close import on_panel_closed
from ._scroll import make_scrollable
from ._section import Section

ORIGIN = "segment"
tips = _tooltips.Segment


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


class SegmentWidget(QWidget):
    """Image layer + checkpoint + device + slice axis + batch size -> a Labels layer."""

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.session = session_for(napari_viewer)
        self.worker = None
        self.last_layer = None
        self.last_device: str | None = None  # where the last run ran (cuda, cpu)
        self._started = 0.0  # perf_counter at the click, for the status sentence

        self.fit_issues: list = []
        self._build()
        self._update_device_warning()
        self._default_axis()
        self._show_checkpoint(self.checkpoint_edit.text().strip())
        on_panel_closed(self, self._close)

    def _close(self) -> None:
        """The dock was closed: a run still going is cancelled after its batch in flight (no
        layer is written by a panel the user closed), and the panel stops following the
        session (the image picker lets go of the viewer by itself). The edit marks on result
        layers stay: they protect the user's corrections whichever panel is open."""
        self.cancel()
        self.session.checkpoint_changed.disconnect(self._on_session_checkpoint)

    def _build(self) -> None:
        """The form: what to segment and with which model on top, the run options folded
        under it; below, outside the scroll area, Segment / Cancel, progress and the outcome."""
        self.image_combo = LayerCombo(self.viewer, is_scan_or_cine)
        self.model_combo = QComboBox()
        self.model_combo.setToolTip(tips.MODEL)
        # long model names must not widen the dock: the description below wraps instead
        self.model_combo.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.model_combo.setMinimumContentsLength(14)
        for summary in shipped_models():
            self.model_combo.addItem(summary.label, str(summary.path))
            self.model_combo.setItemData(self.model_combo.count() - 1, summary.details(),
                                         Qt.ItemDataRole.ToolTipRole)
        self.model_combo.activated.connect(self._on_model_chosen)
        self.checkpoint_edit = line_edit(self.session.checkpoint or "",
                                         "model .safetensors checkpoint", tips.CHECKPOINT,
                                         on=lambda: self.set_checkpoint(
                                             self.checkpoint_edit.text().strip()))
        self.model_info = note_label(selectable=True)
        self.fit_label = note_label(color="orange")
        self.device_combo = combo_box(["auto", "cuda", "cpu"], tips.DEVICE,
                                      on=self._update_device_warning)
        self.device_warning = note_label(color="orange")
        self.axis_spin = spin_box(0, 2, 0, tip=tips.AXIS, on=self.update_fit_check)
        self.batch_spin = spin_box(0, 512, 0, special="auto", tip=tips.BATCH)
        self.explain_check = check_box("keep transport plans and codes for Explain", True,
                                       tips.EXPLAIN)
        self.postprocess_check = check_box("keep the largest 3-D component",
                                           tip=tips.postprocess([]))
        self.run_button = push_button("Segment", self.run, tips.RUN)
        self.cancel_button = push_button("Cancel", self.cancel, tips.CANCEL)
        self.cancel_button.setEnabled(False)
        self.progress_bar = QProgressBar()
        self.progress_bar.setFormat("%v / %m slices")
        self.status = note_label()

        form = QFormLayout()
        add_row(form, "Image", self.image_combo, tips.IMAGE)
        add_row(form, "Model", hbox(self.model_combo, push_button("Browse…", self._browse,
                                                                  tips.BROWSE)), tips.MODEL)
        add_row(form, "Device", self.device_combo)
        options = QWidget()
        option_form = QFormLayout(options)
        option_form.setContentsMargins(0, 0, 0, 0)
        add_row(option_form, "Checkpoint", self.checkpoint_edit)
        add_row(option_form, "Slice axis", self.axis_spin)
        add_row(option_form, "Batch size", self.batch_spin)
        option_form.addRow(self.explain_check)
        self.options = Section("Options: checkpoint, slice axis, batch size", options,
                               expanded=False, tip=tips.OPTIONS)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        # full width, outside the form, so that wrapped lines are never cut off
        layout.addWidget(self.device_warning)
        layout.addWidget(self.model_info)
        layout.addWidget(self.fit_label)
        layout.addWidget(self.postprocess_check)
        layout.addWidget(self.options)
        layout.addStretch()
        # docked with the others on a 1000-px-high screen: the form scrolls, the run bar
        # (Segment, Cancel, progress, the outcome) stays in view below it
        self.scroll = make_scrollable(self, compact=True, min_visible=156)
        bar = QWidget()
        col = QVBoxLayout(bar)
        col.setContentsMargins(9, 4, 9, 6)
        col.setSpacing(3)
        col.addWidget(hbox(self.run_button, self.cancel_button, stretch_first=False))
        col.addWidget(self.progress_bar)
        col.addWidget(self.status)
        self.layout().addWidget(bar)
        self.image_combo.currentTextChanged.connect(self._default_axis)
        self.image_combo.currentTextChanged.connect(self.update_fit_check)
        self.session.checkpoint_changed.connect(self._on_session_checkpoint)

    # ------------------------------------------------------------------ form helpers
    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Checkpoint", "", "Checkpoints "
                                              "(*.safetensors)")
        if path:
            self.set_checkpoint(path)

    def _on_model_chosen(self, index: int) -> None:
        path = self.model_combo.itemData(index)
        if path:
            self.set_checkpoint(path)

    def set_checkpoint(self, path: str | Path) -> None:
        """Use ``path`` from now on and publish it on the session (Fine-tune follows)."""
        self._show_checkpoint(str(path))
        self.session.set_checkpoint(str(path), ORIGIN)

    def _on_session_checkpoint(self, path: str, origin: str = "") -> None:
        if origin == ORIGIN:
            return
        self._show_checkpoint(path)
        which = "fine-tuned, from Fine-tune" if origin == "finetune" else "from another panel"
        self.status.setText(f"Model set to {Path(path).name} ({which}).")

    def _show_checkpoint(self, path: str) -> None:
        """Put ``path`` in the path field and the chooser, describe it, re-run the fit check."""
        self.checkpoint_edit.setText(path)
        self._select_in_combo(path)
        self._update_model_info()
        self.update_fit_check()

    def _select_in_combo(self, path: str) -> None:
        if not path:
            return
        index = next((i for i in range(self.model_combo.count())
                      if _same_file(self.model_combo.itemData(i), path)), -1)
        if index < 0:
            self.model_combo.addItem(f"File: {Path(path).name}", path)
            index = self.model_combo.count() - 1
            self.model_combo.setItemData(index, path, Qt.ItemDataRole.ToolTipRole)
        self.model_combo.setCurrentIndex(index)

    def _metadata(self) -> dict | None:
        """The chosen checkpoint's metadata, or None when it cannot be read."""
        from src_model import CheckpointError
        from training.inference.model_handle import open_model

        path = self.checkpoint_edit.text().strip()
        try:
            return open_model(path).meta.to_dict() if path else None
        except CheckpointError:
            return None

    def _update_model_info(self) -> None:
        from src_model import CheckpointError
        from training.inference.model_handle import open_model
        from training.inference.shipped_models import summarize_checkpoint

        path = self.checkpoint_edit.text().strip()
        self._update_postprocess(None)
        if not path:
            self.model_info.setText("No checkpoint: choose a model or a .safetensors file.")
            return
        try:
            meta = open_model(path).meta.to_dict()  # cached: the header is read once per file
        except CheckpointError as err:
            self.model_info.setText(f"<span style='color: orange'>{html.escape(str(err))}</span>")
            self.model_info.setToolTip(str(err))
            return
        self._update_postprocess(meta)
        summary = summarize_checkpoint(path, meta)
        model = meta.get("model", {})
        lines = summary.details().split("\n")
        lines[0] = f"<b>{html.escape(lines[0])}</b> · {model.get('name')}, " \
                   f"{model.get('num_classes')} classes"
        self.model_info.setText("<br>".join([lines[0], *map(html.escape, lines[1:])]))
        tip = summary.details()
        if summary.training_command:
            tip += f"\nTraining command: {summary.training_command}"
        self.model_info.setToolTip(f"{tip}\nFile: {path}")

    def _update_postprocess(self, meta: dict | None) -> None:
        """Tick box on, naming the classes, where the model chose post-processing; else off."""
        chosen = list(((meta or {}).get("postprocessing") or {}).get("largest_component")
                      or [])
        self.postprocess_check.setEnabled(bool(chosen))
        self.postprocess_check.setChecked(bool(chosen))
        # short, so that the panel stays narrow; the whole sentence is the tooltip
        self.postprocess_check.setText(
            f"largest 3-D component only: {', '.join(chosen)}" if chosen
            else "largest 3-D component only (this model chose none)")
        self.postprocess_check.setToolTip(tips.postprocess(chosen))

    def update_fit_check(self, *_args) -> list:
        """Compare the chosen image with the chosen model; show disagreements in the panel."""
        from training.inference.fit_check import check_fit

        layer = self.image_combo.layer()
        meta = self._metadata()
        issues = []
        if layer is not None and meta is not None:
            data = np.asarray(layer.data[0] if layer.ndim == 4 else layer.data)
            axis = self.axis_spin.value() if data.ndim == 3 else 0
            issues = check_fit(data, meta, axis=axis, spacing=_spacing(layer))
        self.fit_issues = issues
        self.fit_label.setText("\n".join(f"⚠ {i.message}" for i in issues))
        self.fit_label.setVisible(bool(issues))
        return issues

    def _update_device_warning(self) -> None:
        choice = self.device_combo.currentText()
        if choice == "cuda" and not cuda_available():
            self.device_warning.setText("No CUDA GPU on this machine: choose auto or cpu.")
        elif choice == "cpu" or not cuda_available():
            self.device_warning.setText("Running on the CPU: expect seconds per slice batch, "
                                        "not milliseconds.")
        else:
            self.device_warning.setText("")

    def _default_axis(self, *_args) -> None:
        layer = self.image_combo.layer()
        if layer is None or layer.ndim not in (3, 4):
            return
        if layer.ndim == 4:  # a cine: each frame is sliced along its slice axis
            self.axis_spin.setValue(0)
            return
        not_displayed = [d - (self.viewer.dims.ndim - 3) for d in self.viewer.dims.not_displayed]
        axis = next((d for d in not_displayed if 0 <= d < 3), 0)
        self.axis_spin.setValue(axis)

    # ------------------------------------------------------------------ running
    def _load(self, path: str, device: str):
        """Checkpoint -> ``(model, metadata)`` through the shared, file-and-mtime-keyed handle."""
        from training.inference.model_handle import open_model

        handle = open_model(path)
        return handle.model(), handle.meta

    def run(self) -> None:
        """Start segmenting the chosen image (returns at once; the work runs in a thread)."""
        if self.worker is not None:
            show_warning("A segmentation is already running: cancel it first.")
            return
        layer = self.image_combo.layer()
        path = self.checkpoint_edit.text().strip()
        if layer is None:
            show_error("Choose an Image layer to segment (open a scan first).")
            return
        if not path or not Path(path).is_file():
            show_error(f"Checkpoint file {path!r} does not exist: choose a .safetensors file.")
            return
        if self.device_combo.currentText() == "cuda" and not cuda_available():
            show_error("device=cuda but no CUDA GPU is available: choose auto or cpu.")
            return
        issues = self.update_fit_check()
        if issues:  # said, not enforced: the user may know better
            show_warning(f"{Path(path).stem} on {layer.name}: "
                         + " ".join(i.message for i in issues))
        volume = np.asarray(layer.data)
        axis = self.axis_spin.value() if volume.ndim >= 3 else 0
        options = dict(
            axis=axis,
            batch_size=self.batch_spin.value() or "auto",
            device=self.device_combo.currentText(),
            # a cine's plans would be one set per frame: Explain reads 3-D results only
            explain=self.explain_check.isChecked() and volume.ndim != 4,
            postprocess=self.postprocess_check.isChecked(),
            spacing=_spacing(layer),  # the model's pixel size is used when it has one
        )
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.status.setText(f"Segmenting {layer.name}…")
        n_slices = volume.shape[axis] if volume.ndim == 3 else 1
        if volume.ndim == 4:  # every frame of a cine
            n_slices = volume.shape[0] * volume.shape[axis + 1]
        self.progress_bar.setRange(0, n_slices)
        self.progress_bar.setValue(0)
        worker = self._make_worker(volume, path, options)
        worker.yielded.connect(self._on_progress)
        worker.returned.connect(lambda result: self._on_done(layer, path, axis, result))
        worker.errored.connect(self._on_error)
        worker.aborted.connect(self._on_cancelled)
        worker.finished.connect(self._on_finished)
        self.worker = worker
        self._started = time.perf_counter()
        worker.start()

    def _make_worker(self, volume: np.ndarray, path: str, options: dict):
        widget = self

        @thread_worker
        def segment():
            from training.inference import iter_predict_volume

            model, meta = widget._load(path, options["device"])
            frames = volume if volume.ndim == 4 else volume[None]
            results, offset = [], 0
            for frame in frames:  # one frame for a scan; every frame of a cine
                gen = iter_predict_volume(frame, model, metadata=meta, **options)
                while True:
                    try:
                        done, total = next(gen)
                    except StopIteration as stop:
                        results.append(stop.value)
                        break
                    yield offset + done, total  # the worker stops here after quit()
                offset += total
            if volume.ndim != 4:
                return results[0]
            return dataclasses.replace(results[-1], explanation=None, probabilities=None,
                                       labels=np.stack([r.labels for r in results]))

        return segment()

    def cancel(self) -> None:
        """Stop after the batch in flight (napari's worker quits at the next yield)."""
        if self.worker is not None:
            self.status.setText("Cancelling after the current batch…")
            self.worker.quit()

    def _on_progress(self, value: tuple[int, int]) -> None:
        done, _total = value
        self.progress_bar.setValue(done)

    def _on_error(self, err: Exception) -> None:
        msg = str(err)
        if "out of memory" in msg.lower():
            msg += " — lower the batch size or choose device cpu."
        self.status.setText(f"Failed: {msg}")
        show_error(f"Segmentation failed: {msg}")

    def _on_cancelled(self) -> None:
        self.status.setText("Cancelled: no layer was changed.")
        show_info("Segmentation cancelled")

    def _on_finished(self) -> None:
        self.worker = None
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)

    def _on_done(self, image_layer, path: str, axis: int, result) -> None:
        meta = result.metadata
        names = list(meta.get("class_names") or [])
        num_classes = int(meta.get("model", {}).get("num_classes", len(names)))
        name = self._result_name(image_layer.name, path)
        summary = summarize_result(result.labels, names or [str(c) for c in range(num_classes)])
        record = LayerRecord(
            role=SEGMENTATION, source_image=image_layer.name, checkpoint=path, axis=axis,
            class_names=names, model_labels=result.labels.copy(),
            explanation=result.explanation, edited=False,
            found=[c.name for c in summary.found],
            spurious={c.name: c.voxels for c in summary.spurious})
        metadata: dict = {}
        write_record(metadata, record)
        for source in ("nifti", "dicom"):
            # kept as the image's (kind "image"), so the writer refuses to save over the scan
            # and, for a DICOM scan, writes a SEG that references its series
            if source in image_layer.metadata:
                metadata[source] = dict(image_layer.metadata[source])
        existing = self.viewer.layers[name] if name in self.viewer.layers else None
        if existing is not None and is_segmentation(existing) and not read_record(
                existing).edited:
            existing.data = result.labels
            existing.metadata = metadata
            layer = existing
        else:
            # A layer of that name that the user made or corrected is kept: napari gives the
            # new one a unique name.
            layer = self.viewer.add_labels(
                result.labels, name=name, scale=image_layer.scale,
                translate=image_layer.translate, rotate=image_layer.rotate,
                shear=image_layer.shear, affine=image_layer.affine, metadata=metadata,
                opacity=0.5,
            )
        layer.colormap = label_colormap(meta.get("class_colors"), num_classes)
        if names:
            layer.features = class_features(names)
        # any change the user makes protects the layer: a brush or fill (paint events) and a
        # whole new array from the console or another plugin (data events); our own
        # replacement above happens before these connections exist or before its metadata
        # (edited False) is put back
        layer.events.paint.connect(lambda _e, lyr=layer: mark_edited(lyr))
        layer.events.data.connect(lambda _e, lyr=layer: mark_edited(lyr))
        self.last_layer = layer
        self.last_device = str(result.device)
        slices = int(np.prod([result.labels.shape[i] for i in
                              ((0, axis + 1) if result.labels.ndim == 4 else (axis,))]))
        sentence = run_sentence(slices, self.last_device, time.perf_counter() - self._started,
                                result.batch_size)
        self.status.setText(f"{sentence} Layer: {layer.name}. {summary.describe()}")


    def _result_name(self, image_name: str, path: str) -> str:
        """``IMAGE [STEM]``; ``IMAGE [FOLDER/STEM]`` when a layer of the first name came from
        another file with the same name (``best.safetensors`` of two runs), so that one
        run's result never replaces the other's."""
        stem = Path(path).stem
        plain = f"{image_name} [{stem}]"
        if plain not in self.viewer.layers:
            return plain
        made_from = read_record(self.viewer.layers[plain]).checkpoint
        if made_from is None or _same_file(made_from, path):
            return plain
        return f"{image_name} [{Path(path).resolve().parent.name}/{stem}]"


def run_sentence(slices: int, device: str, seconds: float, batch_size: int | None = None
                 ) -> str:
    """One sentence for the panel's status and the demo's log, e.g. 'Segmented 40 slices on
    the CPU in 4.1 s.' ('... in 4.1 s, 4 slices a batch.' with ``batch_size``)."""
    where = {"cpu": "the CPU", "cuda": "the GPU"}.get(device.split(":")[0], device)
    batch = f", {batch_size} slice{'s' * (batch_size != 1)} a batch" if batch_size else ""
    return (f"Segmented {slices} slice{'s' if slices != 1 else ''} on {where} in "
            f"{seconds:.1f} s{batch}.")


def _same_file(a: str | None, b: str) -> bool:
    """Whether two spellings of a path (relative, absolute) name the same file."""
    if not a:
        return False
    try:
        return a == b or Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


def _spacing(layer) -> tuple[float, ...] | None:
    """Voxel size in mm in the layer's axis order, when the layer came from a scan file."""
    if "nifti" not in layer.metadata:
        return None  # a plain array: its scale is not known to be millimetres
    return tuple(float(s) for s in layer.scale[-min(layer.ndim, 3):])  # a cine: one frame's

