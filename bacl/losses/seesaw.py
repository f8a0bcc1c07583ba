"""Seesaw loss (Wang et al., CVPR 2021; docs/method.md section 7).

As open-mmlab/mmdetection's ``mmdet/models/losses/seesaw_loss.py`` with the LVIS configs
of ``configs/seesaw_loss`` (``p=0.8, q=2.0``, classifier ``NormedLinear`` with
temperature 20). The classifier has ``C + 2`` outputs: ``C`` class logits, then two
objectness logits (foreground, background).

- Objectness: 2-way softmax cross-entropy on every RoI (target foreground / background).
- Classes, on foreground RoIs only: softmax cross-entropy over the ``C`` class logits
  where, for the ground truth ``i`` and every other class ``j``,
  ``z_j += log(M_ij) + log(C_ij)`` with the mitigation factor ``M_ij = (N_j / N_i)^p``
  when ``N_j < N_i`` (else 1), ``N`` the cumulative label counts (each at least 1), and
  the compensation factor ``C_ij = (s_j / max(s_i, eps))^q`` when that ratio exceeds 1
  (else 1), ``s`` the detached softmax of the class logits.

Both terms are summed over their rows and divided by the number of RoIs ``N`` (the
average factor mmdetection's box head passes). Test-time score of class ``j``:
``softmax(z[:C])_j * softmax(z[C:])_0``.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from ..distributed import all_reduce_sum_, is_dist
from .base import ClassificationLoss, LossArgumentError, promote_half
from .normed_linear import NormedLinear
from .registry import register_loss


@register_loss("seesaw")
class SeesawLoss(ClassificationLoss):
    """Seesaw loss with a separate objectness branch.

    Buffer ``cum_samples (C+1,)`` float64: labels seen so far (background last), never
    reset. As in mmdetection, the current batch is counted *before* the factors are
    computed. Multi-process runs: the counts are summed over processes before being
    added, so every process uses the global counts (mmdetection counts each process's
    own labels); every process must call ``forward`` once per step, also with no rows.

    Args:
        num_classes: ``C``.
        p: mitigation exponent, ``>= 0`` (0 switches it off; official 0.8).
        q: compensation exponent, ``>= 0`` (0 switches it off; official 2.0).
        eps: floor of the ground truth's score in the compensation ratio, ``> 0``
            (official 1e-2).
        normed_classifier: train with the normalised linear classifier (official LVIS
            configs); False keeps the predictor's plain linear layer.
        temperature: the normalised classifier's temperature, ``> 0`` (official 20).
    """

    use_sigmoid = False

    def __init__(
        self,
        *,
        num_classes: int,
        p: float = 0.8,
        q: float = 2.0,
        eps: float = 1e-2,
        normed_classifier: bool = True,
        temperature: float = 20.0,
    ) -> None:
        super().__init__(num_classes=num_classes)
        if not p >= 0:
            raise LossArgumentError(f"Seesaw: p must be >= 0, got {p}")
        if not q >= 0:
            raise LossArgumentError(f"Seesaw: q must be >= 0, got {q}")
        if not eps > 0:
            raise LossArgumentError(f"Seesaw: eps must be > 0, got {eps}")
        if not temperature > 0:
            raise LossArgumentError(f"Seesaw: temperature must be > 0, got {temperature}")
        self.p, self.q, self.eps = float(p), float(q), float(eps)
        self.normed_classifier = bool(normed_classifier)
        self.temperature = float(temperature)
        self.register_buffer("cum_samples", torch.zeros(self.num_classes + 1, dtype=torch.float64))

    @property
    def num_logits(self) -> int:
        return self.num_classes + 2

    def make_classifier(self, in_features: int) -> Optional[nn.Module]:
        if not self.normed_classifier:
            return None
        return NormedLinear(in_features, self.num_logits, temperature=self.temperature)

    def log_factors(self, class_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``log(M_ij * C_ij)`` of foreground rows: ``class_logits (P, C)``, ``labels (P,)`` in
        ``[0, C)`` -> ``(P, C)`` of the logits' dtype, 0 on the ground truth. Uses the
        current ``cum_samples``."""
        out = class_logits.new_zeros(class_logits.shape)
        if self.p > 0:
            counts = self.cum_samples[: self.num_classes].clamp(min=1.0)
            log_ratio = (counts[None, :] / counts[labels, None]).log_()  # log(N_j / N_i)
            out += (self.p * log_ratio.clamp_(max=0.0)).to(out.dtype)
        if self.q > 0:
            scores = torch.softmax(class_logits.detach(), dim=1)
            own = scores.gather(1, labels[:, None]).clamp(min=self.eps)
            out += self.q * (scores / own).log_().clamp_(min=0.0)
        return out.scatter_(1, labels[:, None], 0.0)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Args: logits ``(N, C+2)``; labels ``(N,)`` int64 in ``[0, C]``, ``C`` = background.

        Returns ``{"loss_cls_classes", "loss_cls_objectness"}``, each a scalar; ``N == 0``
        gives zeros that keep the graph.
        """
        self.check_inputs(logits, labels)
        logits = promote_half(logits)
        n, c = logits.shape[0], self.num_classes
        self._count(labels)
        if n == 0:
            zero = logits.sum() * 0.0
            return {"loss_cls_classes": zero, "loss_cls_objectness": zero.clone()}

        objectness_target = (labels == c).long()  # 0 foreground, 1 background
        loss_objectness = F.cross_entropy(logits[:, c:], objectness_target, reduction="sum") / n

        pos = (labels < c).nonzero().squeeze(1)
        class_logits = logits[pos, :c]
        pos_labels = labels[pos]
        adjusted = class_logits + self.log_factors(class_logits, pos_labels)
        loss_classes = F.cross_entropy(adjusted, pos_labels, reduction="sum") / n
        return {"loss_cls_classes": loss_classes, "loss_cls_objectness": loss_objectness}

    @torch.no_grad()
    def _count(self, labels: torch.Tensor) -> None:
        if labels.numel() == 0 and not is_dist():
            return
        counts = torch.bincount(labels, minlength=self.num_classes + 1).to(self.cum_samples.dtype)
        self.cum_samples += all_reduce_sum_(counts)

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        """``(N, C)``: ``softmax(z[:, :C]) * softmax(z[:, C:])[:, :1]``."""
        c = self.num_classes
        return torch.softmax(logits[:, :c], dim=1) * torch.softmax(logits[:, c:], dim=1)[:, :1]
