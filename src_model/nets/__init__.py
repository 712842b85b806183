"""One module per system; importing this package registers them all."""

from . import l2gnet, unet  # noqa: F401
