"""The Fine-tune panel's run: the child process, its temporary folder, polling, Stop, Accept.

``RunController.start`` runs a ``training.finetuning.process.FinetuneJob`` in its own process
with a fresh temporary folder; a timer polls it and hands each batch of training events to
``events`` and the end to ``finished`` (the report, or None with ``last_error``). ``accept``
copies the fine-tuned checkpoint to the chosen path (atomically, never over a shipped model,
over an existing file only when ``may_replace`` agrees) and removes the folder. Whatever way
the panel goes, ``cleanup`` (a ``RunCleanup``) ends the child and removes the folder;
``save_case`` adds the run's scan and corrections to the annotation store. The panel does
the talking: this module says what happened, in exceptions and signals.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from qtpy.QtCore import QObject, QTimer, Signal

from ..models import is_shipped
from ._annotations import copy_atomically
from ._run_cleanup import RunCleanup

POLL_MS = 200


class NotAccepted(Exception):
    """Accept did not save; ``error`` False when the user chose so (a file kept)."""

    def __init__(self, message: str, error: bool = True) -> None:
        super().__init__(message)
        self.error = error


@dataclasses.dataclass
class RunInfo:
    """One run: where Accept saves, its folder, and what the result view and the store need."""

    out: Path
    folder: Path
    input: str  # the checkpoint it started from
    slices: int  # corrected slices of this scan
    class_names: list[str]
    notes: list[str]  # about the store's cases (left out, unusable)
    earlier: tuple[int, int]  # (scans, slices) from the annotation store
    corrected_labels: list[Any]  # per volume, the labels of its corrected slices
    case: dict[str, Any] | None = None  # this scan, for the annotation store on Accept
    step: int = 0
    total: int = 0


class RunController(QObject):
    """Start, poll, stop and accept one fine-tune at a time."""

    events = Signal(list)  # training.finetuning.process events since the last poll
    finished = Signal(object)  # the FinetuneReport, or None (``last_error`` says why)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.process = None  # training.finetuning.process.FinetuneProcess while a run is on
        self.info: RunInfo | None = None
        self.last_report = None  # training.finetuning.finetune.FinetuneReport of the last run
        self.last_error: str | None = None
        self.cleanup = RunCleanup()  # ends the child, removes its folder when the panel goes
        self.timer = QTimer(self)
        self.timer.setInterval(POLL_MS)
        self.timer.timeout.connect(self._poll)

    def is_running(self) -> bool:
        return self.process is not None

    @property
    def can_accept(self) -> bool:
        report = self.last_report  # its checkpoint lives in the folder until accepted
        return (report is not None and report.chosen_epoch != 0 and self.info is not None
                and self.cleanup.folder is not None)

    def start(self, job, out: Path, extras: dict[str, Any]) -> RunInfo:
        """Start ``job`` in its own process; ``RuntimeError`` when it cannot be started."""
        from training.finetuning.process import FinetuneProcess

        self.discard()
        self.last_error = self.last_report = None
        folder = tempfile.mkdtemp(prefix="l2gnet-finetune-")
        self.process = FinetuneProcess(job, folder)
        self.cleanup.track(self.process, folder)
        self.info = RunInfo(out=Path(out), folder=Path(folder), input=job.checkpoint,
                            slices=len(job.volumes[0].corrected), **extras)
        try:
            self.process.start()
        except Exception as err:  # noqa: BLE001 - e.g. the process cannot be started
            self.process = None
            self.cleanup.end()
            raise RuntimeError(f"Could not start fine-tuning: {err}") from err
        self.timer.start()
        return self.info

    def stop(self) -> str:
        """Ask the child to stop after its step ("stopping"); a second call kills it
        ("killed"); "" when nothing runs."""
        if self.process is None:
            return ""
        if self.process.stop_requested:
            self.process.kill()
            return "killed"
        self.process.stop()
        return "stopping"

    def _poll(self) -> None:
        proc = self.process
        if proc is None:
            self.timer.stop()
            return
        events = proc.poll()
        for event in events:
            self.info.total = event.total_steps
            if event.kind == "step":
                self.info.step = event.step
        if events:
            self.events.emit(events)
        if proc.finished:
            self._finish(proc)

    def _finish(self, proc) -> None:
        self.timer.stop()
        self.process = None
        self.cleanup.finished()
        self.last_report = proc.result
        if self.last_report is None:
            self.last_error = (proc.error or "unknown error").strip()
            self.discard()
        self.finished.emit(self.last_report)

    def accept(self, may_replace: Callable[[Path], bool]) -> Path:
        """Copy the fine-tuned checkpoint to the run's output path and drop the folder;
        ``NotAccepted`` says why not. ``may_replace(path)`` decides over an existing file."""
        if not self.can_accept:
            raise NotAccepted("Nothing to accept: run fine-tuning first")
        out = self.info.out
        if is_shipped(out):
            raise NotAccepted(f"{out.name} is a model shipped with the plugin and is never "
                              "replaced: choose another output path and Accept again")
        if out.exists() and not may_replace(out):
            raise NotAccepted(f"Not saved: {out} exists and was kept. Choose another output "
                              "path (or agree to replace it) and Accept again.", error=False)
        try:
            saved = copy_atomically(self.last_report.checkpoint, out)
        except OSError as err:
            raise NotAccepted(f"Could not save the fine-tuned checkpoint to {out}: {err}") \
                from err
        self.discard()  # accepted once
        return saved

    def save_case(self, store):
        """Add the last run's scan and corrections to the annotation ``store`` (a
        ``scan_io.annotation_store.AnnotationStore``); the ``StoredCase``, None when the run
        kept none. ``OSError``/``ValueError`` when the store refuses it."""
        from scan_io.annotation_store import ScanGrid

        case = self.info.case if self.info is not None else None
        if not case:
            return None
        nifti = case["nifti"]
        grid = (ScanGrid.from_layer_metadata(nifti) if nifti and np.ndim(case["image"]) == 3
                else None)
        return store.add(case["image"], case["labels"], case["corrected"], axis=case["axis"],
                         class_names=case["class_names"], grid=grid,
                         spacing=(1.0, *case["spacing"])[-3:], source=(nifti or {}).get("path"))

    def discard(self) -> None:
        """Remove the run's folder (its checkpoint cannot be accepted after this)."""
        self.cleanup.remove_folder()

    def shutdown(self) -> None:
        """End a run still going and remove its folder (the panel is going away)."""
        self.process = None
        self.cleanup.end()
        try:
            self.timer.stop()
        except RuntimeError:  # the Qt side is gone already (the viewer was closed)
            pass
