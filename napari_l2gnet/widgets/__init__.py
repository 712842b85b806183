"""The three dock widgets: Segment, Explain, Fine-tune (imported lazily by npe2).

Why this module settles torch's triton probe (docs/design.md, "Packages and the direction of
imports"): loading triton's LLVM after an OpenGL context exists crashes the process when the GL
driver is Mesa (it ships its own LLVM; seen under Xvfb and on Intel/AMD Linux desktops). Plain
``import torch`` does not load triton; ``import torchvision`` does, through
``torch._dynamo.utils``, which asks ``torch.utils._triton.has_triton_package()`` and, when that
says yes, imports triton (measured with ``python -X importtime``). The plugin never compiles, so
the widgets answer that one probe with "no" once, before any model code runs: triton is hidden
from ``sys.modules`` only for the duration of the probe, and the answer stays cached by torch
(``functools.cache``). Nothing else in the process is changed, so another plugin that imports
triton itself still can. Set ``L2GNET_ALLOW_TRITON=1`` to skip this (e.g. to use
``torch.compile`` in the viewer's process). Training runs in its own process
(``training.background``) and is not affected. Opening or saving a scan never gets here: the
reader, writer and sample import no torch at all.
"""

from __future__ import annotations

import os
import sys

ALLOW_ENV = "L2GNET_ALLOW_TRITON"


def settle_triton_probe() -> bool:
    """Make torch's cached "is triton installed?" answer False without loading triton.

    Returns True when the probe now says False (or was already settled that way), False when
    triton is already loaded or ``L2GNET_ALLOW_TRITON=1``; then nothing is changed.
    """
    if os.environ.get(ALLOW_ENV) == "1" or sys.modules.get("triton") is not None:
        return False
    hidden = "triton" not in sys.modules
    sys.modules["triton"] = None  # type: ignore[assignment]  # makes `import triton` fail
    try:
        from torch.utils import _triton

        return not _triton.has_triton_package()
    finally:
        if hidden and sys.modules.get("triton", 0) is None:
            del sys.modules["triton"]


settle_triton_probe()
