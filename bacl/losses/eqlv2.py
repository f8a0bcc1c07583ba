"""EQLv2: equalization loss v2, gradient-guided reweighting (Tan et al., CVPR 2021;
docs/method.md section 7).

As tztztztztz/eqlv2's ``mmdet/models/losses/eqlv2.py``: sigmoid BCE over ``C + 1``
channels (background last) where each foreground channel ``j`` is reweighted from the
accumulated ratio ``g_j`` of its positive to its negative gradient magnitude:

    neg_w_j = sigmoid(gamma * (g_j - mu)),   pos_w_j = 1 + alpha * (1 - neg_w_j)
    w_ij = pos_w_j if y_i == j else neg_w_j           (background channel: 1, 1)
    loss = sum_ij w_ij * BCE(z_ij, onehot(y_i)_j) / N

After the loss, the weighted gradient magnitudes of this batch are added to the
statistics: ``pos_grad_j += sum_{i: y_i = j} pos_w_j * (1 - sigmoid(z_ij))`` and
``neg_grad_j += sum_{i: y_i != j} neg_w_j * sigmoid(z_ij)``, ``g = pos_grad / (neg_grad
+ 1e-10)``. Test-time scores as docs/method.md section 1.

Gradient statistics are computed from the logits in ``forward`` (the gradient of the
unscaled per-element BCE, ``|sigmoid(z) - t|``), as the official code does, not read from
``.grad`` in a backward hook; so they do not depend on an AMP loss scale (a skipped
AMP step still counts its batch, as in the official code) and need no hook on a
zero-row batch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..distributed import all_reduce_sum_, is_dist
from .base import ClassificationLoss, LossArgumentError, promote_half
from .registry import register_loss

# Added to the negative sum before dividing (official value).
_RATIO_EPS = 1e-10


@register_loss("eqlv2")
class EQLv2Loss(ClassificationLoss):
    """EQLv2 with statistics in buffers.

    Buffers ``pos_grad (C,)`` and ``neg_grad (C,)``, float64 (sums over a whole training
    run; the official code keeps the logits' float32): accumulated weighted gradient
    magnitudes of the foreground channels, never reset. While both are all zero
    (nothing collected yet) every weight is 1, as the official first iteration.

    Multi-process runs: each call's increments are summed over processes before being
    added (as the official ``all_reduce``), so every process holds the same statistics;
    every process must call ``forward`` once per step, also with no rows.

    Args:
        num_classes: ``C``.
        gamma: slope of the mapping function, ``> 0`` (official: 12).
        mu: centre of the mapping function, ``>= 0`` (official: 0.8).
        alpha: extra positive weight, ``>= 0`` (official: 4).
    """

    use_sigmoid = True

    def __init__(self, *, num_classes: int, gamma: float = 12.0, mu: float = 0.8, alpha: float = 4.0) -> None:
        super().__init__(num_classes=num_classes)
        if not gamma > 0:
            raise LossArgumentError(f"EQLv2: gamma must be > 0, got {gamma}")
        if not mu >= 0:
            raise LossArgumentError(f"EQLv2: mu must be >= 0, got {mu}")
        if not alpha >= 0:
            raise LossArgumentError(f"EQLv2: alpha must be >= 0, got {alpha}")
        self.gamma, self.mu, self.alpha = float(gamma), float(mu), float(alpha)
        self.register_buffer("pos_grad", torch.zeros(self.num_classes, dtype=torch.float64))
        self.register_buffer("neg_grad", torch.zeros(self.num_classes, dtype=torch.float64))

    @property
    def pos_neg_ratio(self) -> torch.Tensor:
        """``(C,)`` float64: ``g = pos_grad / (neg_grad + 1e-10)``."""
        return self.pos_grad / (self.neg_grad + _RATIO_EPS)

    def channel_weights(self, dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
        """``(pos_w, neg_w)``, each ``(C+1,)`` of ``dtype``; the background entry is 1 in both,
        and every entry is 1 while no statistics have been collected."""
        c = self.num_classes
        if not (bool(self.pos_grad.any()) or bool(self.neg_grad.any())):
            ones = torch.ones(c + 1, dtype=dtype, device=self.pos_grad.device)
            return ones, ones.clone()
        neg_w = torch.sigmoid(self.gamma * (self.pos_neg_ratio - self.mu))
        pos_w = 1.0 + self.alpha * (1.0 - neg_w)
        one = neg_w.new_ones(1)
        return torch.cat([pos_w, one]).to(dtype), torch.cat([neg_w, one]).to(dtype)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Args: logits ``(N, C+1)``; labels ``(N,)`` int64 in ``[0, C]``, ``C`` = background.

        Returns ``{"loss_cls": scalar}``; ``N == 0`` gives a zero that keeps the graph
        (and, with a process group, still joins the statistics' summation).
        """
        self.check_inputs(logits, labels)
        logits = promote_half(logits)
        n, c = logits.shape[0], self.num_classes
        if n == 0:
            self._collect(logits.new_zeros(c), logits.new_zeros(c))
            return {"loss_cls": logits.sum() * 0.0}
        pos_w, neg_w = self.channel_weights(logits.dtype)
        target = F.one_hot(labels, num_classes=c + 1).to(logits.dtype)
        weight = neg_w[None, :] + target * (pos_w - neg_w)[None, :]
        per_element = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        loss = (per_element * weight).sum() / n

        with torch.no_grad():
            # |d BCE / d z| = 1 - p on the target channel, p elsewhere
            magnitude = (torch.sigmoid(logits.detach()) - target).abs_().mul_(weight)
            pos_inc = (magnitude * target).sum(0)[:c]
            neg_inc = (magnitude * (1.0 - target)).sum(0)[:c]
        self._collect(pos_inc, neg_inc)
        return {"loss_cls": loss}

    @torch.no_grad()
    def _collect(self, pos_inc: torch.Tensor, neg_inc: torch.Tensor) -> None:
        """Add ``(C,)`` increments, summed over processes when a process group exists."""
        if not is_dist() and not (bool(pos_inc.any()) or bool(neg_inc.any())):
            return
        both = all_reduce_sum_(torch.cat([pos_inc, neg_inc]).to(self.pos_grad.dtype))
        self.pos_grad += both[: self.num_classes]
        self.neg_grad += both[self.num_classes :]
