"""The three dock widgets: Segment, Explain, Fine-tune (imported lazily by npe2).

Loading triton's LLVM after an OpenGL context exists crashes the process when the GL driver
is Mesa (it ships its own LLVM; seen under Xvfb and on Intel/AMD Linux desktops). torch only
imports triton for ``torch.compile``, which the plugin does not use, so the widgets stop the
import in the viewer's process unless triton is already loaded or ``L2GNET_ALLOW_TRITON=1``.
Training runs in its own process (``training.background``) and is not affected.
"""

import os
import sys

if "triton" not in sys.modules and os.environ.get("L2GNET_ALLOW_TRITON") != "1":
    sys.modules["triton"] = None  # type: ignore[assignment]
