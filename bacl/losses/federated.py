"""Federated loss (Zhou et al., "Probabilistic two-stage detection", 2021; docs/method.md
section 7), as facebookresearch/detectron2's ``detectron2/modeling/roi_heads/fast_rcnn.py``
(``use_sigmoid_ce`` with ``use_fed_loss``; weights from
``detectron2/data/detection_utils.py: get_fed_loss_cls_weights``).

Sigmoid BCE over the ``C`` foreground channels only: the background logit (column
``C``) is part of the layout but gets no loss, and a background RoI has all-zero
targets. Each call keeps the channels of a class subset and drops the rest:

- the distinct labels of the batch (background included, as detectron2 counts it);
- if fewer than ``num_classes_kept`` (50), more classes drawn without replacement
  with probability proportional to ``image_counts ** freq_weight_power`` (0.5), never
  a class already present, never background, never a class with no training image;

    loss = sum_{i, j in subset} BCE(z_ij, [y_i == j]) / N

Test-time score of class ``j``: ``sigmoid(z_j)`` (the background logit is unused).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..seeded_generator import SeededGenerator
from .base import ClassificationLoss, LossArgumentError, check_class_counts, promote_half
from .registry import register_loss


@register_loss("federated")
class FederatedLoss(SeededGenerator, ClassificationLoss):
    """Sigmoid BCE over a sampled class subset.

    Buffer ``class_weight (C,)`` float64: ``image_counts ** freq_weight_power``, the
    sampling weights. The draws come from the module's own CPU generator, whose state is
    saved in the ``state_dict`` (``_extra_state``) so a resumed run draws the same
    classes; build each process with a different ``seed`` (e.g. ``seed + rank``) if the
    processes should draw differently, as detectron2's processes do.

    Args:
        num_classes: ``C``.
        image_counts: ``(C,)`` training images containing each class.
        freq_weight_power: exponent of the image counts, ``>= 0`` (detectron2: 0.5).
        num_classes_kept: size the subset is filled up to, ``>= 1`` (detectron2: 50).
        seed: seed of the generator.
    """

    use_sigmoid = True

    def __init__(
        self,
        *,
        num_classes: int,
        image_counts: torch.Tensor,
        freq_weight_power: float = 0.5,
        num_classes_kept: int = 50,
        seed: int = 0,
    ) -> None:
        super().__init__(num_classes=num_classes)
        counts = check_class_counts("FederatedLoss", "image_counts", image_counts, self.num_classes)
        if not freq_weight_power >= 0:
            raise LossArgumentError(f"FederatedLoss: freq_weight_power must be >= 0, got {freq_weight_power}")
        if int(num_classes_kept) < 1:
            raise LossArgumentError(f"FederatedLoss: num_classes_kept must be >= 1, got {num_classes_kept}")
        self.freq_weight_power = float(freq_weight_power)
        self.num_classes_kept = int(num_classes_kept)
        weight = counts.to(torch.float64) ** self.freq_weight_power
        weight[counts == 0] = 0.0  # 0 ** 0 is 1: a class never seen is never drawn
        self.register_buffer("class_weight", weight)
        self.init_generator(seed)

    def sample_classes(self, labels: torch.Tensor) -> torch.Tensor:
        """The kept classes for ``labels (N,)`` in ``[0, C]``: the sorted distinct labels,
        then the drawn negatives; int64 on the labels' device. May include ``C``
        (background), which has no channel in the loss."""
        present = torch.unique(labels)
        missing = self.num_classes_kept - present.numel()
        if missing <= 0:
            return present
        prob = self.class_weight.detach().to("cpu").clone()
        prob[present[present < self.num_classes].cpu()] = 0.0
        available = int((prob > 0).sum())
        if available == 0:
            return present
        drawn = torch.multinomial(prob, min(missing, available), replacement=False, generator=self.generator)
        return torch.cat([present, drawn.to(present.device)])

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Args: logits ``(N, C+1)``; labels ``(N,)`` int64 in ``[0, C]``, ``C`` = background.

        Returns ``{"loss_cls": scalar}``; ``N == 0`` gives a zero that keeps the graph
        and draws nothing.
        """
        self.check_inputs(logits, labels)
        logits = promote_half(logits)
        n, c = logits.shape[0], self.num_classes
        if n == 0:
            return {"loss_cls": logits.sum() * 0.0}
        kept = self.sample_classes(labels)
        kept = kept[kept < c]
        # only the kept channels enter the loss (same value and gradient as a 0/1 mask)
        sub_logits = logits[:, kept]
        target = (labels[:, None] == kept[None, :]).to(logits.dtype)
        loss = F.binary_cross_entropy_with_logits(sub_logits, target, reduction="sum") / n
        return {"loss_cls": loss}

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        """``(N, C)``: ``sigmoid(z_j)`` for ``j < C``."""
        return torch.sigmoid(logits[:, :-1])
