"""Classification losses: a small registry so the detector's loss is a swappable part."""

from .base import STATISTICS_ARGUMENTS, ClassificationLoss, LossArgumentError, sigmoid_detection_scores
from .registry import LOSSES, build_loss, placeholder_statistics, register_loss, statistics_arguments
# register on import
from . import bags, bce, ecm, eql, eqlv2, fcbl, federated, logit_adjusted, seesaw, softmax_ce  # noqa: F401

__all__ = [
    "ClassificationLoss",
    "LOSSES",
    "LossArgumentError",
    "STATISTICS_ARGUMENTS",
    "build_loss",
    "placeholder_statistics",
    "register_loss",
    "sigmoid_detection_scores",
    "statistics_arguments",
]
