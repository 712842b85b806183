"""Model registry and the one builder, ``build_model(name, num_classes, **config)``."""

from __future__ import annotations

import operator
from collections.abc import Callable
from dataclasses import MISSING, dataclass, fields
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


class ModelConfigError(TypeError, ValueError):
    """A config key the model does not take, or a value of the wrong type (one line).

    A ``TypeError`` as before, and a ``ValueError`` so that the CLI reports it as a user error.
    """


def _kind_of(default: Any) -> tuple[tuple[type, ...], str] | None:
    if isinstance(default, bool):
        return (bool,), "true or false"
    if isinstance(default, int):
        return (int,), "a whole number"
    if isinstance(default, float):
        return (int, float), "a number"
    if isinstance(default, str):
        return (str,), "text"
    if isinstance(default, tuple):
        return (list, tuple), "a list"
    return None  # None defaults (optional fields): the config checks them itself


def _check_value_types(config_cls: type[BodyConfig], name: str, config: dict[str, Any]) -> None:
    for f in fields(config_cls):
        if f.name not in config or f.default is MISSING:
            continue
        kind = _kind_of(f.default)
        value = config[f.name]
        if kind is None:
            continue
        types, words = kind
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise ModelConfigError(
                f"Model {name!r} config {f.name}={value!r} must be {words} (default "
                f"{f.default!r})")


def build_model(name: str, num_classes: int, **config: Any):
    """Build a registered system on the shared body.

    Without overrides each system gets its paper's default config (L2GNet: R50, K=512,
    dim=1024, q=4). An unknown name or config key, or a value of the wrong type, fails with
    one line (``ModelConfigError`` lists the accepted keys).
    """
    spec = get_spec(name)
    try:
        num_classes = operator.index(num_classes)
    except TypeError:
        raise ValueError(f"num_classes must be a whole number, got {num_classes!r}") from None
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    _check_value_types(spec.config_cls, name, config)
    try:
        cfg = config_from_kwargs(spec.config_cls, name, config)
    except TypeError as err:
        if isinstance(err, ModelConfigError):
            raise
        raise ModelConfigError(str(err)) from None
    return spec.builder(num_classes, cfg)


def _ensure_loaded() -> None:
    """Import the nets package so that every system has registered itself."""
    from . import nets  # noqa: F401
