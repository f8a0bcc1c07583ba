"""``model:``: the detector's architecture, i.e. what a checkpoint is.

Input sizes belong to the training stages (augmentation) and to ``evaluate`` (test
size); the detection budget and thresholds belong to ``evaluate``. Changing any of
those never retrains.
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field, model_validator

from .section import Bool, Section, Str

PRESETS = ("synthetic_small", "r50_fpn", "r101_fpn")


class ModelParams(Section):
    preset: Literal["synthetic_small", "r50_fpn", "r101_fpn"] = Field(
        "synthetic_small", description="synthetic_small (CPU, from scratch) | r50_fpn | r101_fpn")
    pretrained_backbone: Optional[Str] = Field(
        None, description="null (random init) | imagenet (torchvision weights) | path to a state dict")
    # The reference's details (docs/reference_parity.md); the LVIS presets set each to the reference's value.
    roi_align_aligned: Bool = Field(False, description="RoIAlign with mmcv's half-pixel alignment (the reference: true)")
    backbone_norm: Optional[Literal["frozen", "norm_eval", "train"]] = Field(
        None, description="ResNet BatchNorm; null = frozen with pretrained weights, train without (the reference: "
                          "norm_eval: statistics frozen, affine weights train)")
    rpn_box_loss: Literal["smooth_l1", "l1"] = Field("smooth_l1", description="RPN box loss (the reference: l1)")
    box_head_init: Literal["torchvision", "xavier"] = Field(
        "torchvision", description="initialisation of the two shared box-head FCs (the reference: xavier)")
    fpn_init: Literal["torchvision", "xavier"] = Field(
        "torchvision", description="initialisation of the FPN convolutions (the reference: xavier)")
    anchors: Literal["torchvision", "mmdet"] = Field(
        "torchvision", description="torchvision: rounded base anchors; mmdet: the reference's exact ones")

    @model_validator(mode="after")
    def _small_backbone_trains_its_norms(self):
        if self.preset == "synthetic_small" and self.backbone_norm not in (None, "train"):
            raise ValueError(f"backbone_norm: the synthetic_small backbone trains its BatchNorm from scratch; use "
                             f"null or train, got {self.backbone_norm!r}")
        if self.preset == "synthetic_small" and self.pretrained_backbone == "imagenet":
            raise ValueError("pretrained_backbone: the synthetic_small backbone has no ImageNet weights; use null "
                             "or a path to a state dict of it")
        return self
