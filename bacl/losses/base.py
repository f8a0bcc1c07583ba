"""The interface every classification loss of the registry implements.

Label convention (the reference's, METHOD.md section 1): logits have ``C + 1``
columns, one per foreground class and the last one, index ``C``, for background.
Integer labels are in ``[0, C]`` where ``C`` means background.
"""

from __future__ import annotations

import torch
from torch import nn


class ClassificationLoss(nn.Module):
    """Base class: a classification loss plus the matching test-time score.

    Subclasses implement :meth:`forward` and :meth:`scores`. ``forward`` returns a
    dict of named loss terms (unweighted; weights are applied in one place by the
    caller). Statistics a loss keeps (confusion matrices, gradient ratios) live in
    buffers so checkpoints carry them.
    """

    #: True for losses trained with per-channel sigmoids (scores use METHOD.md section 1).
    use_sigmoid: bool = True

    def __init__(self, *, num_classes: int) -> None:
        super().__init__()
        if int(num_classes) < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Args: logits ``(N, C+1)`` float; labels ``(N,)`` int64 in ``[0, C]``.

        Returns ``{"loss_cls": scalar}``. ``N == 0`` gives a zero that keeps the graph.
        """
        raise NotImplementedError

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        """Per-class detection scores ``(N, C)`` from logits ``(N, C+1)``."""
        if self.use_sigmoid:
            return sigmoid_detection_scores(logits)
        return torch.softmax(logits, dim=1)[:, :-1]

    def check_inputs(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        if logits.dim() != 2 or logits.shape[1] != self.num_classes + 1:
            raise ValueError(
                f"{type(self).__name__}: logits must be (N, {self.num_classes + 1}), "
                f"got {tuple(logits.shape)}"
            )
        if labels.shape != logits.shape[:1]:
            raise ValueError(
                f"{type(self).__name__}: labels must be ({logits.shape[0]},), got {tuple(labels.shape)}"
            )


def sigmoid_detection_scores(logits: torch.Tensor) -> torch.Tensor:
    """``s_j = sigmoid(z_j) * (1 - sigmoid(z_C))`` for ``j < C`` (METHOD.md section 1)."""
    probs = torch.sigmoid(logits)
    return probs[:, :-1] * (1.0 - probs[:, -1:])
