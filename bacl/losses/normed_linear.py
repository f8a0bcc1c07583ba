"""A cosine classifier: the normalised linear layer Seesaw and ECM train with.

``z = temperature * <x / |x|, w_k / |w_k|> + b_k``, as mmdetection's ``NormedLinear``
(``mmdet/models/layers/normed_predictor.py``, used by ``configs/seesaw_loss`` and by
janghyuncho/ECM-Loss's ``configs/effective_class_margin_loss``): weights normal(std
0.01), bias 0, temperature 20, ``eps`` 1e-6 added to each norm. An ``nn.Linear``
subclass, so ``in_features`` / ``out_features`` and the parameter names match the
plain layer (feature hallucination sends embeddings through it like any classifier).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import LossArgumentError


class NormedLinear(nn.Linear):
    """``(M, in_features) -> (M, out_features)`` cosine similarity times ``temperature``, plus bias.

    Args:
        in_features, out_features: as ``nn.Linear``.
        temperature: scale of the cosine, ``> 0`` (mmdetection's configs: 20).
        eps: added to the norms of inputs and weight rows, ``>= 0``.
    """

    def __init__(self, in_features: int, out_features: int, *, temperature: float = 20.0, eps: float = 1e-6) -> None:
        if not temperature > 0:
            raise LossArgumentError(f"NormedLinear: temperature must be > 0, got {temperature}")
        if not eps >= 0:
            raise LossArgumentError(f"NormedLinear: eps must be >= 0, got {eps}")
        super().__init__(in_features, out_features, bias=True)
        self.temperature = float(temperature)
        self.eps = float(eps)
        nn.init.normal_(self.weight, std=0.01)
        nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight / (self.weight.norm(dim=1, keepdim=True) + self.eps)
        x = x / (x.norm(dim=1, keepdim=True) + self.eps) * self.temperature
        return F.linear(x, weight, self.bias)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, temperature={self.temperature}"
