"""Freezing for BACL's classifier stage (docs/method.md section 4).

Frozen means nothing changes: no parameter gets a gradient or an update, and no
buffer moves. ``requires_grad=False`` covers the parameters; BatchNorm's running
statistics would still drift in training mode (and its output would use batch
statistics instead of the learnt ones), so frozen BatchNorm layers are put back into
eval mode after every ``model.train()`` (mmdetection's ``norm_eval``).
"""

from __future__ import annotations

from typing import Iterable, Sequence

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


def freeze_except(model: nn.Module, trainable: Iterable[str]) -> list[nn.Module]:
    """Set ``requires_grad=False`` on every parameter not named in ``trainable``.

    Returns the BatchNorm layers left without a trainable parameter (all of them when
    their weights are frozen; also those without affine weights), which
    :func:`train_mode` keeps in eval mode. Raises ``ValueError`` for a name in
    ``trainable`` that is not a parameter of ``model``.
    """
    keep = set(trainable)
    names = {name for name, _ in model.named_parameters()}
    unknown = sorted(keep - names)
    if unknown:
        raise ValueError(f"freeze_except: not parameters of the model: {unknown[:5]}")
    for name, param in model.named_parameters():
        param.requires_grad_(name in keep)
    return [m for m in model.modules()
            if isinstance(m, _BatchNorm) and not any(p.requires_grad for p in m.parameters())]


def train_mode(model: nn.Module, frozen_norms: Sequence[nn.Module] = ()) -> None:
    """``model.train()``, then eval mode for the frozen BatchNorm layers."""
    model.train()
    for module in frozen_norms:
        module.eval()
