"""Segment widget: run ``training.inference`` on an Image layer without freezing the viewer.

The work runs in a napari generator ``thread_worker`` that yields after every batch: the
progress bar moves, Cancel takes effect at the next batch, and the viewer stays responsive.
The result is a Labels layer aligned with the image (same scale, translate, rotation and
NIfTI metadata), named after the image and the checkpoint, coloured by the checkpoint's
classes. Re-running replaces only a layer the plugin made and the user has not edited.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from napari.qt.threading import thread_worker
from napari.utils import progress as napari_progress
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from .._colormaps import label_colormap
from .._session import META_KEY, is_segmentation, session_for
from ._layers import LayerCombo, class_features, is_scan_image
from ._scroll import make_scrollable


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
        self._progress: napari_progress | None = None
        self._models: dict[tuple, tuple[Any, dict]] = {}
        self.last_layer = None

        self.image_combo = LayerCombo(napari_viewer, is_scan_image)
        self.checkpoint_edit = QLineEdit(self.session.checkpoint or "")
        self.checkpoint_edit.setPlaceholderText("model .safetensors checkpoint")
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        ckpt_row = QHBoxLayout()
        ckpt_row.addWidget(self.checkpoint_edit)
        ckpt_row.addWidget(browse)
        self.model_info = QLabel()
        self.model_info.setWordWrap(True)
        self.device_combo = QComboBox()
        self.device_combo.addItems(["auto", "cuda", "cpu"])
        self.device_warning = QLabel()
        self.device_warning.setStyleSheet("color: orange")
        self.device_warning.setWordWrap(True)
        self.axis_spin = QSpinBox()
        self.axis_spin.setRange(0, 2)
        self.axis_spin.setToolTip("Which array axis holds the slices (default: the axis the "
                                  "viewer is slicing)")
        self.batch_spin = QSpinBox()
        self.batch_spin.setRange(0, 512)
        self.batch_spin.setSpecialValueText("auto")
        self.batch_spin.setToolTip("auto: from free GPU memory (4 on CPU)")
        self.explain_check = QCheckBox("keep transport plans and codes for Explain")
        self.explain_check.setChecked(True)
        self.run_button = QPushButton("Segment")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress_bar = QProgressBar()
        self.progress_bar.setFormat("%v / %m slices")
        self.status = QLabel("")
        self.status.setWordWrap(True)

        form = QFormLayout()
        form.addRow("Image", self.image_combo)
        form.addRow("Checkpoint", ckpt_row)
        form.addRow("", self.model_info)
        form.addRow("Device", self.device_combo)
        form.addRow("", self.device_warning)
        form.addRow("Slice axis", self.axis_spin)
        form.addRow("Batch size", self.batch_spin)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.explain_check)
        layout.addLayout(buttons)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.status)
        layout.addStretch()
        make_scrollable(self)  # three docked panels fit a 1000-px-high screen

        self.run_button.clicked.connect(self.run)
        self.cancel_button.clicked.connect(self.cancel)
        self.device_combo.currentTextChanged.connect(self._update_device_warning)
        self.checkpoint_edit.editingFinished.connect(self._update_model_info)
        self.image_combo.currentTextChanged.connect(self._default_axis)
        self.session.checkpoint_changed.connect(self._on_session_checkpoint)
        self._update_device_warning()
        self._update_model_info()
        self._default_axis()

    # ------------------------------------------------------------------ form helpers
    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Checkpoint", "", "Checkpoints "
                                              "(*.safetensors)")
        if path:
            self.set_checkpoint(path)

    def set_checkpoint(self, path: str | Path) -> None:
        self.checkpoint_edit.setText(str(path))
        self._update_model_info()

    def _on_session_checkpoint(self, path: str) -> None:
        self.set_checkpoint(path)
        self.status.setText(f"Checkpoint set to {Path(path).name} (fine-tuned).")

    def _update_model_info(self) -> None:
        from src_model import CheckpointError, read_metadata

        path = self.checkpoint_edit.text().strip()
        if not path:
            self.model_info.setText("No checkpoint: choose a .safetensors file.")
            return
        try:
            meta = read_metadata(path)
        except CheckpointError as err:
            self.model_info.setText(f"<span style='color: orange'>{err}</span>")
            return
        model = meta.get("model", {})
        names = ", ".join(meta.get("class_names", [])[1:])
        norm = meta.get("normalization", {}).get("kind", "none")
        self.model_info.setText(
            f"{model.get('name')} · {model.get('num_classes')} classes ({names}) · input "
            f"{'x'.join(map(str, meta.get('input_size', [])))} · intensities: {norm}"
        )

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
        if layer is None or layer.ndim != 3:
            return
        not_displayed = [d - (self.viewer.dims.ndim - 3) for d in self.viewer.dims.not_displayed]
        axis = next((d for d in not_displayed if 0 <= d < 3), 0)
        self.axis_spin.setValue(axis)

    # ------------------------------------------------------------------ running
    def _load(self, path: str, device: str):
        """Checkpoint -> model, cached by path and modification time (no reload per run)."""
        from src_model import load_checkpoint

        key = (path, Path(path).stat().st_mtime_ns, device)
        if key not in self._models:
            self._models.clear()
            self._models[key] = load_checkpoint(path)
        return self._models[key]

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
        volume = np.asarray(layer.data)
        axis = self.axis_spin.value() if volume.ndim == 3 else 0
        options = dict(
            axis=axis,
            batch_size=self.batch_spin.value() or "auto",
            device=self.device_combo.currentText(),
            explain=self.explain_check.isChecked(),
        )
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.status.setText(f"Segmenting {layer.name}…")
        n_slices = volume.shape[axis] if volume.ndim == 3 else 1
        self.progress_bar.setRange(0, n_slices)
        self.progress_bar.setValue(0)
        self._progress = napari_progress(total=n_slices, desc=f"L2GNet: {layer.name}")
        worker = self._make_worker(volume, path, options)
        worker.yielded.connect(self._on_progress)
        worker.returned.connect(lambda result: self._on_done(layer, path, axis, result))
        worker.errored.connect(self._on_error)
        worker.aborted.connect(self._on_cancelled)
        worker.finished.connect(self._on_finished)
        self.worker = worker
        worker.start()

    def _make_worker(self, volume: np.ndarray, path: str, options: dict):
        widget = self

        @thread_worker
        def segment():
            from training.inference import iter_predict_volume

            model, meta = widget._load(path, options["device"])
            gen = iter_predict_volume(volume, model, metadata=meta, **options)
            while True:
                try:
                    done, total = next(gen)
                except StopIteration as stop:
                    return stop.value
                yield done, total  # the worker stops here when quit() was called

        return segment()

    def cancel(self) -> None:
        """Stop after the batch in flight (napari's worker quits at the next yield)."""
        if self.worker is not None:
            self.status.setText("Cancelling after the current batch…")
            self.worker.quit()

    def _on_progress(self, value: tuple[int, int]) -> None:
        done, total = value
        self.progress_bar.setValue(done)
        if self._progress is not None:
            self._progress.update(done - self._progress.n)

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
        if self._progress is not None:
            self._progress.close()
            self._progress = None

    def _on_done(self, image_layer, path: str, axis: int, result) -> None:
        meta = result.metadata
        names = list(meta.get("class_names") or [])
        num_classes = int(meta.get("model", {}).get("num_classes", len(names)))
        name = f"{image_layer.name} [{Path(path).stem}]"
        l2g = {
            "role": "segmentation",
            "source_image": image_layer.name,
            "checkpoint": path,
            "axis": axis,
            "class_names": names,
            "model_labels": result.labels.copy(),
            "explanation": result.explanation,
            "edited": False,
        }
        metadata = {META_KEY: l2g}
        if "nifti" in image_layer.metadata:
            # kept as the image's (kind "image"), so the writer refuses to save over the scan
            metadata["nifti"] = dict(image_layer.metadata["nifti"])
        existing = self.viewer.layers[name] if name in self.viewer.layers else None
        if existing is not None and is_segmentation(existing) and not existing.metadata[
                META_KEY].get("edited"):
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
        layer.events.paint.connect(lambda _e, lyr=layer: _mark_edited(lyr))
        self.last_layer = layer
        counts = np.bincount(result.labels.ravel(), minlength=num_classes)
        found = [f"{names[c] if c < len(names) else c}" for c in range(1, num_classes)
                 if counts[c]]
        self.status.setText(
            f"Done on {result.device} (batch {result.batch_size}): {layer.name}. "
            f"Found: {', '.join(found) or 'nothing'}."
        )


def _mark_edited(layer) -> None:
    layer.metadata.setdefault(META_KEY, {})["edited"] = True
