"""One module per system; importing this package registers them all."""

from . import (  # noqa: F401
    attn_unet,
    deeplabv3plus,
    l2gnet,
    r50_vit,
    synergynet,
    transunet,
    transvqunet,
    unet,
    vqunet,
)
