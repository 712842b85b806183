"""Run ``fit`` in a separate process, so that its GPU (and CPU) memory returns when it ends.

The napari plugin fine-tunes without blocking the viewer and without keeping CUDA memory for
the rest of the session (micro-sam's complaint): ``FitProcess(job).start()`` spawns a fresh
interpreter that imports only ``training`` and ``src_model``, runs ``fit`` on the job's slices
and sends every ``TrainEvent`` back on a queue. ``poll()`` drains the queue without blocking;
``stop()`` asks ``fit`` to stop between two steps (it then writes a valid last checkpoint);
``kill()`` is the last resort.

Nothing here imports torch in the parent process: a widget can import this module freely.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue as queue_module
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # these import torch: only for annotations
    from .data.cases import Case, Slice
    from .fit import FitResult, TrainConfig, TrainEvent

_GUI_MODULES = ("napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "vispy")


@dataclass
class FitJob:
    """A picklable description of one fine-tuning run.

    ``checkpoint`` is where training starts; ``slices`` are the (already normalised) training
    pairs, e.g. from ``training.data.slices_from_arrays``; ``val_cases`` are validated on each
    epoch (may be empty); ``metadata`` overrides entries of the checkpoint's metadata in the
    checkpoints written; ``threads`` caps torch's CPU threads in the child (None: all cores
    but one, so the viewer stays responsive).
    """

    checkpoint: str
    slices: list[Slice]
    config: TrainConfig
    val_cases: list[Case] = field(default_factory=list)
    metadata: dict[str, Any] | None = None
    threads: int | None = None

    def __post_init__(self) -> None:
        self.checkpoint = str(self.checkpoint)
        if not self.slices:
            raise ValueError("A fine-tuning job needs at least one annotated slice")


def slices_as_case(slices: list[Slice], name: str = "annotated slices") -> Case:
    """Stack same-shaped slices into one ``Case`` (to watch Dice on the slices trained on).

    Dice on the training slices measures fit, not generalisation; it is what a user who
    annotated a handful of slices can see change while fine-tuning.
    """
    from .data.cases import Case

    shapes = {s.image.shape for s in slices}
    if len(shapes) != 1:
        raise ValueError(f"Slices have different shapes {sorted(shapes)}; cannot stack them")
    image = np.stack([np.asarray(s.image, dtype=np.float32) for s in slices])
    label = np.stack([np.asarray(s.label) for s in slices])
    return Case(name, image, label)


def _child_threads(requested: int | None) -> int:
    if requested is not None:
        return max(1, int(requested))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 2) - 1)


def _run_job(job: FitJob, events: Any, stop_event: Any) -> None:
    """The child process: fit, forwarding events; always ends with a result or an error."""
    try:
        import torch

        torch.set_num_threads(_child_threads(job.threads))
        from .fit import fit

        def forward(event: TrainEvent) -> None:
            events.put(("event", event))

        result = fit(job.checkpoint, job.slices, job.val_cases, job.config,
                     metadata=job.metadata, callback=forward, should_stop=stop_event.is_set)
        gui = sorted(m for m in _GUI_MODULES if m in sys.modules)
        events.put(("result", (result, gui)))
    except (ValueError, OSError) as err:  # a user-fixable problem: its one-line message
        events.put(("error", f"{err}"))
    except BaseException:  # noqa: BLE001 - everything goes back to the parent as text
        events.put(("error", traceback.format_exc()))


class FitProcess:
    """``fit`` in a spawned process; see the module docstring.

    ``result`` is the child's ``FitResult`` once it has finished (None before, or if it
    failed); ``error`` says why it failed: the one-line message of a user-fixable error (bad
    labels, NaN voxels, an unusable output folder), the traceback text of anything else, or a
    line saying how it ended if it died without one (killed, crashed).
    """

    def __init__(self, job: FitJob) -> None:
        self.job = job
        self._ctx = mp.get_context("spawn")
        self._queue = self._ctx.Queue()
        self._stop = self._ctx.Event()
        self._process: Any = None
        self._pending: list[TrainEvent] = []
        self.result: FitResult | None = None
        self.error: str | None = None
        self.child_gui_modules: list[str] | None = None  # GUI modules the child had imported
        self._killed = False

    # ------------------------------------------------------------------ control
    def start(self) -> None:
        if self._process is not None:
            raise RuntimeError("This FitProcess was already started; make a new one")
        self._process = self._ctx.Process(
            target=_run_job, args=(self.job, self._queue, self._stop),
            name="l2gnet-fit", daemon=True,
        )
        self._process.start()

    def stop(self) -> None:
        """Ask the child to stop between steps; it writes a valid last checkpoint and ends."""
        self._stop.set()

    def kill(self) -> None:
        """Terminate the child at once (last resort: its last checkpoint may be older)."""
        if self._process is not None and self._process.is_alive():
            self._killed = True
            self._process.terminate()
            self._process.join(5)
            if self._process.is_alive():
                self._process.kill()
                self._process.join(5)
        self._drain()
        self._note_exit()

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    def is_alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

    @property
    def finished(self) -> bool:
        """The child has ended and everything it sent has been read."""
        if self._process is None or self._process.is_alive():
            return False
        self._drain()
        self._note_exit()
        return self.result is not None or self.error is not None

    # ------------------------------------------------------------------ messages
    def poll(self) -> list[TrainEvent]:
        """The events that arrived since the last call (never blocks)."""
        self._drain()
        if self._process is not None and not self._process.is_alive():
            self._note_exit()
        events, self._pending = self._pending, []
        return events

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the child to end (reading its messages meanwhile); True if it ended.

        Events read while waiting are kept for the next ``poll()``.
        """
        if self._process is None:
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            self._drain(block_s=0.05)
            if not self._process.is_alive():
                self._process.join()
                self._drain()
                self._note_exit()
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False

    def _drain(self, block_s: float = 0.0) -> None:
        while True:
            try:
                if block_s:
                    kind, payload = self._queue.get(timeout=block_s)
                    block_s = 0.0
                else:
                    kind, payload = self._queue.get_nowait()
            except queue_module.Empty:
                return
            except (EOFError, OSError):  # the queue's pipe closed under us
                return
            if kind == "event":
                self._pending.append(payload)
            elif kind == "result":
                self.result, self.child_gui_modules = payload
            elif kind == "error":
                self.error = payload

    def _note_exit(self) -> None:
        """A child that ended without a result or an error: say how it ended."""
        if self.result is not None or self.error is not None or self._process is None:
            return
        if self._process.is_alive():
            return
        # The child's last message can still be in the pipe just after it exits.
        self._drain(block_s=0.2)
        if self.result is not None or self.error is not None:
            return
        code = self._process.exitcode
        if self._killed:
            self.error = "Fine-tuning was killed before it finished"
        else:
            self.error = (f"The fine-tuning process ended without a result (exit code {code}); "
                          "it may have run out of memory")
