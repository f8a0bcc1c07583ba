"""Softmax cross-entropy over ``C + 1`` classes, background last: the plain Faster R-CNN
baseline of the seed's table (docs/method.md section 4)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import ClassificationLoss
from .registry import register_loss


@register_loss("softmax_ce")
class SoftmaxCrossEntropyLoss(ClassificationLoss):
    """Mean softmax cross-entropy; scores are the softmax with the background column dropped."""

    use_sigmoid = False

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Args: logits ``(N, C+1)``; labels ``(N,)`` int64 in ``[0, C]`` (``C`` = background).

        Returns ``{"loss_cls": scalar}`` (mean over rows); ``N == 0`` gives a zero
        connected to ``logits`` instead of the NaN of an empty mean.
        """
        self.check_inputs(logits, labels)
        if logits.shape[0] == 0:
            return {"loss_cls": logits.sum() * 0.0}
        return {"loss_cls": F.cross_entropy(logits, labels)}
