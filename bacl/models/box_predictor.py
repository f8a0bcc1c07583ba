"""The box predictor: class logits with background LAST (``C + 1`` columns) plus
class-specific box deltas for the ``C`` foreground classes.

``cls_score`` is the classification layer BACL retrains in its classifier stage and
the one hallucinated embeddings go through (METHOD.md sections 1, 3, 4).
"""

from __future__ import annotations

import math

import torch
from torch import nn


class BoxPredictor(nn.Module):
    """``embedding (N, D) -> (logits (N, C+1), deltas (N, 4C) or (N, 4))``.

    Initialisation (METHOD.md section 1, mmdetection's Shared2FCBBoxHead):
    ``cls_score`` weights normal(std 0.01); with ``use_sigmoid`` every one of the
    ``C + 1`` biases is ``-log((1 - p) / p)`` so that ``sigmoid(bias) = prior_prob``
    (0.001), which keeps the initial sigmoid BCE from being dominated by ``C`` easy
    negatives; for a softmax loss the biases are 0. ``bbox_pred`` weights
    normal(std 0.001), bias 0.

    Args:
        in_channels: embedding size ``D`` (the box head's output).
        num_classes: number of foreground classes ``C``.
        use_sigmoid: match the bias to a sigmoid loss (True) or a softmax loss (False).
        prior_prob: the initial foreground/background sigmoid probability.
        class_agnostic_bbox: one set of 4 deltas shared by all classes.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        num_classes: int,
        use_sigmoid: bool = True,
        prior_prob: float = 0.001,
        class_agnostic_bbox: bool = False,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if not 0.0 < prior_prob < 1.0:
            raise ValueError(f"prior_prob must be in (0, 1), got {prior_prob}")
        self.num_classes = int(num_classes)
        self.class_agnostic_bbox = bool(class_agnostic_bbox)
        self.cls_score = nn.Linear(in_channels, num_classes + 1)
        self.bbox_pred = nn.Linear(in_channels, 4 if class_agnostic_bbox else 4 * num_classes)

        nn.init.normal_(self.cls_score.weight, std=0.01)
        bias = -math.log((1.0 - prior_prob) / prior_prob) if use_sigmoid else 0.0
        nn.init.constant_(self.cls_score.bias, bias)
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        nn.init.zeros_(self.bbox_pred.bias)

    def forward(self, embedding: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embedding = embedding.flatten(start_dim=1)
        return self.cls_score(embedding), self.bbox_pred(embedding)
