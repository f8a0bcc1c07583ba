"""EQL: equalization loss (Tan et al., CVPR 2020; docs/method.md section 7).

As tztztztztz/eqlv2's ``mmdet/models/losses/eql.py`` with its sigmoid bounding-box
head (``mmdet/models/roi_heads/bbox_heads/convfc_bbox_head.py``): the classifier has
``C`` outputs, **no background channel**; a background RoI is a row whose targets are
all 0. On a foreground RoI the negative channels of tail classes (image frequency
below ``lambda_``) are dropped:

    w_ij = 1 - E_i * T_j * (1 - y_ij),   E_i = [i is foreground],   T_j = [f_j < lambda_]
    loss = sum_ij w_ij * BCE(z_ij, y_ij) / N

with ``f_j = image_counts[j] / num_images`` (the official category file divides LVIS's
``image_count`` by the number of training images with an annotation). Test-time score
of class ``j``: ``sigmoid(z_j)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import ClassificationLoss, LossArgumentError, check_class_counts, promote_half
from .registry import register_loss


@register_loss("eql")
class EQLLoss(ClassificationLoss):
    """Equalization loss over ``C`` sigmoid channels (no background channel).

    Buffer ``tail (C,)`` bool: ``T_j``, the classes whose negative gradients foreground
    RoIs of other classes do not send. Fixed at construction.

    Args:
        num_classes: ``C``.
        image_counts: ``(C,)`` training images containing each class.
        num_images: training images with at least one annotation, ``>= 1``.
        lambda_: frequency threshold ``lambda``, in ``[0, 1]`` (official default 0.00177,
            the paper's LVIS v0.5 value; the official LVIS v1 config uses 0.0011).
    """

    use_sigmoid = True

    def __init__(
        self, *, num_classes: int, image_counts: torch.Tensor, num_images: int, lambda_: float = 0.00177
    ) -> None:
        super().__init__(num_classes=num_classes)
        counts = check_class_counts("EQL", "image_counts", image_counts, self.num_classes)
        if int(num_images) < 1:
            raise LossArgumentError(f"EQL: num_images must be >= 1, got {num_images}")
        if not 0.0 <= lambda_ <= 1.0:
            raise LossArgumentError(f"EQL: lambda_ must be in [0, 1], got {lambda_}")
        self.lambda_ = float(lambda_)
        frequency = counts.to(torch.float64) / int(num_images)
        self.register_buffer("tail", frequency < self.lambda_)

    @property
    def num_logits(self) -> int:
        return self.num_classes

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Args: logits ``(N, C)``; labels ``(N,)`` int64 in ``[0, C]``, ``C`` = background.

        Returns ``{"loss_cls": scalar}``; ``N == 0`` gives a zero that keeps the graph.
        """
        self.check_inputs(logits, labels)
        logits = promote_half(logits)
        n, c = logits.shape[0], self.num_classes
        if n == 0:
            return {"loss_cls": logits.sum() * 0.0}
        target = F.one_hot(labels, num_classes=c + 1)[:, :c].to(logits.dtype)
        foreground = (labels < c).to(logits.dtype)
        weight = 1.0 - foreground[:, None] * self.tail.to(logits.dtype)[None, :] * (1.0 - target)
        per_element = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        return {"loss_cls": (per_element * weight).sum() / n}

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        """``(N, C)``: ``sigmoid(z_j)``."""
        return torch.sigmoid(logits)
