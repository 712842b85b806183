"""Run ``run_finetune`` in its own process, started from this module's own entry point.

``python -m training.finetuning.process RUN_DIR`` reads ``RUN_DIR/job.pkl`` (a
``FinetuneJob`` the parent wrote), fine-tunes, and prints one JSON line per event on stdout,
then the report (or the error). Because the child starts from this module and not through
``multiprocessing``'s spawn, which re-imports the parent's ``__main__``, a user script
without an ``if __name__ == "__main__":`` guard is never executed a second time. Stopping is
a file (``RUN_DIR/stop``) that the child checks between steps, so it leaves a valid model.

The parent side (``FinetuneProcess``) imports neither torch nor Qt: a widget polls it on a timer.
"""

from __future__ import annotations

import json
import os
import pickle
import queue
import subprocess
import sys
import threading
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .finetune import CorrectedVolume, FinetuneReport, FinetuneSettings

MARK = "l2gnet-finetune "  # our stdout lines start with this; anything else is passed over
JOB, STOP, LOG = "job.pkl", "stop", "stderr.log"


@dataclass
class FinetuneJob:
    """Everything the child needs: picklable, numpy arrays only."""

    checkpoint: str
    volumes: list[CorrectedVolume]
    settings: FinetuneSettings = field(default_factory=FinetuneSettings)
    metadata: dict[str, Any] | None = None
    threads: int | None = None  # None: all cores but one, so the viewer stays responsive
    class_names: list[str] | None = None  # the model's, then new classes to add
    class_colors: list[list[float]] | None = None  # every class's, when new ones are added
    taught_on: str | None = None  # where new classes were taught, for the card


@dataclass
class ProgressEvent:
    """A ``training.fitting.TrainEvent`` as the parent sees it (no torch needed to read it)."""

    kind: str
    epoch: int
    step: int
    total_steps: int
    loss: float | None = None
    val_dice: dict[str, float] | None = None
    seconds: float = 0.0


def _child_threads(requested: int | None) -> int:
    if requested is not None:
        return max(1, int(requested))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cores or 2) - 1)


def _send(kind: str, payload: Any) -> None:
    sys.stdout.write(MARK + json.dumps({"kind": kind, "payload": payload},
                                       default=_plain) + "\n")
    sys.stdout.flush()


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def main(run_dir: str) -> int:
    """The child: fine-tune the job in ``run_dir``, reporting on stdout."""
    try:
        import torch

        from .finetune import run_finetune

        folder = Path(run_dir)
        with open(folder / JOB, "rb") as f:
            job: FinetuneJob = pickle.load(f)  # noqa: S301 - our own file, written by the parent
        torch.set_num_threads(_child_threads(job.threads))
        stop = folder / STOP

        def forward(event) -> None:
            _send("event", {k: getattr(event, k) for k in
                            ("kind", "epoch", "step", "total_steps", "loss", "val_dice",
                             "seconds")})

        report = run_finetune(job.checkpoint, job.volumes, job.settings, folder / "out",
                              metadata=job.metadata, callback=forward,
                              should_stop=stop.exists, class_names=job.class_names,
                              class_colors=job.class_colors, taught_on=job.taught_on)
        _send("result", asdict(report))
        return 0
    except BaseException:  # noqa: BLE001 - everything goes back to the parent as text
        _send("error", traceback.format_exc())
        return 1


class FinetuneProcess:
    """The parent's handle: ``start()``, ``poll()`` events, ``stop()``, ``kill()``.

    ``result`` is the child's ``FinetuneReport`` once it has finished; ``error`` the child's
    traceback (or a line saying how it ended) if it failed.
    """

    def __init__(self, job: FinetuneJob, run_dir: str | Path) -> None:
        self.job = job
        self.run_dir = Path(run_dir)
        self._proc: subprocess.Popen | None = None
        self._queue: queue.Queue = queue.Queue()
        self._reader: threading.Thread | None = None
        self.result: FinetuneReport | None = None
        self.error: str | None = None
        self._killed = False

    def start(self) -> None:
        if self._proc is not None:
            raise RuntimeError("This FinetuneProcess was already started; make a new one")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.run_dir / JOB, "wb") as f:
            pickle.dump(self.job, f, protocol=pickle.HIGHEST_PROTOCOL)
        root = str(Path(__file__).resolve().parents[1])  # the folder holding `training`
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
        with open(self.run_dir / LOG, "wb") as log:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "training.finetuning.process", str(self.run_dir)],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, env=env,
                cwd=str(self.run_dir), text=True, bufsize=1,
            )
        self._reader = threading.Thread(target=self._read, name="l2gnet-finetune-reader",
                                        daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            if line.startswith(MARK):
                try:
                    self._queue.put(json.loads(line[len(MARK):]))
                except json.JSONDecodeError:
                    continue
        self._queue.put(None)  # end of output

    def stop(self) -> None:
        """Ask the child to stop between steps; it keeps the best model so far."""
        (self.run_dir / STOP).touch()

    @property
    def stop_requested(self) -> bool:
        return (self.run_dir / STOP).exists()

    def kill(self) -> None:
        """End the child at once (last resort)."""
        if self._proc is not None and self._proc.poll() is None:
            self._killed = True
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)

    def is_alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The child's process id once started (what a test or a log can look for)."""
        return self._proc.pid if self._proc is not None else None

    def poll(self) -> list[ProgressEvent]:
        """Events that arrived since the last call (never blocks)."""
        events = []
        while True:
            try:
                msg = self._queue.get_nowait()
            except queue.Empty:
                break
            if msg is None:
                self._note_exit()
            elif msg["kind"] == "event":
                events.append(ProgressEvent(**msg["payload"]))
            elif msg["kind"] == "result":
                self.result = FinetuneReport(**msg["payload"])
            elif msg["kind"] == "error":
                self.error = msg["payload"]
        return events

    @property
    def finished(self) -> bool:
        """The child has ended and everything it sent has been read."""
        return self.result is not None or self.error is not None

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the child to end; True if it did."""
        if self._proc is None:
            return True
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        if self._reader is not None:
            self._reader.join(timeout or None)
        return True

    def _note_exit(self) -> None:
        if self.result is not None or self.error is not None or self._proc is None:
            return
        code = self._proc.wait()
        if self._killed:
            self.error = "Fine-tuning was killed before it finished"
            return
        tail = (self.run_dir / LOG).read_text(errors="replace").strip().splitlines()[-3:]
        self.error = (f"The fine-tuning process ended without a result (exit code {code})"
                      + (": " + " | ".join(tail) if tail else "; it may have run out of memory"))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
