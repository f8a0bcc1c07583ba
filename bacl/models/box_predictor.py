"""The box predictor: class logits with background LAST (``C + 1`` columns, or the
loss's own layout, see :meth:`BoxPredictor.for_loss`) plus class-specific box deltas
for the ``C`` foreground classes.

``cls_score`` is the classification layer BACL retrains in its classifier stage and
the one hallucinated embeddings go through (docs/method.md sections 1, 3, 4).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Optional

import torch
from torch import nn

if TYPE_CHECKING:
    from ..losses.base import ClassificationLoss


class BoxPredictor(nn.Module):
    """``embedding (N, D) -> (logits (N, K), deltas (N, 4C) or (N, 4))`` with ``K = C + 1``
    unless ``num_logits`` says otherwise.

    Initialisation (docs/method.md section 1, mmdetection's Shared2FCBBoxHead):
    ``cls_score`` weights normal(std 0.01); with ``use_sigmoid`` every one of the
    ``K`` biases is ``-log((1 - p) / p)`` so that ``sigmoid(bias) = prior_prob``
    (0.001), which keeps the initial sigmoid BCE from being dominated by ``C`` easy
    negatives; for a softmax loss the biases are 0. ``bbox_pred`` weights
    normal(std 0.001), bias 0. A ``cls_score`` passed in keeps its own initialisation.

    Args:
        in_channels: embedding size ``D`` (the box head's output).
        num_classes: number of foreground classes ``C``.
        use_sigmoid: match the bias to a sigmoid loss (True) or a softmax loss (False).
        prior_prob: the initial foreground/background sigmoid probability.
        class_agnostic_bbox: one set of 4 deltas shared by all classes.
        num_logits: ``K``, the width of the logits; ``None`` for ``C + 1``.
        cls_score: the classification layer, ``(N, D) -> (N, K)`` with ``in_features == D``
            and ``out_features == K`` (e.g. a normalised linear layer); ``None`` for a plain
            ``nn.Linear`` initialised as above.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        num_classes: int,
        use_sigmoid: bool = True,
        prior_prob: float = 0.001,
        class_agnostic_bbox: bool = False,
        num_logits: Optional[int] = None,
        cls_score: Optional[nn.Module] = None,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if not 0.0 < prior_prob < 1.0:
            raise ValueError(f"prior_prob must be in (0, 1), got {prior_prob}")
        num_logits = num_classes + 1 if num_logits is None else int(num_logits)
        if num_logits < 1:
            raise ValueError(f"num_logits must be >= 1, got {num_logits}")
        if cls_score is not None and (
            getattr(cls_score, "in_features", None) != in_channels
            or getattr(cls_score, "out_features", None) != num_logits
        ):
            raise ValueError(
                f"cls_score must map {in_channels} features to {num_logits} logits, got "
                f"in_features={getattr(cls_score, 'in_features', None)}, "
                f"out_features={getattr(cls_score, 'out_features', None)}"
            )
        self.num_classes = int(num_classes)
        self.class_agnostic_bbox = bool(class_agnostic_bbox)
        # Creation and initialisation order kept as it always was, so a seed gives the same weights.
        plain = cls_score is None
        self.cls_score = nn.Linear(in_channels, num_logits) if plain else cls_score
        self.bbox_pred = nn.Linear(in_channels, 4 if class_agnostic_bbox else 4 * num_classes)
        if plain:
            nn.init.normal_(self.cls_score.weight, std=0.01)
            bias = -math.log((1.0 - prior_prob) / prior_prob) if use_sigmoid else 0.0
            nn.init.constant_(self.cls_score.bias, bias)
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        nn.init.zeros_(self.bbox_pred.bias)

    @classmethod
    def for_loss(
        cls,
        loss: "ClassificationLoss",
        *,
        in_channels: int,
        prior_prob: float = 0.001,
        class_agnostic_bbox: bool = False,
    ) -> "BoxPredictor":
        """The predictor ``loss`` trains: ``loss.num_logits`` outputs from
        ``loss.make_classifier(in_channels)`` when it returns a layer, else from a plain
        linear layer initialised for ``loss.use_sigmoid``."""
        return cls(
            in_channels=in_channels,
            num_classes=loss.num_classes,
            use_sigmoid=loss.use_sigmoid,
            prior_prob=prior_prob,
            class_agnostic_bbox=class_agnostic_bbox,
            num_logits=loss.num_logits,
            cls_score=loss.make_classifier(in_channels),
        )

    def forward(self, embedding: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        embedding = embedding.flatten(start_dim=1)
        return self.cls_score(embedding), self.bbox_pred(embedding)
