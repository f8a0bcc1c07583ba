"""``model:``: the detector's architecture, i.e. what a checkpoint is.

Input sizes belong to the training stages (augmentation) and to ``evaluate`` (test
size); the detection budget and thresholds belong to ``evaluate``. Changing any of
those never retrains.
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field

from .section import Section, Str

PRESETS = ("synthetic_small", "r50_fpn", "r101_fpn")


class ModelParams(Section):
    preset: Literal["synthetic_small", "r50_fpn", "r101_fpn"] = Field(
        "synthetic_small", description="synthetic_small (CPU, from scratch) | r50_fpn | r101_fpn")
    pretrained_backbone: Optional[Str] = Field(
        None, description="null (random init) | imagenet (torchvision weights) | path to a state dict")
