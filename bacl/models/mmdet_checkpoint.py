"""Convert an mmdetection 2.x Faster R-CNN R50/R101-FPN checkpoint (the reference's
released BACL and baseline models) into this project's checkpoint format.

mmdetection 2.8 names the tensors after its modules (``mmdet/models/backbones/resnet.py``,
``necks/fpn.py``, ``dense_heads/rpn_head.py``, ``roi_heads/bbox_heads/convfc_bbox_head.py``
and, for BACL, ``fhm_convfc_bbox_head.py`` + ``losses/fcbl.py``); :func:`mmdet_key_map`
lists every tensor of such a model and where it goes here:

===========================================  =============================================
mmdetection 2.x                              this project (torchvision Faster R-CNN)
===========================================  =============================================
``backbone.<resnet key>``                    ``backbone.body.<resnet key>`` (same names)
``neck.lateral_convs.<i>.conv.*``            ``backbone.fpn.inner_blocks.<i>.0.*``
``neck.fpn_convs.<i>.conv.*``                ``backbone.fpn.layer_blocks.<i>.0.*``
``rpn_head.rpn_conv.*``                      ``rpn.head.conv.0.0.*``
``rpn_head.rpn_cls.*`` / ``rpn_reg.*``       ``rpn.head.cls_logits.*`` / ``bbox_pred.*``
``roi_head.bbox_head.shared_fcs.0/1.*``      ``roi_heads.box_head.fc6/fc7.*``
``roi_head.bbox_head.fc_cls.*``              ``roi_heads.box_predictor.cls_score.*``
``roi_head.bbox_head.fc_reg.*``              ``roi_heads.box_predictor.bbox_pred.*``
``...loss_cls.cm_numerator`` / ``num_gt``    ``roi_heads.classification_loss.cm_num`` / ``num_gt``
===========================================  =============================================

No tensor is reordered: both frameworks put the background class last in ``fc_cls``
(``C + 1`` outputs, for the sigmoid BACL head and the softmax baseline alike), lay out
``fc_reg`` as ``(dx, dy, dw, dh)`` per class (or 4 shared values when class-agnostic),
flatten RoI features channel-major, and order the RPN's outputs anchor-within-cell with
the same ratio order (see :mod:`bacl.models.anchors`, and
:mod:`bacl.models.mmdet_config` for the settings checked against the checkpoint's
configuration). FHM's running statistics (``feature_prototype``, ``feature_variance``,
``feature_used``) are training state that inference never reads and this project's
classifier stage restarts from zero, so they are dropped by name; every other key must
be mapped, and every tensor of the target model must come from the checkpoint.

Checkpoints are pickles. They are read with ``torch.load(weights_only=True)``, which only
rebuilds tensors and plain containers; when ``meta`` holds numpy scalars or arrays (as
mmcv's hooks may write), the load is retried with numpy's array and scalar constructors
(and nothing else) allowed. No code in a checkpoint is run.
"""

from __future__ import annotations

import hashlib
import importlib
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from ..checkpoint import save_checkpoint
from ..file_hash import sha256_of
from ..errors import BaclError, MissingFileError
from .mmdet_config import MMDetConfigError, check_detector_against_config, parse_config_text, resnet_depth

RESNET_BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}
_BN_TENSORS = ("weight", "bias", "running_mean", "running_var")
_COUNTER = "num_batches_tracked"
FCBL_STATISTICS = {
    "roi_head.bbox_head.loss_cls.cm_numerator": "roi_heads.classification_loss.cm_num",
    "roi_head.bbox_head.loss_cls.num_gt": "roi_heads.classification_loss.num_gt",
}
#: Keys of BACL's classifier-stage checkpoints that are dropped on purpose (FHM statistics).
TRAINING_ONLY_KEYS = (
    "roi_head.bbox_head.feature_prototype",
    "roi_head.bbox_head.feature_variance",
    "roi_head.bbox_head.feature_used",
)
#: Categories of each LVIS version (foreground classes of the released models).
LVIS_NUM_CLASSES = {"lvis_v1": 1203, "lvis_v0.5": 1230}


class MMDetCheckpointError(BaclError, ValueError):
    """An mmdetection checkpoint that cannot be read or does not convert; names the file."""


@dataclass(frozen=True)
class MMDetCheckpoint:
    """What an mmdetection checkpoint holds: ``state_dict``, ``meta`` (``{}`` if none) and
    the parsed ``meta["config"]`` (``None`` if absent)."""

    path: Path
    state_dict: dict[str, Tensor]
    meta: dict[str, Any]
    config: Optional[dict[str, Any]]


@dataclass(frozen=True)
class ConversionSummary:
    """What :func:`convert_mmdet_checkpoint` did."""

    source: Path
    destination: Path
    num_classes: int
    class_agnostic_bbox: bool
    depth: int
    tensors: int
    dropped: tuple[str, ...]
    config_checked: bool
    warnings: tuple[str, ...] = field(default_factory=tuple)
    mmdet_version: Optional[str] = None

    def describe(self) -> str:
        lines = [
            f"{self.source} -> {self.destination}: ResNet-{self.depth}-FPN, {self.num_classes} classes, "
            f"{'class-agnostic' if self.class_agnostic_bbox else 'per-class'} box regression, "
            f"{self.tensors} tensors (mmdetection {self.mmdet_version or 'version unknown'})",
            "configuration checked against the model" if self.config_checked
            else "checkpoint has no configuration: checked against mmdetection 2.8's Faster R-CNN defaults",
        ]
        if self.dropped:
            lines.append(f"dropped (training-only): {', '.join(self.dropped)}")
        lines += [f"warning: {w}" for w in self.warnings]
        return "\n".join(lines)


# ---------------------------------------------------------------- reading


def _numpy_globals() -> list[tuple[Any, str]]:
    """numpy's scalar and array constructors under both module spellings (numpy 1 wrote
    ``numpy.core.multiarray``, numpy 2 writes ``numpy._core.multiarray``)."""
    multiarray = None
    for name in ("numpy._core.multiarray", "numpy.core.multiarray"):
        try:
            multiarray = importlib.import_module(name)
            break
        except ImportError:
            continue
    allowed: list[tuple[Any, str]] = [(np.dtype, "numpy.dtype"), (np.ndarray, "numpy.ndarray")]
    if multiarray is not None:
        for prefix in ("numpy.core.multiarray", "numpy._core.multiarray"):
            allowed += [(multiarray.scalar, f"{prefix}.scalar"), (multiarray._reconstruct, f"{prefix}._reconstruct")]
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        allowed += [(getattr(dtypes, n), f"numpy.dtypes.{n}") for n in dir(dtypes) if n.endswith("DType")]
    return allowed


def _unpickler_reason(err: Exception) -> str:
    """The specific part of torch's weights-only error message."""
    match = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\n\n|$)", str(err), re.S)
    return (match.group(1) if match else str(err)).strip()


def _refused(path: Path, reason: str) -> MMDetCheckpointError:
    match = re.search(r"GLOBAL (\S+)", reason)
    what = match.group(1) if match else reason
    return MMDetCheckpointError(f"{path}: refused: the pickle calls {what}, which could run code; only tensors, "
                                f"containers and numpy values are accepted")


def _safe_load(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        reason = _unpickler_reason(err)
    except Exception as err:  # truncated zip, not a torch file
        raise MMDetCheckpointError(f"{path}: cannot read checkpoint ({type(err).__name__}: {err})") from None
    if "Unsupported global" not in reason:
        raise MMDetCheckpointError(f"{path}: cannot read checkpoint ({reason})")
    if not hasattr(torch.serialization, "safe_globals"):  # torch < 2.5
        raise _refused(path, reason)
    try:
        with torch.serialization.safe_globals(_numpy_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        reason = _unpickler_reason(err)
        if "Unsupported global" in reason:
            raise _refused(path, reason) from None
        raise MMDetCheckpointError(f"{path}: cannot read checkpoint ({reason})") from None


def load_mmdet_checkpoint(path: str | Path) -> MMDetCheckpoint:
    """Read an mmdetection checkpoint (``{"state_dict", "meta", ...}`` or a bare state dict)
    safely (see the module docstring). A ``module.`` prefix on every key (a model saved
    inside DistributedDataParallel) is removed. Errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"{path}: mmdetection checkpoint not found")
    raw = _safe_load(path)
    if not isinstance(raw, Mapping):
        raise MMDetCheckpointError(f"{path}: not a checkpoint (a {type(raw).__name__}, not a dict)")
    state = raw.get("state_dict", raw)
    meta = raw.get("meta") if "state_dict" in raw else None
    if not isinstance(state, Mapping) or not state:
        raise MMDetCheckpointError(f"{path}: no state_dict")
    not_tensors = [k for k, v in state.items() if not isinstance(v, Tensor)]
    if not_tensors:
        raise MMDetCheckpointError(f"{path}: state_dict entries that are not tensors: {not_tensors[:5]}")
    state = dict(state)
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    meta = dict(meta) if isinstance(meta, Mapping) else {}
    config_text = meta.get("config")
    try:
        config = parse_config_text(config_text, source=f"{path} (meta config)") if isinstance(config_text, str) else None
    except MMDetConfigError as err:
        raise MMDetCheckpointError(str(err)) from None
    return MMDetCheckpoint(path=path, state_dict=state, meta=meta, config=config)


# ---------------------------------------------------------------- mapping


def mmdet_key_map(*, depth: int, batchnorm_counters: bool = True) -> dict[str, str]:
    """Every tensor of mmdetection 2.x's Faster R-CNN ResNet-``depth``-FPN (4 FPN
    levels + max-pooled P6, Shared2FC box head) -> this project's ``state_dict`` key.

    ``batchnorm_counters``: include BatchNorm's ``num_batches_tracked`` (the target uses
    ``nn.BatchNorm2d``; torchvision's ``FrozenBatchNorm2d`` has none).
    """
    if depth not in RESNET_BLOCKS:
        raise ValueError(f"ResNet depth must be one of {sorted(RESNET_BLOCKS)}, got {depth}")
    bn_tensors = _BN_TENSORS + ((_COUNTER,) if batchnorm_counters else ())
    mapping: dict[str, str] = {}

    def same(src: str, dst: str, names: Sequence[str]) -> None:
        for name in names:
            mapping[f"{src}.{name}"] = f"{dst}.{name}"

    same("backbone.conv1", "backbone.body.conv1", ("weight",))
    same("backbone.bn1", "backbone.body.bn1", bn_tensors)
    for stage, blocks in enumerate(RESNET_BLOCKS[depth], start=1):
        for block in range(blocks):
            src, dst = f"backbone.layer{stage}.{block}", f"backbone.body.layer{stage}.{block}"
            for k in (1, 2, 3):
                same(f"{src}.conv{k}", f"{dst}.conv{k}", ("weight",))
                same(f"{src}.bn{k}", f"{dst}.bn{k}", bn_tensors)
            if block == 0:
                same(f"{src}.downsample.0", f"{dst}.downsample.0", ("weight",))
                same(f"{src}.downsample.1", f"{dst}.downsample.1", bn_tensors)
    for level in range(4):
        same(f"neck.lateral_convs.{level}.conv", f"backbone.fpn.inner_blocks.{level}.0", ("weight", "bias"))
        same(f"neck.fpn_convs.{level}.conv", f"backbone.fpn.layer_blocks.{level}.0", ("weight", "bias"))
    same_layers = {
        "rpn_head.rpn_conv": "rpn.head.conv.0.0",
        "rpn_head.rpn_cls": "rpn.head.cls_logits",
        "rpn_head.rpn_reg": "rpn.head.bbox_pred",
        "roi_head.bbox_head.shared_fcs.0": "roi_heads.box_head.fc6",
        "roi_head.bbox_head.shared_fcs.1": "roi_heads.box_head.fc7",
        "roi_head.bbox_head.fc_cls": "roi_heads.box_predictor.cls_score",
        "roi_head.bbox_head.fc_reg": "roi_heads.box_predictor.bbox_pred",
    }
    for src, dst in same_layers.items():
        same(src, dst, ("weight", "bias"))
    return mapping


def checkpoint_depth(state: Mapping[str, Tensor], *, source: str = "state dict") -> int:
    """ResNet depth of an mmdetection state dict, from the number of blocks in ``layer3``."""
    blocks = {k.split(".")[2] for k in state if k.startswith("backbone.layer3.")}
    for depth, counts in RESNET_BLOCKS.items():
        if len(blocks) == counts[2]:
            return depth
    raise MMDetCheckpointError(f"{source}: not a ResNet-50/101 checkpoint (backbone.layer3 has {len(blocks)} "
                               f"blocks; 6 or 23 expected)")


def convert_mmdet_state_dict(
    state: Mapping[str, Tensor],
    *,
    num_classes: int,
    class_agnostic_bbox: bool,
    depth: Optional[int] = None,
    batchnorm_counters: bool = True,
    source: str = "state dict",
) -> dict[str, Tensor]:
    """Rename an mmdetection 2.x Faster R-CNN state dict to this project's keys.

    Args:
        state: mmdetection's ``state_dict`` (``backbone.*``, ``neck.*``, ``rpn_head.*``,
            ``roi_head.*``).
        num_classes: ``C``; ``fc_cls`` must have ``C + 1`` rows (background last) and
            ``fc_reg`` ``4C`` (or 4 with ``class_agnostic_bbox``).
        class_agnostic_bbox: whether the box regression is shared by all classes.
        depth: 50 or 101; ``None``: read from ``state``.
        batchnorm_counters: keep ``num_batches_tracked`` (see :func:`mmdet_key_map`);
            without, they are dropped.
        source: what to name in errors.

    Returns the renamed tensors (the same tensor objects; FCBL's statistics
    ``cm_numerator (C, C)`` and ``num_gt (C,)`` included when present). Raises
    :class:`MMDetCheckpointError` naming every key that is neither mapped nor in
    :data:`TRAINING_ONLY_KEYS`, every key of the architecture that is missing, and
    classifier shapes that do not fit ``num_classes``.
    """
    if depth is None:
        depth = checkpoint_depth(state, source=source)
    mapping = mmdet_key_map(depth=depth, batchnorm_counters=batchnorm_counters)
    ignored = set(TRAINING_ONLY_KEYS)
    if not batchnorm_counters:
        ignored |= {k for k in state if k.startswith("backbone.") and k.endswith(f".{_COUNTER}")}
    unmapped = sorted(k for k in state if k not in mapping and k not in FCBL_STATISTICS and k not in ignored)
    missing = [k for k in mapping if k not in state]
    problems = []
    if unmapped:
        problems.append(f"{len(unmapped)} keys not part of a Faster R-CNN ResNet-{depth}-FPN: {unmapped[:10]}")
    if missing:
        problems.append(f"{len(missing)} keys missing: {missing[:10]}")
    statistics = [k for k in FCBL_STATISTICS if k in state]
    if len(statistics) == 1:
        problems.append(f"FCBL statistics incomplete: only {statistics[0]}")
    if problems:
        raise MMDetCheckpointError(f"{source}: not an mmdetection Faster R-CNN checkpoint of this layout: "
                                   + "; ".join(problems))

    expected = {
        "roi_head.bbox_head.fc_cls.weight": num_classes + 1,
        "roi_head.bbox_head.fc_reg.weight": 4 if class_agnostic_bbox else 4 * num_classes,
    }
    for key, rows in expected.items():
        if state[key].shape[0] != rows:
            raise MMDetCheckpointError(
                f"{source}: {key} has {state[key].shape[0]} rows, expected {rows} for {num_classes} classes "
                f"({'class-agnostic' if class_agnostic_bbox else 'per-class'} regression, background last)"
            )
    if statistics:
        cm, counts = (state[k] for k in FCBL_STATISTICS)
        if tuple(cm.shape) != (num_classes, num_classes) or tuple(counts.shape) != (num_classes,):
            raise MMDetCheckpointError(f"{source}: FCBL statistics of shape {tuple(cm.shape)} and "
                                       f"{tuple(counts.shape)} for {num_classes} classes")

    converted = {dst: state[src] for src, dst in mapping.items()}
    converted.update({dst: state[src] for src, dst in FCBL_STATISTICS.items() if src in state})
    return converted


# ---------------------------------------------------------------- whole checkpoints


def _default_config(*, depth: int, num_classes: int, class_agnostic_bbox: bool, use_sigmoid: bool) -> dict[str, Any]:
    """mmdetection 2.8's ``faster_rcnn_r50_fpn`` model settings that change what the
    weights compute, for checkpoints without a stored configuration."""
    return {"model": {
        "type": "FasterRCNN",
        "backbone": {"type": "ResNet", "depth": depth},
        "neck": {"type": "FPN", "in_channels": [256, 512, 1024, 2048], "out_channels": 256, "num_outs": 5},
        "rpn_head": {
            "type": "RPNHead", "feat_channels": 256, "loss_cls": {"use_sigmoid": True},
            "anchor_generator": {"type": "AnchorGenerator", "scales": [8], "ratios": [0.5, 1.0, 2.0],
                                 "strides": [4, 8, 16, 32, 64]},
            "bbox_coder": {"type": "DeltaXYWHBBoxCoder", "target_means": [0.0] * 4, "target_stds": [1.0] * 4},
        },
        "roi_head": {
            "bbox_roi_extractor": {"type": "SingleRoIExtractor", "featmap_strides": [4, 8, 16, 32],
                                   "roi_layer": {"type": "RoIAlign", "output_size": 7, "sampling_ratio": 0}},
            "bbox_head": {"type": "Shared2FCBBoxHead", "fc_out_channels": 1024, "roi_feat_size": 7,
                          "num_classes": num_classes, "reg_class_agnostic": class_agnostic_bbox,
                          "loss_cls": {"use_sigmoid": use_sigmoid},
                          "bbox_coder": {"type": "DeltaXYWHBBoxCoder", "target_means": [0.0] * 4,
                                         "target_stds": [0.1, 0.1, 0.2, 0.2]}},
        },
    }}


def convert_mmdet_checkpoint(
    source: str | Path,
    destination: str | Path,
    *,
    build_model: Callable[[int], nn.Module],
    params: Mapping[str, Any],
    stage: str,
    category_names: Optional[Sequence[str]] = None,
) -> ConversionSummary:
    """Convert an mmdetection 2.x checkpoint into a checkpoint ``bacl evaluate`` loads.

    Args:
        source: the mmdetection ``.pth`` file.
        destination: where to write this project's checkpoint (atomically).
        build_model: ``num_classes -> detector``, building the model exactly as
            ``bacl evaluate`` will from ``params`` and ``stage`` (its loss decides the
            scores: sigmoid for BACL, softmax for the baseline).
        params: the resolved parameters (``Params.to_dict()``) saved with the weights.
        stage: the stage whose loss the model uses (``"classifier"`` for BACL's
            released models, ``"baseline"`` for the softmax baselines).
        category_names: the dataset's category names ordered by id; when given they must
            match the checkpoint's ``meta["CLASSES"]`` (if stored) and its class count.

    Checks, each failing with :class:`MMDetCheckpointError` naming the file: the class
    count against ``params["data"]["dataset"]`` (LVIS v1: 1203, v0.5: 1230) and the
    category names; the model against the checkpoint's configuration (or mmdetection's
    defaults when none is stored; see
    :func:`~bacl.models.mmdet_config.check_detector_against_config`); every key both ways
    and every shape. Writes ``{"model", "params", "num_classes", "stage",
    "converted_from"}`` and returns a summary.
    """
    ckpt = load_mmdet_checkpoint(source)
    src = str(ckpt.path)
    state = ckpt.state_dict
    for key in ("roi_head.bbox_head.fc_cls.weight", "roi_head.bbox_head.fc_reg.weight"):
        if key not in state:
            raise MMDetCheckpointError(f"{src}: no {key}: not an mmdetection Faster R-CNN checkpoint")
    num_classes = int(state["roi_head.bbox_head.fc_cls.weight"].shape[0]) - 1
    regression_rows = int(state["roi_head.bbox_head.fc_reg.weight"].shape[0])
    if regression_rows not in (4, 4 * num_classes):
        raise MMDetCheckpointError(f"{src}: fc_reg has {regression_rows} rows for {num_classes} classes "
                                   f"(expected 4 or {4 * num_classes})")
    class_agnostic = regression_rows == 4 and num_classes != 1
    if num_classes == 1 and ckpt.config is not None:
        class_agnostic = bool(ckpt.config.get("model", {}).get("roi_head", {}).get("bbox_head", {})
                              .get("reg_class_agnostic", False))
    depth = checkpoint_depth(state, source=src)

    dataset = (params.get("data") or {}).get("dataset")
    if dataset in LVIS_NUM_CLASSES and LVIS_NUM_CLASSES[dataset] != num_classes:
        raise MMDetCheckpointError(f"{src}: the checkpoint has {num_classes} classes, data.dataset {dataset!r} "
                                   f"has {LVIS_NUM_CLASSES[dataset]}")
    _check_category_names(ckpt, category_names, num_classes)

    model = build_model(num_classes)
    ours_depth = resnet_depth(model)
    if ours_depth != depth:
        raise MMDetCheckpointError(f"{src}: the checkpoint is a ResNet-{depth}; the parameters build "
                                   f"{'ResNet-%d' % ours_depth if ours_depth else 'no ResNet'} (model.preset)")
    warnings: list[str] = []
    config = ckpt.config
    if config is None or "model" not in config:
        warnings.append("no readable configuration in the checkpoint: checked against mmdetection 2.8's "
                        "Faster R-CNN defaults (mmcv RoIAlign aligned=True)")
        config = _default_config(depth=depth, num_classes=num_classes, class_agnostic_bbox=class_agnostic,
                                 use_sigmoid=bool(model.roi_heads.classification_loss.use_sigmoid))
    try:
        warnings += check_detector_against_config(model, config, source=src)
    except MMDetConfigError as err:
        raise MMDetCheckpointError(str(err)) from None

    target = model.state_dict()
    counters = any(k.startswith("backbone.body.") and k.endswith(_COUNTER) for k in target)
    converted = convert_mmdet_state_dict(state, num_classes=num_classes, class_agnostic_bbox=class_agnostic,
                                         depth=depth, batchnorm_counters=counters, source=src)
    _check_fits(converted, target, source=src)
    weights = {k: converted[k].to(dtype=target[k].dtype).contiguous() for k in target}
    model.load_state_dict(weights, strict=True)

    dropped = tuple(k for k in TRAINING_ONLY_KEYS if k in state)
    meta = ckpt.meta
    provenance = {
        "format": "mmdetection",
        "file": ckpt.path.name,
        "sha256": sha256_of(ckpt.path),
        "mmdet_version": str(meta.get("mmdet_version")) if meta.get("mmdet_version") is not None else None,
        "exp_name": str(meta.get("exp_name")) if meta.get("exp_name") is not None else None,
        "epoch": int(meta["epoch"]) if isinstance(meta.get("epoch"), int) else None,
        "config": meta.get("config") if isinstance(meta.get("config"), str) else None,
        "dropped": list(dropped),
    }
    save_checkpoint(destination, {"model": weights, "params": dict(params), "num_classes": num_classes,
                                  "stage": stage, "converted_from": provenance})
    summary = ConversionSummary(
        source=ckpt.path, destination=Path(destination), num_classes=num_classes,
        class_agnostic_bbox=class_agnostic, depth=depth, tensors=len(weights), dropped=dropped,
        config_checked=ckpt.config is not None and "model" in ckpt.config, warnings=tuple(warnings),
        mmdet_version=provenance["mmdet_version"],
    )
    return summary


def _check_category_names(ckpt: MMDetCheckpoint, names: Optional[Sequence[str]], num_classes: int) -> None:
    if names is None:
        return
    names = list(names)
    if len(names) != num_classes:
        raise MMDetCheckpointError(f"{ckpt.path}: {num_classes} classes in the checkpoint, {len(names)} categories "
                                   f"in the dataset")
    stored = ckpt.meta.get("CLASSES")
    if isinstance(stored, (list, tuple)):
        stored = [str(n) for n in stored]
        if len(stored) != num_classes:
            raise MMDetCheckpointError(f"{ckpt.path}: meta CLASSES lists {len(stored)} names for {num_classes} "
                                       f"classes")
        for index, (theirs, ours) in enumerate(zip(stored, names)):
            if theirs != ours:
                raise MMDetCheckpointError(f"{ckpt.path}: class {index} is {theirs!r} in the checkpoint and "
                                           f"{ours!r} in the dataset (categories sorted by id)")


def _check_fits(converted: Mapping[str, Tensor], target: Mapping[str, Tensor], *, source: str) -> None:
    """Every target key present with its shape, nothing extra; hints for the usual causes."""
    missing = [k for k in target if k not in converted]
    extra = [k for k in converted if k not in target]
    shapes = [f"{k}: checkpoint {tuple(converted[k].shape)}, model {tuple(target[k].shape)}"
              for k in target if k in converted and converted[k].shape != target[k].shape]
    if not (missing or extra or shapes):
        return
    problems = []
    if missing:
        hint = (" (the model's loss keeps statistics the checkpoint does not have: convert it for a stage whose "
                "loss is the checkpoint's, e.g. bce or softmax_ce)"
                if all(k.startswith("roi_heads.classification_loss.") for k in missing) else "")
        problems.append(f"{len(missing)} model tensors missing from the checkpoint: {missing[:8]}{hint}")
    if extra:
        hint = (" (the checkpoint carries FCBL statistics: convert it for the classifier stage, loss fcbl)"
                if all(k.startswith("roi_heads.classification_loss.") for k in extra) else "")
        problems.append(f"{len(extra)} checkpoint tensors the model does not have: {extra[:8]}{hint}")
    if shapes:
        problems.append(f"{len(shapes)} shapes differ: {shapes[:5]}")
    raise MMDetCheckpointError(f"{source}: the converted weights do not fit the model: " + "; ".join(problems))
