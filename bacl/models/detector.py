"""``build_detector``: torchvision's Faster R-CNN + FPN with BACL's parts passed in.

torchvision supplies the image transform (normalisation, multi-scale resize, batching),
the backbone, the RPN, RoIAlign and the two-FC box head. This project supplies the
background-last predictor (:class:`BoxPredictor`), the RoI heads that call a registry
loss (:class:`BACLRoIHeads`) and the small CPU backbone.

Presets:

- ``r50_fpn`` / ``r101_fpn``: the reference's LVIS settings (docs/method.md sections 4-5):
  1024-d two-FC head, 512 RoIs per image with 25 % positives, RPN keeps 2000 proposals
  in training and 1000 at test, multi-scale training (shorter side 640..800 step 32,
  longer side up to 1333), 800 at test, score threshold 1e-4, NMS 0.5, 300 detections,
  adaptive RoIAlign sampling (mmdetection's ``sampling_ratio=0``), anchors 32..512 at
  strides 4..64.
- ``synthetic_small``: the CPU demo on ~160 px synthetic images: small backbone (FPN
  P2-P5, 32 channels), anchors 16..128 px, 256-d head, 128 RoIs per image, 500 RPN
  proposals.

Settings where torchvision's defaults and the reference differ are keyword arguments of
:func:`build_detector` whose defaults keep torchvision's behaviour (so the synthetic
benchmark is unchanged); :data:`REFERENCE_SETTINGS` holds the reference's values, which
the LVIS parameter files set. See ``docs/reference_parity.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional, Union

from torch import nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import TwoMLPHead
from torchvision.ops import MultiScaleRoIAlign

from ..losses.base import ClassificationLoss
from .anchors import FixedStrideAnchorGenerator
from .backbones import BACKBONE_NORMS, FPN_INITS, build_backbone
from .box_predictor import BoxPredictor
from .roi_align import AlignedMultiScaleRoIAlign
from .roi_heads import BACLRoIHeads
from .rpn import RPN_BOX_LOSSES, BoxLossRegionProposalNetwork

SizeSpec = Union[int, tuple[int, ...]]


@dataclass(frozen=True)
class DetectorPreset:
    """What differs between presets. ``min_size`` is a tuple for multi-scale training:
    torchvision's transform draws one per image in training and uses the last at test."""

    backbone: str
    anchor_sizes: tuple[tuple[int, ...], ...]
    representation_size: int
    min_size: tuple[int, ...]
    max_size: int
    rpn_pre_nms_top_n_train: int
    rpn_post_nms_top_n_train: int
    rpn_pre_nms_top_n_test: int
    rpn_post_nms_top_n_test: int
    box_batch_size_per_image: int
    # Stride of each RPN level in input pixels (used by the "mmdet" anchors).
    anchor_strides: tuple[int, ...]
    # RoIAlign level for a box of side s: floor(4 + log2(s / roi_canonical_scale)).
    roi_canonical_scale: int = 224
    # Samples per RoIAlign bin and axis; 0 = adaptive ceil(roi_size / 7), the reference's.
    roi_sampling_ratio: int = 0


PRESETS: dict[str, DetectorPreset] = {
    "r50_fpn": DetectorPreset(
        backbone="resnet50_fpn",
        anchor_sizes=((32,), (64,), (128,), (256,), (512,)),
        representation_size=1024,
        min_size=tuple(range(640, 801, 32)),
        max_size=1333,
        rpn_pre_nms_top_n_train=2000,
        rpn_post_nms_top_n_train=2000,
        rpn_pre_nms_top_n_test=1000,
        rpn_post_nms_top_n_test=1000,
        box_batch_size_per_image=512,
        anchor_strides=(4, 8, 16, 32, 64),
    ),
    "synthetic_small": DetectorPreset(
        backbone="small_fpn",
        # Objects are 14-96 px: one anchor size per level at strides 4..32.
        anchor_sizes=((16,), (32,), (64,), (128,)),
        representation_size=256,
        min_size=(160,),
        max_size=320,
        # Sample counts are CPU-time trade-offs measured with benchmarks/detector_step_speed.py:
        # 256 RoIs per image cost ~40 % more per step than 128 (RoIAlign's single-threaded
        # CPU backward and the FC head scale with them); 128 still allow 32 positives per
        # image for the few objects of a synthetic image.
        rpn_pre_nms_top_n_train=500,
        rpn_post_nms_top_n_train=500,
        rpn_pre_nms_top_n_test=500,
        rpn_post_nms_top_n_test=300,
        box_batch_size_per_image=128,
        anchor_strides=(4, 8, 16, 32),
        # Images are ~5x smaller than LVIS's 800 px, so map boxes to levels 4x earlier
        # (14-96 px objects spread over P2-P4 instead of all landing on P2).
        roi_canonical_scale=56,
        # With that mapping a RoI spans 3.5-7 cells of its level, where the adaptive rule
        # also takes one sample per bin; fixing it at 1 keeps oversized proposals cheap.
        roi_sampling_ratio=1,
    ),
}
PRESETS["r101_fpn"] = replace(PRESETS["r50_fpn"], backbone="resnet101_fpn")

ANCHOR_LAYOUTS = ("torchvision", "mmdet")
BOX_HEAD_INITS = ("torchvision", "xavier")

#: The reference's value of every setting :func:`build_detector` can switch (mmdetection
#: 2.8 + mmcv 1.2.x with ``configs/_base_/models/faster_rcnn_r50_fpn.py``); the defaults
#: of :func:`build_detector` are torchvision's.
REFERENCE_SETTINGS: dict[str, object] = {
    "roi_align_aligned": True,  # mmcv RoIAlign's default
    "backbone_norm": "norm_eval",  # ResNet(norm_eval=True, frozen_stages=1)
    "rpn_box_loss": "l1",  # RPNHead loss_bbox=L1Loss
    "box_head_init": "xavier",  # ConvFCBBoxHead.init_weights: xavier-uniform shared FCs
    "fpn_init": "xavier",  # FPN.init_weights: xavier-uniform convs
    "anchors": "mmdet",  # AnchorGenerator: exact base anchors, fixed strides
}


def build_detector(
    *,
    preset: str,
    num_classes: int,
    loss: ClassificationLoss,
    min_size: Optional[SizeSpec] = None,
    max_size: Optional[int] = None,
    pretrained_backbone: Optional[str] = None,
    trainable_backbone_layers: Optional[int] = None,
    detections_per_img: int = 300,
    score_thresh: float = 1e-4,
    nms_thresh: float = 0.5,
    rpn_pre_nms_top_n_train: Optional[int] = None,
    rpn_post_nms_top_n_train: Optional[int] = None,
    rpn_pre_nms_top_n_test: Optional[int] = None,
    rpn_post_nms_top_n_test: Optional[int] = None,
    box_batch_size_per_image: Optional[int] = None,
    box_positive_fraction: float = 0.25,
    class_agnostic_bbox: bool = False,
    roi_align_aligned: bool = False,
    backbone_norm: Optional[str] = None,
    rpn_box_loss: str = "smooth_l1",
    box_head_init: str = "torchvision",
    fpn_init: str = "torchvision",
    anchors: str = "torchvision",
) -> FasterRCNN:
    """Build a Faster R-CNN whose RoI heads train with ``loss``.

    Args:
        preset: a key of :data:`PRESETS`.
        num_classes: foreground classes ``C``; target labels are ``1..C`` (0 = background).
        loss: the classification loss (its ``num_classes`` must equal ``num_classes``).
            ``loss.use_sigmoid`` picks the predictor's bias initialisation.
        min_size: shorter side; an int, or a tuple to draw from in training (the last
            entry is used at test). ``None``: the preset's.
        max_size: longer-side cap. ``None``: the preset's.
        pretrained_backbone: ``"imagenet"``, a local state-dict path, or ``None``
            (see :func:`~bacl.models.backbones.build_backbone`).
        trainable_backbone_layers: see :func:`~bacl.models.backbones.build_backbone`.
        detections_per_img, score_thresh, nms_thresh: test-time postprocessing
            (LVIS: 300, 1e-4, 0.5).
        rpn_*_top_n_*: RPN proposals kept before NMS (per level) and after NMS (per
            image); ``None``: the preset's.
        box_batch_size_per_image, box_positive_fraction: RoI sampling.
        class_agnostic_bbox: one box regressor shared by all classes.
        roi_align_aligned: RoIAlign with ``aligned=True`` (mmcv's default, the
            reference's) instead of torchvision's ``aligned=False``.
        backbone_norm: ResNet BatchNorm, ``"frozen"``, ``"norm_eval"`` (the reference's)
            or ``"train"``; ``None``: frozen with pretrained weights, train without (see
            :func:`~bacl.models.backbones.build_backbone`).
        rpn_box_loss: ``"smooth_l1"`` (torchvision's, beta 1/9) or ``"l1"`` (the
            reference's); both summed over sampled positives / sampled anchors.
        box_head_init: the two shared FCs: ``"torchvision"`` (``nn.Linear``'s default)
            or ``"xavier"`` (xavier-uniform weights, zero biases; the reference's).
        fpn_init: FPN convolutions, ``"torchvision"`` or ``"xavier"`` (the reference's).
        anchors: ``"torchvision"`` (base anchors rounded, strides inferred from the
            feature sizes) or ``"mmdet"`` (exact base anchors at the preset's fixed
            strides: mmdetection 2.x's, which a converted reference checkpoint needs).

    :data:`REFERENCE_SETTINGS` lists the reference's value of the last six arguments.

    Returns a torchvision ``FasterRCNN``; in training ``model(images, targets)`` returns
    ``{"loss_objectness", "loss_rpn_box_reg", "loss_cls", "loss_box_reg", ...}``, in eval
    ``model(images)`` returns ``[{"boxes", "labels" in 1..C, "scores"}]``.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; known: {sorted(PRESETS)}")
    if loss.num_classes != num_classes:
        raise ValueError(f"loss has {loss.num_classes} classes, detector {num_classes}")
    _check_choice("backbone_norm", backbone_norm, (None, *BACKBONE_NORMS))
    _check_choice("rpn_box_loss", rpn_box_loss, RPN_BOX_LOSSES)
    _check_choice("box_head_init", box_head_init, BOX_HEAD_INITS)
    _check_choice("fpn_init", fpn_init, FPN_INITS)
    _check_choice("anchors", anchors, ANCHOR_LAYOUTS)
    p = PRESETS[preset]

    def pick(value, default):
        return default if value is None else value

    backbone = build_backbone(
        name=p.backbone, pretrained=pretrained_backbone, trainable_layers=trainable_backbone_layers,
        norm=backbone_norm, fpn_init=fpn_init,
    )
    aspect_ratios = ((0.5, 1.0, 2.0),) * len(p.anchor_sizes)
    if anchors == "mmdet":
        anchor_generator: AnchorGenerator = FixedStrideAnchorGenerator(
            sizes=p.anchor_sizes, aspect_ratios=aspect_ratios, strides=p.anchor_strides
        )
    else:
        anchor_generator = AnchorGenerator(p.anchor_sizes, aspect_ratios)
    featmap_names = [str(i) for i in range(4)]
    if roi_align_aligned:
        box_roi_pool: MultiScaleRoIAlign = AlignedMultiScaleRoIAlign(
            featmap_names=featmap_names, output_size=7, sampling_ratio=p.roi_sampling_ratio,
            aligned=True, canonical_scale=p.roi_canonical_scale,
        )
    else:
        box_roi_pool = MultiScaleRoIAlign(
            featmap_names=featmap_names,
            output_size=7,
            sampling_ratio=p.roi_sampling_ratio,
            canonical_scale=p.roi_canonical_scale,
        )
    box_head = TwoMLPHead(backbone.out_channels * 7 * 7, p.representation_size)
    if box_head_init == "xavier":
        for fc in (box_head.fc6, box_head.fc7):
            nn.init.xavier_uniform_(fc.weight)
            nn.init.zeros_(fc.bias)
    box_predictor = BoxPredictor.for_loss(
        loss, in_channels=p.representation_size, class_agnostic_bbox=class_agnostic_bbox
    )
    model = FasterRCNN(
        backbone,
        min_size=pick(min_size, p.min_size),
        max_size=pick(max_size, p.max_size),
        rpn_anchor_generator=anchor_generator,
        rpn_pre_nms_top_n_train=pick(rpn_pre_nms_top_n_train, p.rpn_pre_nms_top_n_train),
        rpn_post_nms_top_n_train=pick(rpn_post_nms_top_n_train, p.rpn_post_nms_top_n_train),
        rpn_pre_nms_top_n_test=pick(rpn_pre_nms_top_n_test, p.rpn_pre_nms_top_n_test),
        rpn_post_nms_top_n_test=pick(rpn_post_nms_top_n_test, p.rpn_post_nms_top_n_test),
        box_roi_pool=box_roi_pool,
        box_head=box_head,
        box_predictor=box_predictor,
    )
    # FasterRCNN builds a stock RoIHeads around the parts; swap it for ours, same parts.
    model.roi_heads = BACLRoIHeads(
        box_roi_pool=box_roi_pool,
        box_head=box_head,
        box_predictor=box_predictor,
        loss=loss,
        batch_size_per_image=pick(box_batch_size_per_image, p.box_batch_size_per_image),
        positive_fraction=box_positive_fraction,
        score_thresh=score_thresh,
        nms_thresh=nms_thresh,
        detections_per_img=detections_per_img,
    )
    if rpn_box_loss != "smooth_l1":
        stock = model.rpn
        model.rpn = BoxLossRegionProposalNetwork(
            stock.anchor_generator,
            stock.head,
            fg_iou_thresh=stock.proposal_matcher.high_threshold,
            bg_iou_thresh=stock.proposal_matcher.low_threshold,
            batch_size_per_image=stock.fg_bg_sampler.batch_size_per_image,
            positive_fraction=stock.fg_bg_sampler.positive_fraction,
            pre_nms_top_n=dict(stock._pre_nms_top_n),
            post_nms_top_n=dict(stock._post_nms_top_n),
            nms_thresh=stock.nms_thresh,
            score_thresh=stock.score_thresh,
            box_loss=rpn_box_loss,
        )
    return model


def _check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"unknown {name} {value!r}; known: {[c for c in choices if c is not None]}")
