"""What a fine-tune leaves behind, removed whatever way the panel goes (no Qt).

A run is a child process and a temporary folder (``training.finetuning.process``). The panel
hands both to a ``RunCleanup``; when the panel is destroyed (its dock removed, or the viewer
closed: Qt deletes the window's children) or the interpreter exits, the cleanup stops the
child (a stop request, then terminate) and deletes the folder. It is a plain object
connected to the widget's ``destroyed`` signal, so it still runs when the widget's Qt side
is already gone.
"""

from __future__ import annotations

import atexit
import shutil
import weakref
from pathlib import Path

STOP_WAIT_S = 2.0  # how long a stopping child may take to finish its step before terminate

_LIVE: weakref.WeakSet = weakref.WeakSet()


class RunCleanup:
    """The current run's process (while it runs) and folder (until accepted or discarded)."""

    def __init__(self) -> None:
        self.process = None  # training.finetuning.process.FinetuneProcess
        self.folder: Path | None = None
        _LIVE.add(self)

    def track(self, process, folder: str | Path) -> None:
        self.process, self.folder = process, Path(folder)

    def finished(self) -> None:
        """The child has ended; its folder stays until ``remove_folder``."""
        self.process = None

    def remove_folder(self) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None

    def end(self, wait_s: float = STOP_WAIT_S) -> None:
        """Stop a running child (kill it if it does not stop in ``wait_s``), drop the folder."""
        proc, self.process = self.process, None
        if proc is not None and proc.is_alive():
            proc.stop()
            if not proc.join(wait_s):
                proc.kill()
                proc.join(wait_s)
        self.remove_folder()

    def __call__(self, *_args) -> None:  # a slot for QObject.destroyed
        self.end()


@atexit.register
def _end_all() -> None:
    for cleanup in list(_LIVE):
        cleanup.end()
