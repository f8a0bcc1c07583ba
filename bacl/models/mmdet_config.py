"""The configuration an mmdetection 2.x checkpoint carries, read without running it, and
checked against a detector built here.

mmdetection's ``tools/train.py`` stores the merged configuration as Python source
(mmcv's ``Config.pretty_text``) in ``checkpoint["meta"]["config"]``: top-level
assignments such as ``model = dict(type='FasterRCNN', backbone=dict(...), ...)``.
:func:`parse_config_text` reads it with :mod:`ast` and evaluates only literals and
``dict(...)`` calls with keyword arguments; any other statement or value is skipped,
so nothing in the text is ever executed.

:func:`check_detector_against_config` compares that configuration with what a detector
built by :func:`~bacl.models.detector.build_detector` actually does: architecture,
anchors (sizes, ratios and their order, strides, exact or rounded), box-coder weights,
RoIAlign (``aligned``, sampling ratio, level rule), classifier (sigmoid or softmax,
number of classes, class-agnostic regression) and input normalisation. A mismatch in
any of these changes what the converted weights compute, so it is an error; test-time
thresholds and proposal counts, which ``bacl evaluate`` sets from its own parameters,
only give warnings.
"""

from __future__ import annotations

import ast
import math
from typing import Any, Iterable, Optional

from torch import nn
from torchvision.models.detection.anchor_utils import AnchorGenerator

from ..errors import BaclError
from .anchors import FixedStrideAnchorGenerator


class MMDetConfigError(BaclError, ValueError):
    """An mmdetection configuration that cannot be read, or that the detector does not match."""


class _NotLiteral(Exception):
    pass


def parse_config_text(text: str, *, source: str = "config") -> dict[str, Any]:
    """Top-level ``name = <literal>`` assignments of mmcv config source as plain values.

    Literals are numbers, strings, ``True``/``False``/``None``, lists, tuples, dicts with
    literal keys, ``dict(key=value, ...)`` calls and unary minus. Assignments with any
    other value (and every other statement) are skipped. Raises
    :class:`MMDetConfigError` naming ``source`` if the text is not Python.
    """
    try:
        tree = ast.parse(text, filename=source)
    except SyntaxError as err:
        raise MMDetConfigError(f"{source}: the configuration text is not Python ({err})") from None
    values: dict[str, Any] = {}
    for statement in tree.body:
        if not (isinstance(statement, ast.Assign) and len(statement.targets) == 1
                and isinstance(statement.targets[0], ast.Name)):
            continue
        try:
            values[statement.targets[0].id] = _literal(statement.value)
        except _NotLiteral:
            continue
    return values


def _literal(node: ast.AST) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [_literal(e) for e in node.elts]
        return items if isinstance(node, ast.List) else tuple(items)
    if isinstance(node, ast.Dict):
        if any(k is None for k in node.keys):  # ``{**other}``
            raise _NotLiteral
        return {_literal(k): _literal(v) for k, v in zip(node.keys, node.values)}
    if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "dict"
            and not node.args and all(k.arg is not None for k in node.keywords)):
        return {k.arg: _literal(k.value) for k in node.keywords}
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _literal(node.operand)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return -value if isinstance(node.op, ast.USub) else value
    raise _NotLiteral


def _get(config: Any, dotted: str, default: Any = None) -> Any:
    node = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def _close(a: Iterable[float], b: Iterable[float], tol: float = 1e-6) -> bool:
    a, b = [float(x) for x in a], [float(x) for x in b]
    return len(a) == len(b) and all(math.isclose(x, y, rel_tol=tol, abs_tol=tol) for x, y in zip(a, b))


def resnet_depth(model: nn.Module) -> Optional[int]:
    """50 or 101 for a torchvision ResNet trunk (by ``layer3``'s block count), else ``None``."""
    layer3 = getattr(getattr(model.backbone, "body", None), "layer3", None)
    return {6: 50, 23: 101}.get(len(layer3)) if layer3 is not None else None


def check_detector_against_config(model: nn.Module, config: dict[str, Any], *, source: str) -> list[str]:
    """Compare a built detector with a parsed mmdetection 2.x Faster R-CNN configuration.

    Args:
        model: a detector from :func:`~bacl.models.detector.build_detector`.
        config: :func:`parse_config_text`'s output (needs ``model``).
        source: what to name in messages (the checkpoint file).

    Returns the warnings (test-time settings that differ). Raises
    :class:`MMDetConfigError` listing every mismatch that changes the network's output.
    """
    cfg = config.get("model")
    if not isinstance(cfg, dict):
        raise MMDetConfigError(f"{source}: the configuration has no readable 'model' dict")
    errors: list[str] = []
    warnings: list[str] = []

    def expect(ok: bool, what: str, theirs: Any, ours: Any, hint: str = "") -> None:
        if not ok:
            errors.append(f"{what}: checkpoint {theirs!r}, model {ours!r}" + (f" ({hint})" if hint else ""))

    def compare_test(what: str, theirs: Any, ours: Any) -> None:
        if theirs is not None and not math.isclose(float(theirs), float(ours)):
            warnings.append(f"{what}: checkpoint's configuration {theirs!r}, this model {ours!r}")

    expect(cfg.get("type") == "FasterRCNN", "model.type", cfg.get("type"), "FasterRCNN")

    backbone = cfg.get("backbone", {})
    depth = resnet_depth(model)
    expect(backbone.get("type") == "ResNet", "backbone.type", backbone.get("type"), "ResNet")
    expect(backbone.get("depth") == depth, "backbone.depth", backbone.get("depth"), depth,
           "choose the preset of that depth (r50_fpn / r101_fpn)")
    for key, default, wanted in (("style", "pytorch", "pytorch"), ("num_stages", 4, 4),
                                 ("out_indices", (0, 1, 2, 3), (0, 1, 2, 3)), ("deep_stem", False, False),
                                 ("avg_down", False, False), ("dcn", None, None),
                                 ("strides", (1, 2, 2, 2), (1, 2, 2, 2)), ("dilations", (1, 1, 1, 1), (1, 1, 1, 1))):
        value = backbone.get(key, default)
        value = tuple(value) if isinstance(value, list) else value
        expect(value == wanted, f"backbone.{key}", value, wanted)
    norm_type = _get(backbone, "norm_cfg.type", "BN")
    expect(norm_type in ("BN", "SyncBN"), "backbone.norm_cfg.type", norm_type, "BN")

    neck = cfg.get("neck", {})
    anchor_gen = model.rpn.anchor_generator
    num_levels = len(anchor_gen.sizes)
    expect(neck.get("type") == "FPN", "neck.type", neck.get("type"), "FPN")
    expect(list(neck.get("in_channels", [])) == [256, 512, 1024, 2048], "neck.in_channels",
           neck.get("in_channels"), [256, 512, 1024, 2048])
    expect(neck.get("out_channels") == model.backbone.out_channels, "neck.out_channels",
           neck.get("out_channels"), model.backbone.out_channels)
    expect(neck.get("num_outs") == num_levels, "neck.num_outs (levels: P2-P5 + max-pooled P6)",
           neck.get("num_outs"), num_levels)
    for key, default in (("start_level", 0), ("add_extra_convs", False), ("norm_cfg", None)):
        expect(neck.get(key, default) == default, f"neck.{key}", neck.get(key), default)
    expect(_get(neck, "upsample_cfg.mode", "nearest") == "nearest", "neck.upsample_cfg.mode",
           _get(neck, "upsample_cfg.mode"), "nearest")

    rpn = cfg.get("rpn_head", {})
    expect(rpn.get("type") == "RPNHead", "rpn_head.type", rpn.get("type"), "RPNHead")
    expect(rpn.get("feat_channels", 256) == model.backbone.out_channels, "rpn_head.feat_channels",
           rpn.get("feat_channels"), model.backbone.out_channels)
    expect(_get(rpn, "loss_cls.use_sigmoid", False) is True, "rpn_head.loss_cls.use_sigmoid",
           _get(rpn, "loss_cls.use_sigmoid"), True, "this RPN has one sigmoid objectness per anchor")
    errors += _anchor_mismatches(rpn.get("anchor_generator", {}), anchor_gen)
    errors += _coder_mismatches("rpn_head.bbox_coder", rpn.get("bbox_coder", {}), model.rpn.box_coder.weights,
                                default_stds=(1.0, 1.0, 1.0, 1.0))

    roi = cfg.get("roi_head", {})
    extractor = roi.get("bbox_roi_extractor", {})
    layer = extractor.get("roi_layer", {})
    pool = model.roi_heads.box_roi_pool
    expect(extractor.get("type") == "SingleRoIExtractor", "roi_head.bbox_roi_extractor.type",
           extractor.get("type"), "SingleRoIExtractor")
    expect(layer.get("type") == "RoIAlign", "roi_layer.type", layer.get("type"), "RoIAlign")
    output_size = layer.get("output_size", 7)
    output_size = tuple(output_size) if isinstance(output_size, (list, tuple)) else (output_size, output_size)
    expect(output_size == tuple(pool.output_size), "roi_layer.output_size", output_size, tuple(pool.output_size))
    expect(layer.get("sampling_ratio", 0) == pool.sampling_ratio, "roi_layer.sampling_ratio",
           layer.get("sampling_ratio", 0), pool.sampling_ratio)
    aligned_ours = bool(getattr(pool, "aligned", False))
    expect(bool(layer.get("aligned", True)) == aligned_ours, "roi_layer.aligned (mmcv's default: True)",
           bool(layer.get("aligned", True)), aligned_ours, "build with roi_align_aligned=True: model.roi_align_aligned")
    strides = list(extractor.get("featmap_strides", []))
    expect(strides == [4, 8, 16, 32] and len(pool.featmap_names) == 4, "bbox_roi_extractor.featmap_strides",
           strides, "P2-P5 at strides [4, 8, 16, 32]")
    # torchvision's level rule relative to the finest level (P2, log2(4) = 2).
    finest_scale = pool.canonical_scale / 2 ** (pool.canonical_level - 2)
    expect(math.isclose(extractor.get("finest_scale", 56), finest_scale), "bbox_roi_extractor.finest_scale",
           extractor.get("finest_scale", 56), finest_scale)

    head = roi.get("bbox_head", {})
    predictor = model.roi_heads.box_predictor
    num_classes = model.roi_heads.num_classes
    expect(head.get("type") in ("Shared2FCBBoxHead", "FhmShared2FCBBoxHead"), "bbox_head.type", head.get("type"),
           "Shared2FCBBoxHead")
    expect(head.get("roi_feat_size", 7) == pool.output_size[0], "bbox_head.roi_feat_size",
           head.get("roi_feat_size", 7), pool.output_size[0])
    expect(head.get("fc_out_channels", 1024) == model.roi_heads.box_head.fc7.out_features,
           "bbox_head.fc_out_channels", head.get("fc_out_channels", 1024), model.roi_heads.box_head.fc7.out_features)
    expect(head.get("num_classes") == num_classes, "bbox_head.num_classes", head.get("num_classes"), num_classes)
    agnostic_ours = predictor.bbox_pred.out_features == 4
    expect(bool(head.get("reg_class_agnostic", False)) == agnostic_ours, "bbox_head.reg_class_agnostic",
           bool(head.get("reg_class_agnostic", False)), agnostic_ours, "build with class_agnostic_bbox to match")
    expect(not head.get("with_avg_pool", False), "bbox_head.with_avg_pool", head.get("with_avg_pool"), False)
    errors += _coder_mismatches("bbox_head.bbox_coder", head.get("bbox_coder", {}), model.roi_heads.box_coder.weights,
                                default_stds=(0.1, 0.1, 0.2, 0.2))
    # CrossEntropyLoss defaults to softmax; the reference's BCE and FCBL losses to sigmoid.
    use_sigmoid = bool(_get(head, "loss_cls.use_sigmoid", _get(head, "loss_cls.type") in ("BCE", "FCBL")))
    loss = model.roi_heads.classification_loss
    expect(use_sigmoid == bool(loss.use_sigmoid), "bbox_head.loss_cls.use_sigmoid", use_sigmoid,
           bool(loss.use_sigmoid), "scores would be computed the wrong way: choose a stage whose loss matches "
           "(sigmoid: bce / fcbl; softmax: softmax_ce)")

    norm = config.get("img_norm_cfg")
    if isinstance(norm, dict):
        ours_mean = [255.0 * v for v in model.transform.image_mean]
        ours_std = [255.0 * v for v in model.transform.image_std]
        ok = _close(norm.get("mean", []), ours_mean, 1e-4) and _close(norm.get("std", []), ours_std, 1e-4)
        expect(ok and norm.get("to_rgb", False) is True, "img_norm_cfg", norm,
               {"mean": [round(v, 3) for v in ours_mean], "std": [round(v, 3) for v in ours_std], "to_rgb": True})

    test_cfg = cfg.get("test_cfg") or config.get("test_cfg") or {}
    rpn_test = test_cfg.get("rpn", {})
    compare_test("test_cfg.rpn.nms_pre", rpn_test.get("nms_pre"), model.rpn._pre_nms_top_n["testing"])
    compare_test("test_cfg.rpn.nms_post", rpn_test.get("nms_post", rpn_test.get("max_num")),
                 model.rpn._post_nms_top_n["testing"])
    compare_test("test_cfg.rpn.nms_thr", rpn_test.get("nms_thr"), model.rpn.nms_thresh)
    rcnn_test = test_cfg.get("rcnn", {})
    compare_test("test_cfg.rcnn.score_thr", rcnn_test.get("score_thr"), model.roi_heads.score_thresh)
    compare_test("test_cfg.rcnn.nms.iou_threshold", _get(rcnn_test, "nms.iou_threshold"), model.roi_heads.nms_thresh)
    compare_test("test_cfg.rcnn.max_per_img", rcnn_test.get("max_per_img"), model.roi_heads.detections_per_img)
    scale = _test_image_scale(config)
    if scale is not None:
        test_size = getattr(model.transform, "test_size", model.transform.min_size[-1])
        compare_test("test image scale (shorter side)", min(scale), test_size)
        compare_test("test image scale (longer side)", max(scale), model.transform.max_size)

    if errors:
        raise MMDetConfigError(f"{source}: the detector does not match the checkpoint's configuration:\n  - "
                               + "\n  - ".join(errors))
    return warnings


def _anchor_mismatches(anchor_cfg: dict[str, Any], generator: AnchorGenerator) -> list[str]:
    """mmdetection ``AnchorGenerator`` settings against the model's generator."""
    where = "rpn_head.anchor_generator"
    if anchor_cfg.get("type") != "AnchorGenerator":
        return [f"{where}.type: checkpoint {anchor_cfg.get('type')!r}, model 'AnchorGenerator'"]
    if not isinstance(generator, FixedStrideAnchorGenerator):
        return [f"{where}: the model uses torchvision's anchors (base anchors rounded to whole pixels, strides "
                f"inferred from feature sizes: 61 px instead of 64 on P6 of an 800 px image), the checkpoint "
                f"mmdetection's (build with anchors='mmdet': model.anchors)"]
    problems = []
    strides = [int(s if not isinstance(s, (list, tuple)) else s[0]) for s in anchor_cfg.get("strides", [])]
    scales = list(anchor_cfg.get("scales") or [])
    if anchor_cfg.get("octave_base_scale") is not None or len(scales) != 1:
        problems.append(f"{where}: only one anchor scale per level is supported, got scales {scales!r}")
        return problems
    base_sizes = anchor_cfg.get("base_sizes") or strides
    sizes = [(float(b) * float(scales[0]),) for b in base_sizes]
    ours_sizes = [tuple(float(v) for v in level) for level in generator.sizes]
    if sizes != ours_sizes:
        problems.append(f"{where}: anchor sizes per level {sizes}, model {ours_sizes}")
    if strides != list(generator.strides):
        problems.append(f"{where}.strides: checkpoint {strides}, model {list(generator.strides)}")
    ratios = [float(r) for r in anchor_cfg.get("ratios", [])]
    for level, ours in enumerate(generator.aspect_ratios):
        if [float(r) for r in ours] != ratios:
            problems.append(f"{where}.ratios (their order is the RPN's channel order): checkpoint {ratios}, "
                            f"model level {level} {list(ours)}")
            break
    if float(anchor_cfg.get("center_offset", 0.0)) != 0.0 or anchor_cfg.get("centers") is not None:
        problems.append(f"{where}: anchor centres shifted (center_offset "
                        f"{anchor_cfg.get('center_offset')}, centers {anchor_cfg.get('centers')}); the model's are 0")
    return problems


def _coder_mismatches(where: str, coder: dict[str, Any], weights: Iterable[float], *,
                      default_stds: tuple[float, ...]) -> list[str]:
    """mmdetection's ``DeltaXYWHBBoxCoder(target_means, target_stds)`` against torchvision's
    ``BoxCoder(weights)``: equal when the means are 0 and ``weights = 1 / stds``."""
    problems = []
    if coder.get("type", "DeltaXYWHBBoxCoder") != "DeltaXYWHBBoxCoder":
        problems.append(f"{where}.type: checkpoint {coder.get('type')!r}, model 'DeltaXYWHBBoxCoder'")
    means = coder.get("target_means", [0.0] * 4)
    stds = coder.get("target_stds", default_stds)
    if any(float(m) != 0.0 for m in means):
        problems.append(f"{where}.target_means: checkpoint {list(means)}, model [0, 0, 0, 0]")
    inverse = [1.0 / float(w) for w in weights]
    if not _close(stds, inverse):
        problems.append(f"{where}.target_stds: checkpoint {list(stds)}, model 1 / weights = {inverse}")
    return problems


def _test_image_scale(config: dict[str, Any]) -> Optional[tuple[float, float]]:
    """``img_scale`` of the test pipeline's ``MultiScaleFlipAug`` (one scale), if readable."""
    for step in _get(config, "data.test.pipeline", []) or []:
        if isinstance(step, dict) and step.get("type") == "MultiScaleFlipAug":
            scale = step.get("img_scale")
            if isinstance(scale, (list, tuple)) and len(scale) == 2 and all(isinstance(v, (int, float)) for v in scale):
                return float(scale[0]), float(scale[1])
    return None
