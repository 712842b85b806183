"""Config dataclasses: the body every system shares, and helpers to build/validate them.

Names follow the papers' symbols where there is one (``codebook_size`` K, ``code_dim``,
``num_refs`` q, ``ref_size`` t, ``num_anchors`` k, ``sinkhorn_eps``, ``sinkhorn_iters``,
``pos_sigma``); each network's config documents its own fields.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Any, TypeVar

from .encoders import ENCODER_NAMES, OUTPUT_STRIDES

C = TypeVar("C", bound="BodyConfig")


@dataclass
class BodyConfig:
    """The shared body: encoder -> pre-bottleneck -> (bottleneck) -> post -> decoder -> head.

    Args:
        encoder: ResNet name (``resnet50`` as the papers; 18/34 for small and CPU configs).
        encoder_weights: ``None`` (random), a local torchvision state_dict path, or
            ``"imagenet"`` (torchvision's cache only; nothing downloads).
        in_channels: input channels (3: the grey slice repeated, as the papers).
        pre_channels: width of the pre/post-bottleneck conv blocks; ``None`` = the encoder's
            stride-16 width (1024 for R50).
        decoder_channels: decoder stage widths, deepest first (TransUNet CUP: 256,128,64,16).
        decoder_head_channels: the first decoder conv's width (TransUNet ``conv_more``: 512).
        encoder_output_stride: 16 (the papers: 14 x 14 tokens at 224 px) or 8 (layer 3
            dilated: 16 x 16 tokens at 128 px, at about 4x the bottleneck's compute).
            Checkpoints saved before this field existed mean 16.
    """

    encoder: str = "resnet50"
    encoder_weights: str | None = None
    in_channels: int = 3
    pre_channels: int | None = None
    decoder_channels: tuple[int, ...] = (256, 128, 64, 16)
    decoder_head_channels: int = 512
    encoder_output_stride: int = 16

    def __post_init__(self) -> None:
        self.decoder_channels = tuple(int(c) for c in self.decoder_channels)
        if self.encoder not in ENCODER_NAMES:
            raise ValueError(
                f"encoder={self.encoder!r} is not available; choose one of {ENCODER_NAMES}"
            )
        _positive(self, "in_channels", "decoder_head_channels")
        if self.encoder_output_stride not in OUTPUT_STRIDES:
            raise ValueError(f"encoder_output_stride must be one of {OUTPUT_STRIDES}, "
                             f"got {self.encoder_output_stride}")
        if self.pre_channels is not None:
            _positive(self, "pre_channels")
        if not self.decoder_channels or min(self.decoder_channels) < 1:
            raise ValueError(
                f"decoder_channels must be positive widths, got {self.decoder_channels}"
            )


def _positive(cfg: Any, *names: str) -> None:
    for name in names:
        value = getattr(cfg, name)
        if value <= 0:
            raise ValueError(f"{type(cfg).__name__}.{name} must be > 0, got {value}")


def config_from_kwargs(config_cls: type[C], model_name: str, kwargs: dict[str, Any]) -> C:
    """Build ``config_cls(**kwargs)``; an unknown key names the keys this model accepts."""
    accepted = [f.name for f in fields(config_cls)]
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise TypeError(
            f"Model {model_name!r} does not take config key(s) {unknown}. "
            f"Accepted keys: {', '.join(accepted)}"
        )
    return config_cls(**kwargs)


def config_to_dict(config: BodyConfig) -> dict[str, Any]:
    """JSON-ready dict (tuples become lists)."""
    items = dataclasses.asdict(config).items()
    return {k: list(v) if isinstance(v, tuple) else v for k, v in items}
