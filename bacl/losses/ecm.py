"""ECM: effective class-margin loss (Cho & Kraehenbuehl, ECCV 2022; docs/method.md section 7).

As janghyuncho/ECM-Loss's ``mmdet/models/losses/effective_class_margin_loss.py`` and
``mmdet/models/losses/ecm_utils.py`` with the config of
``configs/effective_class_margin_loss/r50_ecm_1x.py`` (``fg_bg_ratio=6.3313``, classifier
``NormedLinear`` with temperature 20). Sigmoid over ``C + 1`` channels (background
last). With ``n`` the training image counts and background's count
``n_C = fg_bg_ratio * sum_{j<C} n_j``, every channel ``j`` of every row has

    n_pos = n_j,   n_neg = sum_k n_k - n_j          (sums over all C + 1 entries)
    pos_w_j = log((n_pos^(1/4) + n_neg^(1/4)) / n_neg^(1/4))
    neg_w_j = log((n_pos^(1/4) + n_neg^(1/4)) / n_pos^(1/4))
    P(positive) = exp(z + pos_w) / (exp(z + pos_w) + exp(-z + neg_w)) = sigmoid(2 z + pos_w - neg_w)
    a_j = n_neg / n_pos,   w_j = a_j * log((1 + a_j) / a_j)
    loss = sum_ij w_j * BCE(2 z_ij + pos_w_j - neg_w_j, onehot(y_i)_j) / N

(the official code evaluates the two exponentials directly; the sigmoid form is the same
function without overflow). Test-time scores as docs/method.md section 1, on the raw ``z``.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from .base import ClassificationLoss, LossArgumentError, check_class_counts, promote_half
from .normed_linear import NormedLinear
from .registry import register_loss


@register_loss("ecm")
class ECMLoss(ClassificationLoss):
    """Effective class-margin loss.

    Buffers ``margin (C+1,)`` (``pos_w - neg_w``) and ``class_weight (C+1,)`` (``w``),
    float64, fixed at construction. Image counts are taken as at least 1: the official
    formulas give an infinite margin and a NaN weight for a class with no image.

    Args:
        num_classes: ``C``.
        image_counts: ``(C,)`` training images containing each class.
        fg_bg_ratio: background count over the summed foreground counts, ``> 0``
            (official 6.3313, measured on Mask R-CNN's sampled RoIs).
        normed_classifier: train with the normalised linear classifier (official
            config); False keeps the predictor's plain linear layer.
        temperature: the normalised classifier's temperature, ``> 0`` (official 20).
    """

    use_sigmoid = True

    def __init__(
        self,
        *,
        num_classes: int,
        image_counts: torch.Tensor,
        fg_bg_ratio: float = 6.3313,
        normed_classifier: bool = True,
        temperature: float = 20.0,
    ) -> None:
        super().__init__(num_classes=num_classes)
        counts = check_class_counts("ECM", "image_counts", image_counts, self.num_classes)
        if not fg_bg_ratio > 0:
            raise LossArgumentError(f"ECM: fg_bg_ratio must be > 0, got {fg_bg_ratio}")
        if not temperature > 0:
            raise LossArgumentError(f"ECM: temperature must be > 0, got {temperature}")
        self.fg_bg_ratio = float(fg_bg_ratio)
        self.normed_classifier = bool(normed_classifier)
        self.temperature = float(temperature)
        fg = counts.clamp(min=1).to(torch.float64)
        n_pos = torch.cat([fg, fg.sum()[None] * self.fg_bg_ratio])
        n_neg = n_pos.sum() - n_pos
        root_pos, root_neg = n_pos.pow(0.25), n_neg.pow(0.25)
        pos_w = ((root_pos + root_neg) / root_neg).log()
        neg_w = ((root_pos + root_neg) / root_pos).log()
        a = n_neg / n_pos
        self.register_buffer("margin", pos_w - neg_w)
        self.register_buffer("class_weight", a * ((1.0 + a) / a).log())

    def make_classifier(self, in_features: int) -> Optional[nn.Module]:
        if not self.normed_classifier:
            return None
        return NormedLinear(in_features, self.num_logits, temperature=self.temperature)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Args: logits ``(N, C+1)``; labels ``(N,)`` int64 in ``[0, C]``, ``C`` = background.

        Returns ``{"loss_cls": scalar}``; ``N == 0`` gives a zero that keeps the graph.
        """
        self.check_inputs(logits, labels)
        logits = promote_half(logits)
        n = logits.shape[0]
        if n == 0:
            return {"loss_cls": logits.sum() * 0.0}
        shifted = 2.0 * logits + self.margin.to(logits.dtype)[None, :]
        target = F.one_hot(labels, num_classes=self.num_classes + 1).to(logits.dtype)
        per_element = F.binary_cross_entropy_with_logits(shifted, target, reduction="none")
        loss = (per_element * self.class_weight.to(logits.dtype)[None, :]).sum() / n
        return {"loss_cls": loss}
