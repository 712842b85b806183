"""Output safety for every ``l2gnet`` command that writes files (README, "Reliability").

Checked before any work starts, so that a mistake costs seconds, not a whole prediction:
an existing output is never replaced without ``--overwrite``; an output that is one of the
command's inputs is refused even with it; an output folder that cannot be written (read-only
file system, no permission, a file in the way) is found by writing a probe file there.
Errors while writing (disk full, file-size limit) are turned into one line by ``describe``.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path

_HINTS = {
    errno.EROFS: ("is on a read-only file system", "choose an --out on a writable disk"),
    errno.EACCES: ("is not writable (permission denied)",
                   "choose another --out or fix the folder's permissions"),
    errno.EPERM: ("is not writable (operation not permitted)",
                  "choose another --out or fix the folder's permissions"),
    errno.ENOSPC: ("could not be written: the disk is full", "free some space or choose "
                   "another --out"),
    errno.EDQUOT: ("could not be written: the disk quota is exhausted", "free some space or "
                   "choose another --out"),
    errno.ENOTDIR: ("is a file, so no output can be written inside it",
                    "choose another --out"),
    errno.EFBIG: ("could not be written: file too large for the disk or the file-size limit "
                  "(ulimit -f)", "free some space, raise the limit, or choose another --out"),
}


def describe(err: OSError) -> str:
    """One line for an operating-system error: what happened to which path, and the fix."""
    where = err.filename or "a file"
    if err.errno in _HINTS:
        problem, fix = _HINTS[err.errno]
        return f"{where} {problem}: {fix}; nothing was left half-written"
    return f"{where}: {err.strerror or err}"


_PATH_ARGS = {"checkpoint": "--checkpoint", "from_checkpoint": "--from", "out": "--out",
              "out_dir": "--out-dir", "data": "--data", "val": "--val", "inputs": "input"}


def check_symlink_loops(args: object) -> None:
    """Refuse, in one line, a path argument that is (or runs through) a symbolic link loop:
    resolving it would otherwise end in a ``RuntimeError`` traceback deep in pathlib."""
    for dest, flag in _PATH_ARGS.items():
        value = getattr(args, dest, None)
        for item in value if isinstance(value, list) else [value]:
            if not isinstance(item, str) or item.startswith("phantom:"):
                continue
            try:
                os.stat(item)
            except OSError as err:
                if err.errno == errno.ELOOP:
                    raise ValueError(f"{flag} {item} is a symbolic link loop (the link leads "
                                     "back to itself): point it at a real file or folder"
                                     ) from None


def _resolved(path: str | os.PathLike) -> Path:
    return Path(path).expanduser().resolve()


def probe_writable(folder: Path) -> None:
    """Raise ``OSError`` (with a filename) unless a file can be created in ``folder``.

    A folder that does not exist yet is checked at its nearest existing parent (it will be
    created there). The probe is a hidden temporary file, removed at once.
    """
    existing = Path(folder)
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "Not a directory", str(existing))
    try:
        fd, name = tempfile.mkstemp(prefix=".l2gnet-probe-", dir=existing)
    except OSError as err:
        raise OSError(err.errno, err.strerror, str(existing)) from None
    os.close(fd)
    os.unlink(name)


def check_outputs(targets: Sequence[str | os.PathLike], inputs: Iterable[str | os.PathLike],
                  *, overwrite: bool, can_skip: bool = False) -> None:
    """Refuse, before any work, outputs that would replace a file or cannot be written.

    ``inputs`` are every file the command reads (scans, checkpoint, data files); writing onto
    one is refused even with ``--overwrite``. ``can_skip``: the command offers
    ``--skip-existing`` (batch predict), and the refusal says so.
    """
    ins = {_resolved(p) for p in inputs}
    seen: set[Path] = set()
    for target in targets:
        path = Path(target)
        real = _resolved(path)
        if real in ins:
            raise ValueError(f"The output {path} is also an input (an output path equals its "
                             "input): choose another --out")
        if real in seen:
            raise ValueError(f"Two inputs would both be written to {path}: give inputs with "
                             "distinct file names, or run them separately")
        seen.add(real)
        if path.is_dir():
            raise ValueError(f"The output {path} is a folder; give a file name")
        if path.exists() and not overwrite:
            skip = (", or --skip-existing to keep it and segment only the scans without an "
                    "output") if can_skip else ""
            raise FileExistsError(f"{path} exists; pass --overwrite to replace it{skip}")
    for folder in sorted({Path(t).parent for t in targets}):
        try:
            probe_writable(folder)
        except OSError as err:
            raise OSError(err.errno, err.strerror, err.filename) from None
