"""Model registry and the one builder, ``build_model(name, num_classes, **config)``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .config import BodyConfig, config_from_kwargs


@dataclass(frozen=True)
class ModelSpec:
    name: str
    config_cls: type[BodyConfig]
    builder: Callable[[int, Any], Any]  # (num_classes, config) -> Segmenter
    description: str


_MODELS: dict[str, ModelSpec] = {}


def register_model(name: str, config_cls: type[BodyConfig], description: str):
    """Decorator registering ``builder(num_classes, config) -> Segmenter`` under ``name``."""

    def decorator(builder):
        if name in _MODELS:
            raise ValueError(f"Model {name!r} is registered twice")
        _MODELS[name] = ModelSpec(name, config_cls, builder, description)
        return builder

    return decorator


def list_models() -> dict[str, str]:
    """Registered names and a one-line description of each."""
    _ensure_loaded()
    return {name: spec.description for name, spec in sorted(_MODELS.items())}


def get_spec(name: str) -> ModelSpec:
    _ensure_loaded()
    if name not in _MODELS:
        raise ValueError(f"Unknown model {name!r}. Available: {', '.join(sorted(_MODELS))}")
    return _MODELS[name]


def build_model(name: str, num_classes: int, **config: Any):
    """Build a registered system on the shared body.

    Without overrides each system gets its paper's default config (L2GNet: R50, K=512,
    dim=1024, q=4). An unknown name or config key fails with the accepted ones listed.
    """
    spec = get_spec(name)
    cfg = config_from_kwargs(spec.config_cls, name, config)
    return spec.builder(num_classes, cfg)


def _ensure_loaded() -> None:
    """Import the nets package so that every system has registered itself."""
    from . import nets  # noqa: F401
