"""Sigmoid binary cross-entropy over ``C + 1`` channels (docs/method.md section 1).

The stage-1 ("representation") classifier of BACL: every channel is an independent
binary problem against a one-hot target; background rows have target 1 on channel
``C``. The sum over rows and channels is divided by the number of rows ``N``, the
normalisation FCBL and EQLv2 use, so swapping this loss for those keeps the loss scale
(a plain ``mean`` would divide by ``N * (C + 1)`` and shrink the loss with ``C``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import ClassificationLoss
from .registry import register_loss


@register_loss("bce")
class SigmoidBCELoss(ClassificationLoss):
    """``sum_{i,j} BCE(z_ij, onehot(y_i)_j) / N``; scores ``sigmoid(z_j) * (1 - sigmoid(z_C))``."""

    use_sigmoid = True

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Args: logits ``(N, C+1)``; labels ``(N,)`` int64 in ``[0, C]`` (``C`` = background).

        Returns ``{"loss_cls": scalar}``; ``N == 0`` gives a zero connected to ``logits``.
        """
        self.check_inputs(logits, labels)
        num_rows = logits.shape[0]
        if num_rows == 0:
            return {"loss_cls": logits.sum() * 0.0}
        target = F.one_hot(labels, num_classes=self.num_classes + 1).to(logits.dtype)
        loss = F.binary_cross_entropy_with_logits(logits, target, reduction="sum") / num_rows
        return {"loss_cls": loss}
