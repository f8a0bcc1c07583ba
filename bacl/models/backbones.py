"""Backbones with an FPN: torchvision's ResNet-50/101-FPN and a small CPU one.

Every backbone returns an ``OrderedDict`` of feature maps (``"0"``, ``"1"``, ...) with
``out_channels`` channels each, the interface torchvision's Faster R-CNN expects.

BatchNorm of the ResNets (``norm``):

- ``"frozen"``: torchvision's ``FrozenBatchNorm2d``: statistics and affine parameters
  fixed (torchvision's detection models with pretrained weights);
- ``"norm_eval"``: the reference's (mmdetection ``ResNet(norm_eval=True,
  frozen_stages=1)``, ``mmdet/models/backbones/resnet.py``): ordinary BatchNorm whose
  layers stay in eval mode, so the ImageNet statistics never change, while the affine
  weights train with their stage (stages 2-4 with ``trainable_layers=3``);
- ``"train"``: ordinary BatchNorm that updates its statistics (training from scratch).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Optional

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm
from torchvision.models import ResNet50_Weights, ResNet101_Weights, resnet50, resnet101
from torchvision.models.detection.backbone_utils import BackboneWithFPN, resnet_fpn_backbone
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool
from torchvision.ops.misc import FrozenBatchNorm2d

logger = logging.getLogger(__name__)

_RESNETS = {
    "resnet50_fpn": (resnet50, ResNet50_Weights.IMAGENET1K_V1),
    "resnet101_fpn": (resnet101, ResNet101_Weights.IMAGENET1K_V1),
}
BACKBONES = (*_RESNETS, "small_fpn")
BACKBONE_NORMS = ("frozen", "norm_eval", "train")
FPN_INITS = ("torchvision", "xavier")
# ResNet parts in the order trainable_layers counts them (from the top).
_STAGES_FROM_TOP = ("layer4", "layer3", "layer2", "layer1", "conv1")


def build_backbone(
    *,
    name: str,
    pretrained: Optional[str] = None,
    trainable_layers: Optional[int] = None,
    norm: Optional[str] = None,
    fpn_init: str = "torchvision",
) -> nn.Module:
    """Build a backbone + FPN with an ``out_channels`` attribute.

    Args:
        name: ``"resnet50_fpn"``, ``"resnet101_fpn"`` or ``"small_fpn"``.
        pretrained: ``"imagenet"`` (torchvision's ImageNet weights, downloaded into the
            torch cache on first use), a path to a local ResNet state-dict file
            (torchvision key names, e.g. ``conv1.weight``, ``layer1.0.conv1.weight``), or
            ``None`` for random initialisation. ``small_fpn`` only takes ``None`` or a
            path to a state dict of the whole small backbone.
        trainable_layers: ResNet stages left trainable, counted from ``layer4`` (0-5).
            Default 3 (the stem and ``layer1`` frozen, as the reference's
            ``frozen_stages=1``) with pretrained weights or an explicit ``"frozen"`` or
            ``"norm_eval"`` norm. With neither, everything trains and the argument is
            ignored.
        norm: ResNet BatchNorm, one of :data:`BACKBONE_NORMS` (see the module
            docstring). ``None``: ``"frozen"`` with pretrained weights, ``"train"``
            without (frozen statistics at their initial values would make BatchNorm an
            identity). ``small_fpn`` takes ``None`` or ``"train"``.
        fpn_init: ``"torchvision"`` (kaiming-uniform, a=1) or ``"xavier"`` (uniform,
            the reference's ``FPN.init_weights``) for the FPN's convolutions; biases 0.
    """
    if norm is not None and norm not in BACKBONE_NORMS:
        raise ValueError(f"unknown backbone norm {norm!r}; known: {list(BACKBONE_NORMS)}")
    if fpn_init not in FPN_INITS:
        raise ValueError(f"unknown fpn_init {fpn_init!r}; known: {list(FPN_INITS)}")
    if trainable_layers is not None and not 0 <= trainable_layers <= 5:
        raise ValueError(f"trainable_layers must be in 0..5, got {trainable_layers}")
    if name == "small_fpn":
        if norm not in (None, "train"):
            raise ValueError(f"backbone small_fpn trains its BatchNorm from scratch; norm must be None or "
                             f"'train', got {norm!r}")
        backbone = SmallResNetFPN()
        if pretrained is None:
            logger.info("backbone small_fpn: random initialisation, trains from scratch")
        elif pretrained == "imagenet":
            raise ValueError("backbone small_fpn has no ImageNet weights; use None or a local state-dict path")
        else:
            backbone.load_state_dict(_load_state_dict(pretrained))
            logger.info("backbone small_fpn: weights loaded from %s", pretrained)
        _init_fpn(backbone.fpn, fpn_init)
        return backbone

    if name not in _RESNETS:
        raise ValueError(f"unknown backbone {name!r}; known: {list(BACKBONES)}")
    if norm is None and pretrained is None:
        if trainable_layers is not None:
            logger.warning("backbone %s: trainable_layers ignored without pretrained weights", name)
        logger.info("backbone %s: random initialisation, BatchNorm, all layers trainable", name)
        backbone = _resnet_with_fpn(name, weights=None, norm="train", trainable_layers=5)
    else:
        norm = norm or "frozen"
        if trainable_layers is None:
            trainable_layers = 5 if (pretrained is None and norm == "train") else 3
        weights = _RESNETS[name][1] if pretrained == "imagenet" else None
        if weights is not None:
            logger.info("backbone %s: torchvision ImageNet weights %s", name, weights)
        backbone = _resnet_with_fpn(name, weights=weights, norm=norm, trainable_layers=trainable_layers)
        if pretrained not in (None, "imagenet"):
            _load_resnet_weights(backbone, pretrained)
            logger.info("backbone %s: ResNet weights loaded from %s", name, pretrained)
        logger.info("backbone %s: BatchNorm %s, %d trainable stages", name, norm, trainable_layers)
    _init_fpn(backbone.fpn, fpn_init)
    return backbone


class NormEvalBackboneWithFPN(BackboneWithFPN):
    """torchvision's ``BackboneWithFPN`` whose trunk's BatchNorm layers stay in eval mode.

    ``train()`` puts every BatchNorm of ``body`` back into eval mode (mmdetection's
    ``norm_eval``), so a training step normalises with the running statistics and never
    updates them; the layers' affine weights still receive gradients where
    ``requires_grad`` is set.
    """

    def train(self, mode: bool = True) -> "NormEvalBackboneWithFPN":
        super().train(mode)
        for module in norm_eval_layers(self):
            module.eval()
        return self


def norm_eval_layers(module: nn.Module) -> list[nn.Module]:
    """The BatchNorm layers that must stay in eval mode in training because of
    ``norm="norm_eval"``: those of every :class:`NormEvalBackboneWithFPN` trunk in
    ``module`` (e.g. a whole detector); empty for other backbones.

    :class:`NormEvalBackboneWithFPN` already enforces it on ``train()``; the list is for
    code that sets modes itself (e.g. ``bacl.engine.freeze.train_mode``)."""
    return [layer for sub in module.modules() if isinstance(sub, NormEvalBackboneWithFPN)
            for layer in sub.body.modules() if isinstance(layer, _BatchNorm)]


def _resnet_with_fpn(name: str, *, weights, norm: str, trainable_layers: int) -> BackboneWithFPN:
    """ResNet trunk with FPN P2-P5 + max-pooled P6 (the reference's ``num_outs=5``)."""
    arch = _RESNETS[name][0].__name__
    if norm != "norm_eval":
        norm_layer = FrozenBatchNorm2d if norm == "frozen" else nn.BatchNorm2d
        return resnet_fpn_backbone(
            backbone_name=arch, weights=weights, norm_layer=norm_layer, trainable_layers=trainable_layers
        )
    trunk = _RESNETS[name][0](weights=weights, norm_layer=nn.BatchNorm2d)
    trainable = _STAGES_FROM_TOP[:trainable_layers] + (("bn1",) if trainable_layers == 5 else ())
    for param_name, param in trunk.named_parameters():
        param.requires_grad_(param_name.startswith(trainable))
    return NormEvalBackboneWithFPN(
        trunk,
        return_layers={"layer1": "0", "layer2": "1", "layer3": "2", "layer4": "3"},
        in_channels_list=[256, 512, 1024, 2048],
        out_channels=256,
        extra_blocks=LastLevelMaxPool(),
    )


def _init_fpn(fpn: nn.Module, mode: str) -> None:
    """``"xavier"``: xavier-uniform weights, zero biases for every conv of ``fpn``;
    ``"torchvision"``: leave torchvision's initialisation."""
    if mode == "torchvision":
        return
    for module in fpn.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def _load_state_dict(path: str) -> dict[str, torch.Tensor]:
    if not Path(path).is_file():
        raise FileNotFoundError(f"pretrained backbone weights not found: {path}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    return state.get("state_dict", state) if isinstance(state, dict) else state


def _load_resnet_weights(backbone: BackboneWithFPN, path: str) -> None:
    """Load a torchvision-style ResNet state dict into the FPN backbone's trunk.

    The classifier (``fc.*``) is dropped; every trunk parameter must be present.
    ``load_state_dict`` copies values in place, so the frozen stages stay frozen.
    """
    state = {k: v for k, v in _load_state_dict(path).items() if not k.startswith("fc.")}
    missing, unexpected = backbone.body.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise KeyError(
            f"{path} is not a torchvision ResNet state dict: missing {missing[:5]}..., "
            f"unexpected {unexpected[:5]}..."
        )


class _BasicBlock(nn.Module):
    """ResNet basic block (two 3x3 convs) with BatchNorm; 1x1 projection when the shape changes."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, norm: Callable[[int], nn.Module]) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.bn1 = norm(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = norm(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), norm(out_channels)
            )
        # Zero-init the last BN of each residual branch: each block starts as an identity,
        # which makes training from scratch stable and fast (Goyal et al., 2017).
        nn.init.zeros_(self.bn2.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class SmallResNetFPN(nn.Module):
    """A compact ResNet-like trunk (strides 4, 8, 16, 32) with an FPN, for CPU training
    from scratch on ~160-192 px images with objects of ~14-96 px.

    Output levels ``"0".."3"`` at strides 4, 8, 16, 32 with ``fpn_channels`` channels
    each. The 3x3 convs of the FPN and the RPN on the stride-4 level are the largest
    cost, so the FPN is narrow: a training step with 32 channels takes ~25 % less CPU
    time than with 48 (and ~45 % less than with 64), and in a 300-step run on a toy
    coloured-shapes task (12 classes) it reached the same recall as 48. No extra pooled
    level: a stride-64 map of a 160 px image is 3x3 and no object needs it. The stem
    downsamples by 4 with two stride-2 convs so nothing runs at full resolution;
    BatchNorm (not frozen) because the trunk trains from scratch.

    Args:
        widths: channels of the stem and of the four stages.
        blocks: basic blocks per stage.
        fpn_channels: FPN output channels (``out_channels``).
    """

    def __init__(
        self,
        *,
        widths: tuple[int, int, int, int, int] = (24, 32, 64, 128, 192),
        blocks: tuple[int, int, int, int] = (1, 1, 1, 1),
        fpn_channels: int = 32,
    ) -> None:
        super().__init__()
        norm = nn.BatchNorm2d
        stem_width, *stage_widths = widths
        self.stem = nn.Sequential(
            nn.Conv2d(3, stem_width, 3, stride=2, padding=1, bias=False),
            norm(stem_width),
            nn.ReLU(inplace=True),
            nn.Conv2d(stem_width, stage_widths[0], 3, stride=2, padding=1, bias=False),
            norm(stage_widths[0]),
            nn.ReLU(inplace=True),
        )
        stages = []
        in_channels = stage_widths[0]
        for index, (width, count) in enumerate(zip(stage_widths, blocks)):
            stride = 1 if index == 0 else 2
            layers = [_BasicBlock(in_channels, width, stride, norm)]
            layers += [_BasicBlock(width, width, 1, norm) for _ in range(count - 1)]
            stages.append(nn.Sequential(*layers))
            in_channels = width
        self.stages = nn.ModuleList(stages)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        self.fpn = FeaturePyramidNetwork(in_channels_list=list(stage_widths), out_channels=fpn_channels)
        self.out_channels = fpn_channels

    def forward(self, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
        x = self.stem(x)
        features = OrderedDict()
        for index, stage in enumerate(self.stages):
            x = stage(x)
            features[str(index)] = x
        return self.fpn(features)
