"""Classification losses: a small registry so the detector's loss is a swappable part."""

from .base import ClassificationLoss, sigmoid_detection_scores
from .registry import LOSSES, build_loss, register_loss
from . import bce, fcbl, softmax_ce  # noqa: F401  (register on import)

__all__ = ["ClassificationLoss", "LOSSES", "build_loss", "register_loss", "sigmoid_detection_scores"]
