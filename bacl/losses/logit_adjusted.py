"""Logit-adjusted softmax cross-entropy; balanced softmax is ``tau = 1`` (docs/method.md
section 7; Ren et al., "Balanced Meta-Softmax", NeurIPS 2020; Menon et al., "Long-tail
learning via logit adjustment", ICLR 2021).

Softmax cross-entropy over ``C + 1`` classes (background last) on ``z_j + tau * log(pi_j)``
in training, plain ``z`` at test time (scores: the softmax with the background column
dropped, like ``softmax_ce``).

Background has no annotation count, so its prior is a parameter: the classifier sees
RoIs, and the RoI sampler makes about ``background_prior`` of them background (a
quarter positives at most in these detectors: 0.75). The prior over the ``C + 1``
labels is therefore

    pi_C = background_prior,   pi_j = (1 - background_prior) * n_j / sum_k n_k   (j < C)

with ``n`` the training instance counts (each at least 1, so a class with no annotation
gets a finite prior, that of a class with one).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .base import ClassificationLoss, LossArgumentError, check_class_counts, promote_half
from .registry import register_loss


@register_loss("logit_adjusted")
class LogitAdjustedLoss(ClassificationLoss):
    """Softmax CE on prior-shifted logits.

    Buffer ``log_prior (C+1,)`` float64: ``log(pi)``, fixed at construction.

    Args:
        num_classes: ``C``.
        instance_counts: ``(C,)`` training annotations of each class.
        tau: scale of the adjustment, ``>= 0`` (1 = balanced softmax, 0 = plain softmax CE).
        background_prior: ``pi_C``, in ``(0, 1)``.
    """

    use_sigmoid = False

    def __init__(
        self, *, num_classes: int, instance_counts: torch.Tensor, tau: float = 1.0, background_prior: float = 0.75
    ) -> None:
        super().__init__(num_classes=num_classes)
        counts = check_class_counts("LogitAdjustedLoss", "instance_counts", instance_counts, self.num_classes)
        if not tau >= 0:
            raise LossArgumentError(f"LogitAdjustedLoss: tau must be >= 0, got {tau}")
        if not 0.0 < background_prior < 1.0:
            raise LossArgumentError(f"LogitAdjustedLoss: background_prior must be in (0, 1), got {background_prior}")
        self.tau = float(tau)
        self.background_prior = float(background_prior)
        n = counts.clamp(min=1).to(torch.float64)
        log_prior = torch.cat([(n / n.sum()).log() + math.log1p(-self.background_prior),
                               n.new_tensor([math.log(self.background_prior)])])
        self.register_buffer("log_prior", log_prior)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Args: logits ``(N, C+1)``; labels ``(N,)`` int64 in ``[0, C]``, ``C`` = background.

        Returns ``{"loss_cls": mean CE of z + tau * log(pi)}``; ``N == 0`` gives a zero that
        keeps the graph.
        """
        self.check_inputs(logits, labels)
        logits = promote_half(logits)
        if logits.shape[0] == 0:
            return {"loss_cls": logits.sum() * 0.0}
        shift = (self.tau * self.log_prior).to(logits.dtype)
        return {"loss_cls": F.cross_entropy(logits + shift[None, :], labels)}
