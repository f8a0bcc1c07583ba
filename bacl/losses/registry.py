"""Name -> classification loss class. Losses register themselves on import."""

from __future__ import annotations

from typing import Callable, TypeVar

from .base import ClassificationLoss

LOSSES: dict[str, type[ClassificationLoss]] = {}

T = TypeVar("T", bound=type[ClassificationLoss])


def register_loss(name: str) -> Callable[[T], T]:
    def wrap(cls: T) -> T:
        if name in LOSSES:
            raise KeyError(f"loss {name!r} is registered twice")
        LOSSES[name] = cls
        return cls

    return wrap


def build_loss(name: str, *, num_classes: int, **kwargs) -> ClassificationLoss:
    """Build a registered loss by name; unknown names list the known ones."""
    try:
        cls = LOSSES[name]
    except KeyError:
        raise KeyError(f"unknown loss {name!r}; known: {sorted(LOSSES)}") from None
    return cls(num_classes=num_classes, **kwargs)
