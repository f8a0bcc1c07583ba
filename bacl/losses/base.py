"""The interface every classification loss of the registry implements.

Label convention (the reference's, docs/method.md section 1): integer labels are in
``[0, C]`` where ``0..C-1`` are the foreground classes and ``C`` means background.
Most losses read ``C + 1`` logits, one per foreground class and the last one, index
``C``, for background; a loss whose classifier has another layout says so with
:attr:`ClassificationLoss.num_logits` (Seesaw: ``C + 2``, EQL: ``C``, BAGS: one per
class plus background plus one "others" entry per group), and its :meth:`scores`
always return ``(N, C)`` foreground scores in label order.

Dataset statistics. A loss that needs statistics of the training split takes them as
keyword-only constructor arguments with exactly these names (the builder passes
whichever names appear in the constructor's signature, see
:func:`bacl.losses.registry.statistics_arguments`):

- ``image_counts``: LongTensor ``(C,)``, training images containing each class
  (LVIS's ``image_count``);
- ``instance_counts``: LongTensor ``(C,)``, training annotations of each class
  (LVIS's ``instance_count``);
- ``num_images``: int, training images with at least one annotation.

The classification layer. :meth:`ClassificationLoss.make_classifier` may return the
layer the loss's logits must come from (Seesaw's and ECM's normalised linear layer
with a temperature); ``None`` keeps the predictor's plain linear layer.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from ..errors import BaclError

#: Constructor argument names through which losses receive training-split statistics.
STATISTICS_ARGUMENTS = ("image_counts", "instance_counts", "num_images")


class LossArgumentError(BaclError, ValueError):
    """A loss was built with an argument out of range or of the wrong shape; the message
    names the loss and the argument."""


class ClassificationLoss(nn.Module):
    """Base class: a classification loss plus the matching test-time score.

    Subclasses implement :meth:`forward` and, when their logits are not the sigmoid or
    softmax ``C + 1`` layout, :meth:`scores`. ``forward`` returns a dict of named loss
    terms whose names start with ``loss_cls`` (unweighted; weights are applied in one
    place by the caller). Statistics a loss keeps (confusion matrices, gradient
    ratios, label counts) live in buffers so checkpoints carry them.
    """

    #: True for losses trained with per-channel sigmoids: the predictor's plain linear
    #: layer starts with ``sigmoid(bias) = 0.001`` (docs/method.md section 1), else bias 0;
    #: the default :meth:`scores` use docs/method.md section 1's sigmoid scores, else softmax.
    use_sigmoid: bool = True

    def __init__(self, *, num_classes: int) -> None:
        super().__init__()
        if int(num_classes) < 1:
            raise LossArgumentError(f"num_classes must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)

    @property
    def num_logits(self) -> int:
        """Width of the logits this loss reads: ``C + 1`` unless a subclass says otherwise."""
        return self.num_classes + 1

    def make_classifier(self, in_features: int) -> Optional[nn.Module]:
        """The classification layer ``(M, in_features) -> (M, num_logits)`` this loss needs,
        initialised; ``None`` (the default) for the predictor's plain ``nn.Linear``."""
        return None

    @property
    def uses_standard_classifier(self) -> bool:
        """True when the classifier is the predictor's plain linear layer with ``C + 1``
        outputs, so a stage-1 checkpoint's ``cls_score`` fits it as is."""
        return (
            self.num_logits == self.num_classes + 1
            and type(self).make_classifier is ClassificationLoss.make_classifier
        )

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Args: logits ``(N, num_logits)`` float; labels ``(N,)`` int64 in ``[0, C]``.

        Returns ``{"loss_cls...": scalar, ...}``. ``N == 0`` gives zeros that keep the graph.
        """
        raise NotImplementedError

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        """Per-class detection scores ``(N, C)`` from logits ``(N, num_logits)``."""
        if self.use_sigmoid:
            return sigmoid_detection_scores(logits)
        return torch.softmax(logits, dim=1)[:, :-1]

    def check_inputs(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        if logits.dim() != 2 or logits.shape[1] != self.num_logits:
            raise ValueError(
                f"{type(self).__name__}: logits must be (N, {self.num_logits}), "
                f"got {tuple(logits.shape)}"
            )
        if labels.shape != logits.shape[:1]:
            raise ValueError(
                f"{type(self).__name__}: labels must be ({logits.shape[0]},), got {tuple(labels.shape)}"
            )


def sigmoid_detection_scores(logits: torch.Tensor) -> torch.Tensor:
    """``s_j = sigmoid(z_j) * (1 - sigmoid(z_C))`` for ``j < C`` (docs/method.md section 1)."""
    probs = torch.sigmoid(logits)
    return probs[:, :-1] * (1.0 - probs[:, -1:])


def check_class_counts(owner: str, name: str, counts: object, num_classes: int) -> torch.Tensor:
    """``counts`` as an int64 CPU tensor ``(C,)`` of non-negative values, or a
    :class:`LossArgumentError` naming ``owner`` and ``name``."""
    if counts is None:
        raise LossArgumentError(f"{owner}: {name} is required (a ({num_classes},) tensor from the training split)")
    tensor = torch.as_tensor(counts)
    if tensor.is_floating_point() or tensor.dtype == torch.bool or tensor.is_complex():
        raise LossArgumentError(f"{owner}: {name} must hold integer counts, got dtype {tensor.dtype}")
    if tensor.shape != (num_classes,):
        raise LossArgumentError(f"{owner}: {name} must have shape ({num_classes},), got {tuple(tensor.shape)}")
    tensor = tensor.detach().to("cpu", torch.int64)
    if num_classes and int(tensor.min()) < 0:
        raise LossArgumentError(f"{owner}: {name} must be >= 0, got min {int(tensor.min())}")
    return tensor


def promote_half(logits: torch.Tensor) -> torch.Tensor:
    """Half-precision logits (autocast) in float32, others unchanged: the losses' weights,
    margins and statistics are computed at least in float32."""
    if logits.dtype in (torch.float16, torch.bfloat16):
        return logits.float()
    return logits
