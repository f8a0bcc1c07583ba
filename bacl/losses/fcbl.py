"""FCBL: foreground classification balance loss (docs/method.md section 2).

Sigmoid BCE over ``C + 1`` channels where, on positive RoIs, each foreground logit
is shifted by a margin derived from a running foreground confusion matrix, and (in
the classifier stage) easy negative channels are dropped.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..distributed import all_reduce_sum_, is_dist
from .base import ClassificationLoss
from .onehot_bce import onehot_bce_sum
from .registry import register_loss

# Floor applied to confusion-matrix entries before taking the log-ratio (reference value).
_CM_FLOOR = 1e-3
# Logit given to channels the auto-adjusted weights drop (see forward).
_DROPPED_LOGIT = -1e4


@register_loss("fcbl")
class FCBL(ClassificationLoss):
    """Foreground classification balance loss.

    Statistics (buffers, never reset): ``cm_num (C, C)`` holds, per ground-truth
    class ``a``, the summed foreground-softmax probability given to each class ``b``
    on positive RoIs; ``num_gt (C,)`` counts those RoIs. Both are float64: they are
    sums over every positive RoI of a whole training stage (tens of millions for
    LVIS's frequent classes), where float32 stops counting exactly at 2**24 and drops
    small probabilities added to a large sum. (The reference keeps float32; the two
    agree until float32 starts losing increments.)

    Order within one call, as in the reference (``mmdet/models/losses/fcbl.py``):
    margins and weights use the statistics *before* this call; the statistics are
    updated with this batch's positive rows *after* the loss is computed.

    Multi-process runs: the increments are summed over processes before being added,
    so every process holds the same statistics; every process must therefore call
    ``forward`` once per step, also with no rows or no positives. Without a process
    group the summation is skipped. (The reference calls ``all_reduce``
    unconditionally, so it needs a process group, and only when its local batch has
    positives, which can leave processes waiting on each other.)

    ``N`` in the normalisation counts every row passed in: the caller appends the
    hallucinated rows (FHM) to the real RoIs before calling, and they update the
    statistics like real positives.

    ``reweight`` is a plain attribute, off at construction. The reference turns it on
    with ``ReweightHook(step=1)`` at the start of the first epoch of the classifier
    stage, so in practice it is on for the whole classifier stage; the training
    engine sets ``loss.reweight = True`` when that stage starts.

    Args:
        num_classes: ``C``, the number of foreground classes.
        alpha: margin scale, ``>= 0`` (published configs: 0.85).
        prob_thr: with ``reweight``, a negative channel whose probability reaches
            this keeps weight 1; ``0 < prob_thr <= 1`` (published configs: 0.7).
        reweight: start with the auto-adjusted weights on.
    """

    def __init__(
        self, *, num_classes: int, alpha: float = 0.85, prob_thr: float = 0.7, reweight: bool = False
    ) -> None:
        super().__init__(num_classes=num_classes)
        if not alpha >= 0:
            raise ValueError(f"FCBL: alpha must be >= 0, got {alpha}")
        if not 0 < prob_thr <= 1:
            raise ValueError(f"FCBL: prob_thr must be in (0, 1], got {prob_thr}")
        self.alpha = float(alpha)
        self.prob_thr = float(prob_thr)
        self.reweight = bool(reweight)
        c = self.num_classes
        self.register_buffer("cm_num", torch.zeros(c, c, dtype=torch.float64))
        self.register_buffer("num_gt", torch.zeros(c, dtype=torch.float64))

    @property
    def cm(self) -> torch.Tensor:
        """``(C, C)`` float64: ``cm[a, b]`` = mean foreground-softmax probability of ``b``
        on positive RoIs labelled ``a`` (a row of zeros for a class never seen)."""
        return self.cm_num / self.num_gt.clamp(min=1.0)[:, None]

    @property
    def class_accuracy(self) -> torch.Tensor:
        """``(C,)`` float64: the diagonal of :attr:`cm` (0 for classes never seen)."""
        return torch.diagonal(self.cm_num) / self.num_gt.clamp(min=1.0)

    def margins(self, labels: torch.Tensor, dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """Margins of positive RoIs with ``labels (P,)`` in ``[0, C)``: ``(P, C+1)`` of ``dtype``,
        ``m[y, j] = alpha * log(max(cm[y, j], 1e-3) / max(cm[j, y], 1e-3))`` on the
        foreground channels and 0 on the background channel.

        Computed once per distinct label, in float32 or wider, then gathered by label.
        """
        work = torch.promote_types(dtype, torch.float32)
        classes, inverse = torch.unique(labels, return_inverse=True)
        inv_count = (1.0 / self.num_gt.clamp(min=1.0)).to(work)
        rows = self.cm_num.index_select(0, classes).to(work).mul_(inv_count[classes, None])  # cm[y, j]
        cols = self.cm_num.index_select(1, classes).to(work).mul_(inv_count[:, None])  # cm[j, y], (C, U)
        ratio = rows.clamp_(min=_CM_FLOOR).div_(cols.clamp_(min=_CM_FLOOR).t())
        per_class = ratio.log_().mul_(self.alpha).to(dtype)
        return F.pad(per_class, (0, 1)).index_select(0, inverse)

    def kept_channels(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Auto-adjusted weights of positive rows as a mask: ``logits (P, C+1)`` (raw, detached),
        ``labels (P,)`` -> ``(P, C+1)`` bool.

        True on the background channel, on the ground truth and on any foreground
        channel whose probability ``sigmoid(z_j) * (1 - sigmoid(z_C))`` is at least the
        ground truth's or at least ``prob_thr``; the other channels have weight 0.
        """
        probs = torch.sigmoid(logits)
        probs[:, :-1] *= 1.0 - probs[:, -1:]
        probs[:, -1] = float("inf")  # background always kept
        # p_j >= p_y or p_j >= thr  <=>  p_j >= min(p_y, thr)
        bar = probs.gather(1, labels[:, None]).clamp_(max=self.prob_thr)
        keep = probs >= bar
        keep.scatter_(1, labels[:, None], True)  # the ground truth, even if its probability is NaN
        return keep

    def weights(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """:meth:`kept_channels` as 0/1 weights ``(P, C+1)`` of the logits' dtype."""
        return self.kept_channels(logits, labels).to(logits.dtype)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Args: logits ``(N, C+1)``; labels ``(N,)`` int64 in ``[0, C]``, ``C`` = background.

        Returns ``{"loss_cls": sum(w * BCE(z + m, onehot)) / N}``; ``N == 0`` gives a zero
        that keeps the graph and leaves the statistics alone.
        """
        self.check_inputs(logits, labels)
        if logits.dtype in (torch.float16, torch.bfloat16):  # AMP: margins and statistics in float32
            logits = logits.float()
        n, c = logits.shape[0], self.num_classes
        if n == 0:
            self._update(logits.new_zeros(0, c), labels)  # a collective when distributed
            return {"loss_cls": logits.sum() * 0.0}

        pos = (labels < c).nonzero().squeeze(1)
        pos_labels = labels.index_select(0, pos)
        pos_logits = logits.detach().index_select(0, pos)  # raw: no margin in weights or statistics

        rows = row_values = None
        if pos.numel() > 0:
            row_values = pos_logits + self.margins(pos_labels, dtype=pos_logits.dtype)
            if self.reweight:
                # A channel of weight 0 is always a negative (target 0). Setting its logit to
                # -1e4 makes its BCE and its gradient exactly 0 (exp underflows in every float
                # type), which equals weighting it by 0 without an (N, C+1) weight tensor.
                keep = self.kept_channels(pos_logits, pos_labels)
                row_values.masked_fill_(~keep, _DROPPED_LOGIT)
            rows = pos
        # The margins and drops are constants: the gradient to the logits is
        # sigmoid(z + m) - onehot on positive rows (0 on dropped channels).
        loss = onehot_bce_sum(logits, labels, rows=rows, row_values=row_values) / n

        self._update(pos_logits[:, :c], pos_labels)
        return {"loss_cls": loss}

    @torch.no_grad()
    def _update(self, fg_logits: torch.Tensor, labels: torch.Tensor) -> None:
        """Add positive rows ``fg_logits (P, C)`` (no margin) with ``labels (P,)`` to the
        statistics, summed over processes when a process group is initialised."""
        if labels.numel() == 0 and not is_dist():
            return
        c = self.num_classes
        # Counts first, so the sums below cover only the classes present in the global
        # batch: two small all_reduces instead of one (C, C).
        counts = all_reduce_sum_(torch.bincount(labels, minlength=c).to(self.num_gt.dtype))
        present = counts.nonzero().squeeze(1)
        if present.numel() == 0:
            return
        slot = torch.full((c,), -1, dtype=torch.long, device=labels.device)
        slot[present] = torch.arange(present.numel(), device=labels.device)
        probs = torch.softmax(fg_logits.to(torch.promote_types(fg_logits.dtype, torch.float32)), dim=1)
        sums = all_reduce_sum_(probs.new_zeros(present.numel(), c).index_add_(0, slot[labels], probs))
        self.cm_num.index_add_(0, present, sums.to(self.cm_num.dtype))
        self.num_gt += counts
