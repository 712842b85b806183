"""Write a file so that its final path never holds a partial file.

Every writer of user-visible files (checkpoints, optimizer state, NIfTI labels, copied
checkpoints) writes to a temporary name beside the target and renames it into place; the
rename is atomic on one file system. The standard library has the pieces (``mkstemp``,
``os.replace``) but not the whole, so this small context manager holds them in one place.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_write_path(path: str | os.PathLike, *, suffix: str = ".tmp",
                      overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it to ``path``.

    ``suffix`` lets writers that pick a format from the name (nibabel) see the right one.
    With ``overwrite=False`` a file that appeared at ``path`` meanwhile is kept and
    ``FileExistsError`` is raised. On any error the temporary file is removed and ``path``
    is untouched. The file gets the usual ``0666 & ~umask`` mode (``mkstemp`` makes 0600).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())
        if not overwrite and path.exists():
            raise FileExistsError(
                f"{path} appeared while writing; not overwriting it. Pass overwrite=True."
            )
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
