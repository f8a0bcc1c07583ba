"""Name -> classification loss class. Losses register themselves on import."""

from __future__ import annotations

import inspect
from typing import Any, Callable, Mapping, Optional, TypeVar

import torch

from .base import STATISTICS_ARGUMENTS, ClassificationLoss, LossArgumentError

LOSSES: dict[str, type[ClassificationLoss]] = {}

T = TypeVar("T", bound=type[ClassificationLoss])


def register_loss(name: str) -> Callable[[T], T]:
    def wrap(cls: T) -> T:
        if name in LOSSES:
            raise KeyError(f"loss {name!r} is registered twice")
        LOSSES[name] = cls
        return cls

    return wrap


def _lookup(name: str) -> type[ClassificationLoss]:
    try:
        return LOSSES[name]
    except KeyError:
        raise KeyError(f"unknown loss {name!r}; known: {sorted(LOSSES)}") from None


def statistics_arguments(name: str) -> tuple[str, ...]:
    """The dataset statistics (names from :data:`~bacl.losses.base.STATISTICS_ARGUMENTS`)
    that loss ``name`` takes in its constructor, in that order."""
    parameters = inspect.signature(_lookup(name).__init__).parameters
    return tuple(key for key in STATISTICS_ARGUMENTS if key in parameters)


def build_loss(
    name: str, *, num_classes: int, statistics: Optional[Mapping[str, Any]] = None, **kwargs
) -> ClassificationLoss:
    """Build a registered loss by name; unknown names list the known ones.

    ``statistics`` may hold any of ``image_counts``, ``instance_counts`` and
    ``num_images`` of the training split; only those the loss's constructor takes are
    passed on, so one mapping serves every loss.
    """
    cls = _lookup(name)
    statistics = dict(statistics or {})
    unknown = sorted(set(statistics) - set(STATISTICS_ARGUMENTS))
    if unknown:
        raise KeyError(f"build_loss: unknown statistics {unknown}; known: {list(STATISTICS_ARGUMENTS)}")
    parameters = inspect.signature(cls.__init__).parameters
    for key in statistics_arguments(name):
        if key in statistics and key not in kwargs:
            kwargs[key] = statistics[key]
    missing = [
        key for key in statistics_arguments(name)
        if key not in kwargs and parameters[key].default is inspect.Parameter.empty
    ]
    if missing:
        raise LossArgumentError(f"loss {name!r} needs {missing} of the training split; pass them in statistics")
    return cls(num_classes=num_classes, **kwargs)


def placeholder_statistics(num_classes: int) -> dict[str, Any]:
    """Statistics of ones, for rebuilding a loss whose buffers are then loaded from a
    checkpoint (every loss keeps what it derives from the statistics in buffers, and its
    logit layout does not depend on them): ``image_counts`` and ``instance_counts`` ``(C,)``
    ones, ``num_images`` 1."""
    ones = torch.ones(int(num_classes), dtype=torch.int64)
    return {"image_counts": ones, "instance_counts": ones.clone(), "num_images": 1}
