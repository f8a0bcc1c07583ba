"""mmdetection 2.8 checkpoints as the reference writes them, for the converter's tests.

Written from the reference's module definitions (mmdetection 2.8 as forked by BACL), not
from the converter's mapping.
"""

from collections import OrderedDict

import torch

from bacl.losses import build_loss
from bacl.models.detector import REFERENCE_SETTINGS, build_detector

C = 5


# ---------------------------------------------------------------- mmdetection 2.8's layout, written out
# Shapes follow the reference's module definitions: ResNet (pytorch style, Bottleneck with
# expansion 4, a downsample on the first block of each stage), FPN (ConvModule without norm,
# so ``.conv`` with a bias), RPNHead (rpn_conv 3x3, rpn_cls with one sigmoid per anchor,
# rpn_reg), Shared2FCBBoxHead (shared_fcs, fc_cls with C + 1 outputs, fc_reg with 4C),
# FCBL's buffers and FhmConvFCBBoxHead's statistics.


def mmdet_faster_rcnn_shapes(*, blocks=(3, 4, 6, 3), num_classes=C, agnostic=False, fcbl=False, fhm=False):
    shapes = OrderedDict()

    def bn(prefix, channels):
        for name in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{prefix}.{name}"] = (channels,)
        shapes[f"{prefix}.num_batches_tracked"] = ()

    shapes["backbone.conv1.weight"] = (64, 3, 7, 7)
    bn("backbone.bn1", 64)
    inplanes = 64
    for stage, (planes, count) in enumerate(zip((64, 128, 256, 512), blocks), start=1):
        for b in range(count):
            p = f"backbone.layer{stage}.{b}"
            shapes[f"{p}.conv1.weight"] = (planes, inplanes, 1, 1)
            bn(f"{p}.bn1", planes)
            shapes[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
            bn(f"{p}.bn2", planes)
            shapes[f"{p}.conv3.weight"] = (planes * 4, planes, 1, 1)
            bn(f"{p}.bn3", planes * 4)
            if b == 0:
                shapes[f"{p}.downsample.0.weight"] = (planes * 4, inplanes, 1, 1)
                bn(f"{p}.downsample.1", planes * 4)
            inplanes = planes * 4
    for i, c_in in enumerate((256, 512, 1024, 2048)):
        shapes[f"neck.lateral_convs.{i}.conv.weight"] = (256, c_in, 1, 1)
        shapes[f"neck.lateral_convs.{i}.conv.bias"] = (256,)
        shapes[f"neck.fpn_convs.{i}.conv.weight"] = (256, 256, 3, 3)
        shapes[f"neck.fpn_convs.{i}.conv.bias"] = (256,)
    for name, out, k in (("rpn_conv", 256, 3), ("rpn_cls", 3, 1), ("rpn_reg", 12, 1)):
        shapes[f"rpn_head.{name}.weight"] = (out, 256, k, k)
        shapes[f"rpn_head.{name}.bias"] = (out,)
    head = "roi_head.bbox_head"
    for name, out, inp in (("shared_fcs.0", 1024, 256 * 7 * 7), ("shared_fcs.1", 1024, 1024),
                           ("fc_cls", num_classes + 1, 1024), ("fc_reg", 4 if agnostic else 4 * num_classes, 1024)):
        shapes[f"{head}.{name}.weight"] = (out, inp)
        shapes[f"{head}.{name}.bias"] = (out,)
    if fcbl:
        shapes[f"{head}.loss_cls.cm_numerator"] = (num_classes, num_classes)
        shapes[f"{head}.loss_cls.num_gt"] = (num_classes,)
    if fhm:
        shapes[f"{head}.feature_prototype"] = (num_classes, 1024)
        shapes[f"{head}.feature_variance"] = (num_classes, 1024)
        shapes[f"{head}.feature_used"] = (num_classes,)
    return shapes


def random_state(shapes, seed=0):
    g = torch.Generator().manual_seed(seed)
    state = OrderedDict()
    for key, shape in shapes.items():
        if key.endswith("num_batches_tracked"):
            state[key] = torch.randint(0, 10**6, (), generator=g)
        elif key.endswith("running_var"):
            state[key] = torch.rand(shape, generator=g) + 0.5
        else:
            state[key] = torch.randn(shape, generator=g) * 0.01
    return state


def reference_model(loss="fcbl", num_classes=C, **overrides):
    torch.manual_seed(0)
    settings = {**REFERENCE_SETTINGS, **overrides}
    return build_detector(preset="r50_fpn", num_classes=num_classes, loss=build_loss(loss, num_classes=num_classes),
                          min_size=64, max_size=96, **settings)


# mmcv's Config.pretty_text of the reference's BACL classifier config (abridged to what is checked).
BACL_CONFIG = """model = dict(
    type='FasterRCNN',
    pretrained='torchvision://resnet50',
    backbone=dict(
        type='ResNet',
        depth=50,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        frozen_stages=1,
        norm_cfg=dict(type='BN', requires_grad=True),
        norm_eval=True,
        style='pytorch'),
    neck=dict(
        type='FPN',
        in_channels=[256, 512, 1024, 2048],
        out_channels=256,
        num_outs=5),
    rpn_head=dict(
        type='RPNHead',
        in_channels=256,
        feat_channels=256,
        anchor_generator=dict(
            type='AnchorGenerator',
            scales=[8],
            ratios=[0.5, 1.0, 2.0],
            strides=[4, 8, 16, 32, 64]),
        bbox_coder=dict(
            type='DeltaXYWHBBoxCoder',
            target_means=[0.0, 0.0, 0.0, 0.0],
            target_stds=[1.0, 1.0, 1.0, 1.0]),
        loss_cls=dict(
            type='CrossEntropyLoss', use_sigmoid=True, loss_weight=1.0),
        loss_bbox=dict(type='L1Loss', loss_weight=1.0)),
    roi_head=dict(
        type='FhmRoIHead',
        bbox_roi_extractor=dict(
            type='SingleRoIExtractor',
            roi_layer=dict(type='RoIAlign', output_size=7, sampling_ratio=0),
            out_channels=256,
            featmap_strides=[4, 8, 16, 32]),
        bbox_head=dict(
            type='FhmShared2FCBBoxHead',
            in_channels=256,
            fc_out_channels=1024,
            roi_feat_size=7,
            num_classes=%(C)d,
            bbox_coder=dict(
                type='DeltaXYWHBBoxCoder',
                target_means=[0.0, 0.0, 0.0, 0.0],
                target_stds=[0.1, 0.1, 0.2, 0.2]),
            reg_class_agnostic=False,
            loss_cls=dict(
                type='FCBL',
                use_sigmoid=True,
                loss_weight=1.0,
                num_classes=%(C)d,
                alpha=0.85,
                prob_thr=0.7),
            loss_bbox=dict(type='L1Loss', loss_weight=1.0),
            fhm_cfg=dict(
                decay_ratio=0.1, sampled_num_classes=8,
                sampled_num_features=12))),
    train_cfg=dict(rpn_proposal=dict(nms_post=2000, max_num=2000)),
    test_cfg=dict(
        rpn=dict(
            nms_across_levels=False,
            nms_pre=1000,
            nms_post=1000,
            max_num=1000,
            nms_thr=0.7,
            min_bbox_size=0),
        rcnn=dict(
            score_thr=0.0001,
            nms=dict(type='nms', iou_threshold=0.5),
            max_per_img=300)))
img_norm_cfg = dict(
    mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375], to_rgb=True)
custom_hooks = [dict(type='ReweightHook', step=1)]
selectp = 1
""" % {"C": C}


def save_mmdet_checkpoint(path, state, *, config=BACL_CONFIG, classes=None, extra_meta=None):
    meta = {"mmdet_version": "2.8.0abcdef", "epoch": 12, "iter": 1000, "exp_name": "bacl_classifier.py",
            "CLASSES": tuple(classes or [f"cat{i}" for i in range(C)])}
    if config is not None:
        meta["config"] = config
    meta.update(extra_meta or {})
    torch.save({"meta": meta, "state_dict": state, "optimizer": {"state": {}, "param_groups": []}}, path)
    return path
