"""Tiny configs for tests and quick CPU runs: every registered model, small and fast."""

from __future__ import annotations

from typing import Any

_BODY = dict(encoder="resnet18", pre_channels=32, decoder_channels=(32, 16, 16, 8),
             decoder_head_channels=32)
_QUANT = dict(codebook_size=16, code_dim=32)
_TRANSFORMER = dict(num_layers=2, hidden_size=32, num_heads=4, mlp_dim=64, grid_size=4)

TINY_CONFIGS: dict[str, dict[str, Any]] = {
    "unet": dict(_BODY),
    "l2gnet": dict(_BODY, **_QUANT, num_refs=2, ref_size=4, num_anchors=8),
    "attn_unet": dict(_BODY),
    "transunet": dict(_BODY, **_TRANSFORMER),
    "r50_vit": dict(_BODY, **_TRANSFORMER),
    "vqunet": dict(_BODY, **_QUANT),
    "transvqunet": dict(_BODY, **_QUANT, **_TRANSFORMER),
    "synergynet": dict(_BODY, **_QUANT, hs=4, hh=2),
    "deeplabv3plus": dict(_BODY, aspp_channels=32, low_level_channels=8,
                          deeplab_decoder_channels=32),
}


def tiny_config(name: str) -> dict[str, Any]:
    """A small config for ``name`` (a copy; safe to modify)."""
    if name not in TINY_CONFIGS:
        raise KeyError(f"No tiny config for {name!r}; known: {sorted(TINY_CONFIGS)}")
    return dict(TINY_CONFIGS[name])
