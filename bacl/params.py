"""params.yaml -> validated, typed settings.

Every section is a frozen dataclass; :func:`load_params` builds them from a nested
dict (a YAML file plus ``key=value`` overrides) and rejects unknown keys, wrong types
and out-of-range values with a :class:`ParamError` that names the dotted key. Modules
never read ``params.yaml`` themselves: they take keyword arguments, and the engine maps
these settings onto them.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from .errors import BaclError


class ParamError(BaclError, ValueError):
    """A wrong parameter: the message starts with the source and the dotted key."""


def _check(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ParamError(f"{key}: {message}")


@dataclass(frozen=True)
class SyntheticParams:
    """The embedded LVIS-style long-tailed benchmark (``bacl data``)."""

    seed: int = 0
    num_train_images: int = 1200
    num_val_images: int = 300
    image_size: int = 160

    def validate(self, key: str) -> None:
        _check(self.num_train_images >= 1, f"{key}.num_train_images", "must be >= 1")
        _check(self.num_val_images >= 1, f"{key}.num_val_images", "must be >= 1")
        _check(self.image_size >= 32, f"{key}.image_size", "must be >= 32")


@dataclass(frozen=True)
class LVISPaths:
    """Where real LVIS annotations and COCO images live."""

    train_annotations: str = "data/lvis/lvis_v1_train.json"
    val_annotations: str = "data/lvis/lvis_v1_val.json"
    image_root: str = "data/coco"

    def validate(self, key: str) -> None:
        pass


DATASETS = ("synthetic", "lvis_v0.5", "lvis_v1")


@dataclass(frozen=True)
class DataParams:
    dataset: str = "synthetic"
    root: str = "data/synthetic"
    synthetic: SyntheticParams = field(default_factory=SyntheticParams)
    lvis: LVISPaths = field(default_factory=LVISPaths)

    def validate(self, key: str) -> None:
        _check(self.dataset in DATASETS, f"{key}.dataset", f"must be one of {list(DATASETS)}, got {self.dataset!r}")

    @property
    def train_annotations(self) -> Path:
        if self.dataset == "synthetic":
            return Path(self.root) / "annotations" / "lvis_v1_train.json"
        return Path(self.lvis.train_annotations)

    @property
    def val_annotations(self) -> Path:
        if self.dataset == "synthetic":
            return Path(self.root) / "annotations" / "lvis_v1_val.json"
        return Path(self.lvis.val_annotations)

    @property
    def image_root(self) -> Path:
        if self.dataset == "synthetic":
            return Path(self.root) / "images"
        return Path(self.lvis.image_root)


#: Training stages: BACL's decoupled training (METHOD.md section 4), and the baseline it is
#: compared with (stage 1 continued for as many epochs as the classifier stage).
STAGES = ("representation", "classifier", "baseline")
#: Stages that start from the representation stage's weights (settings: :class:`ClassifierParams`).
CLASSIFIER_STAGES = ("classifier", "baseline")

PRESETS = ("synthetic_small", "r50_fpn", "r101_fpn")


@dataclass(frozen=True)
class ModelParams:
    preset: str = "synthetic_small"
    pretrained_backbone: Optional[str] = None
    min_size_train: list[int] = field(default_factory=lambda: [160])
    min_size_test: int = 160
    max_size: int = 1333
    # The synthetic default keeps LVIS's detection budget per class: 300 detections per
    # image for 1,203 classes is 0.25 per class, 15 for 60 classes (the LVIS configs: 300).
    detections_per_img: int = 15
    score_thresh: float = 1e-4
    nms_thresh: float = 0.5

    def validate(self, key: str) -> None:
        _check(self.preset in PRESETS, f"{key}.preset", f"must be one of {list(PRESETS)}, got {self.preset!r}")
        _check(len(self.min_size_train) > 0 and all(s > 0 for s in self.min_size_train),
               f"{key}.min_size_train", "must be a non-empty list of positive sizes")
        _check(self.min_size_test > 0, f"{key}.min_size_test", "must be > 0")
        _check(self.max_size >= max(self.min_size_train + [self.min_size_test]), f"{key}.max_size",
               "must be >= every min size")
        _check(self.detections_per_img >= 1, f"{key}.detections_per_img", "must be >= 1")
        _check(0.0 <= self.score_thresh < 1.0, f"{key}.score_thresh", "must be in [0, 1)")
        _check(0.0 < self.nms_thresh <= 1.0, f"{key}.nms_thresh", "must be in (0, 1]")


@dataclass(frozen=True)
class TrainParams:
    """One training stage: optimiser, schedule, sampling and loss."""

    output_dir: str = "runs/representation"
    loss: str = "bce"
    epochs: int = 7
    batch_size: int = 8
    base_lr: float = 0.04
    base_batch_size: int = 16
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_iters: int = 100
    warmup_factor: float = 0.001
    lr_steps: list[int] = field(default_factory=lambda: [5, 6])
    lr_gamma: float = 0.1
    flip_prob: float = 0.5
    repeat_factor_threshold: Optional[float] = None
    filter_empty: bool = True
    amp: bool = True
    workers: int = 2
    seed: int = 0
    clip_grad_norm: Optional[float] = None

    def validate(self, key: str) -> None:
        from .losses import LOSSES

        _check(self.loss in LOSSES, f"{key}.loss", f"unknown loss {self.loss!r}; known: {sorted(LOSSES)}")
        _check(self.epochs >= 1, f"{key}.epochs", "must be >= 1")
        _check(self.batch_size >= 1, f"{key}.batch_size", "must be >= 1")
        _check(self.base_lr > 0, f"{key}.base_lr", "must be > 0")
        _check(self.base_batch_size >= 1, f"{key}.base_batch_size", "must be >= 1")
        _check(0.0 <= self.momentum < 1.0, f"{key}.momentum", "must be in [0, 1)")
        _check(self.weight_decay >= 0, f"{key}.weight_decay", "must be >= 0")
        _check(self.warmup_iters >= 0, f"{key}.warmup_iters", "must be >= 0")
        _check(0.0 < self.warmup_factor <= 1.0, f"{key}.warmup_factor", "must be in (0, 1]")
        _check(all(0 < s for s in self.lr_steps) and list(self.lr_steps) == sorted(self.lr_steps),
               f"{key}.lr_steps", "must be increasing positive epoch numbers")
        _check(0.0 < self.lr_gamma <= 1.0, f"{key}.lr_gamma", "must be in (0, 1]")
        _check(0.0 <= self.flip_prob <= 1.0, f"{key}.flip_prob", "must be in [0, 1]")
        _check(self.repeat_factor_threshold is None or 0.0 < self.repeat_factor_threshold <= 1.0,
               f"{key}.repeat_factor_threshold", "must be null (off) or in (0, 1]")
        _check(self.workers >= 0, f"{key}.workers", "must be >= 0")
        _check(self.clip_grad_norm is None or self.clip_grad_norm > 0, f"{key}.clip_grad_norm",
               "must be null or > 0")


@dataclass(frozen=True)
class FCBLParams:
    """FCBL's settings in the classifier stage (used when ``classifier.loss`` is ``fcbl``)."""

    alpha: float = 0.85
    prob_thr: float = 0.7
    reweight: bool = True

    def validate(self, key: str) -> None:
        _check(self.alpha >= 0, f"{key}.alpha", "must be >= 0")
        _check(0.0 < self.prob_thr <= 1.0, f"{key}.prob_thr", "must be in (0, 1]")


@dataclass(frozen=True)
class FHMParams:
    """The feature hallucination module in the classifier stage (METHOD.md section 3)."""

    enabled: bool = True
    decay: float = 0.1
    num_sampled_classes: int = 8
    num_samples_per_class: int = 12
    num_jitter: int = 16

    def validate(self, key: str) -> None:
        _check(0.0 < self.decay <= 1.0, f"{key}.decay", "must be in (0, 1]")
        _check(self.num_sampled_classes >= 0, f"{key}.num_sampled_classes", "must be >= 0")
        _check(self.num_samples_per_class >= 0, f"{key}.num_samples_per_class", "must be >= 0")
        _check(self.num_jitter >= 16 and self.num_jitter % 16 == 0, f"{key}.num_jitter",
               "must be a positive multiple of 16 (each 16 boxes cover all jitter sign patterns)")


@dataclass(frozen=True)
class ClassifierParams(TrainParams):
    """BACL's stage 2: the classifier stage (METHOD.md section 4).

    The optimiser, schedule and sampling keys are :class:`TrainParams`'s (validated by
    the same code); the defaults differ where the paper's stage 2 differs.
    ``init_from: null`` means ``<train.output_dir>/model_final.pt``. ``freeze: false``
    trains every parameter (the "stage 1 continued" baseline).

    Ablations, FCBL and FHM each on or off:

    - BCE: ``loss: bce``, ``fhm.enabled: false``;
    - FCBL only: ``loss: fcbl``, ``fhm.enabled: false``;
    - FHM only: ``loss: fcbl`` with ``fcbl.alpha: 0`` and ``fcbl.reweight: false``, which
      is exactly sigmoid BCE (zero margins, every channel weighted) but keeps the
      confusion matrix whose per-class accuracy FHM draws classes by;
    - both: the defaults.
    """

    output_dir: str = "runs/bacl"
    loss: str = "fcbl"
    epochs: int = 2
    lr_steps: list[int] = field(default_factory=lambda: [1])
    init_from: Optional[str] = None
    freeze: bool = True
    fcbl: FCBLParams = field(default_factory=FCBLParams)
    fhm: FHMParams = field(default_factory=FHMParams)

    def validate(self, key: str) -> None:
        super().validate(key)
        from .losses import LOSSES

        _check(not self.fhm.enabled or hasattr(LOSSES[self.loss], "class_accuracy"), f"{key}.fhm.enabled",
               f"FHM draws classes by per-class accuracy, which loss {self.loss!r} does not track; "
               "use loss fcbl (fcbl.alpha=0 and fcbl.reweight=false for plain BCE with FHM) or disable FHM")


@dataclass(frozen=True)
class BaselineParams(ClassifierParams):
    """The baseline BACL is compared with: stage 1 continued (nothing frozen, plain BCE,
    no FHM) for the classifier stage's epochs, from the same stage-1 weights, so both
    runs train for the same total number of epochs. Same keys as ``classifier``."""

    output_dir: str = "runs/baseline"
    loss: str = "bce"
    freeze: bool = False
    fhm: FHMParams = field(default_factory=lambda: FHMParams(enabled=False))


@dataclass(frozen=True)
class EvaluateParams:
    max_dets: int = 15  # as model.detections_per_img: LVIS's 300 scaled to 60 classes
    batch_size: int = 8
    workers: int = 2

    def validate(self, key: str) -> None:
        _check(self.max_dets >= 1, f"{key}.max_dets", "must be >= 1")
        _check(self.batch_size >= 1, f"{key}.batch_size", "must be >= 1")
        _check(self.workers >= 0, f"{key}.workers", "must be >= 0")


@dataclass(frozen=True)
class Params:
    data: DataParams = field(default_factory=DataParams)
    model: ModelParams = field(default_factory=ModelParams)
    train: TrainParams = field(default_factory=TrainParams)
    classifier: ClassifierParams = field(default_factory=ClassifierParams)
    baseline: BaselineParams = field(default_factory=BaselineParams)
    evaluate: EvaluateParams = field(default_factory=EvaluateParams)

    def validate(self, key: str = "") -> None:
        pass

    def stage(self, name: str) -> TrainParams:
        """The settings of a training stage: ``representation`` (section ``train``),
        ``classifier`` or ``baseline`` (sections of the same names)."""
        if name not in STAGES:
            raise ValueError(f"unknown stage {name!r}; known: {list(STAGES)}")
        return getattr(self, name) if name in CLASSIFIER_STAGES else self.train

    def init_from(self, stage: str) -> Path:
        """The checkpoint a classifier-like stage (``classifier``, ``baseline``) starts from:
        its ``init_from``, or ``<train.output_dir>/model_final.pt`` when that is null."""
        if stage not in CLASSIFIER_STAGES:
            raise ValueError(f"stage {stage!r} does not start from a checkpoint; those that do: "
                             f"{list(CLASSIFIER_STAGES)}")
        cfg = self.stage(stage)
        if cfg.init_from is not None:
            return Path(cfg.init_from)
        return Path(self.train.output_dir) / "model_final.pt"

    @property
    def classifier_init_from(self) -> Path:
        """The checkpoint the classifier stage starts from."""
        return self.init_from("classifier")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------- building from dicts


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp).replace("typing.", ""))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert a YAML value to the annotated type, or raise ParamError naming ``key``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce(value, args[0], key)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ParamError(f"{key}: must be a mapping, got {type(value).__name__}")
        return _build(tp, value, key)
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ParamError(f"{key}: must be a list, got {value!r}")
        return [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if value is None:
        raise ParamError(f"{key}: must be a {_type_name(tp)}, got null")
    if tp is bool:
        if not isinstance(value, bool):
            raise ParamError(f"{key}: must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ParamError(f"{key}: must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):
            try:  # YAML reads "1e-4" (no dot) as a string
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParamError(f"{key}: must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ParamError(f"{key}: must be a string, got {value!r}")
        return value
    return value


def _over_default(cls: type, name: str, value: Any) -> Any:
    """A partial mapping for a nested section is laid over the field's *default*, not over
    the nested class's defaults: ``baseline: {fhm: {decay: 0.2}}`` keeps the baseline's
    ``fhm.enabled: false``."""
    if not isinstance(value, dict):
        return value
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
    if not dataclasses.is_dataclass(default):
        return value
    return _merge(dataclasses.asdict(default), value)


def _build(cls: type, values: dict[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in values:
        if key not in names:
            dotted = f"{prefix}.{key}" if prefix else key
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ParamError(f"{dotted}: unknown key{hint}; known keys here: {names}")
    kwargs = {
        name: _coerce(_over_default(cls, name, values[name]), hints[name], f"{prefix}.{name}" if prefix else name)
        for name in names
        if name in values
    }
    obj = cls(**kwargs)
    obj.validate(prefix or "params")
    return obj


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ParamError(f"{dotted}: {part!r} is not a section")
        node = child
    node[parts[-1]] = value


def parse_overrides(overrides: list[str]) -> dict[str, Any]:
    """``["train.epochs=3", "model.min_size_train=[128,160]"]`` -> nested dict (YAML values)."""
    tree: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ParamError(f"override {item!r}: expected key=value")
        key, raw = item.split("=", 1)
        _set_dotted(tree, key.strip(), yaml.safe_load(raw) if raw.strip() else None)
    return tree


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ParamError(f"{path}: parameter file not found") from None
    try:
        tree = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        raise ParamError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(tree, dict):
        raise ParamError(f"{path}: the top level must be a mapping of sections")
    return tree


def params_from_dict(tree: dict[str, Any], *, source: str = "params") -> Params:
    try:
        return _build(Params, tree, "")
    except ParamError as err:
        raise ParamError(f"{source}: {err}") from None


def load_params(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Params:
    """Read a params file (or the defaults when ``path`` is None) and apply overrides."""
    tree = read_yaml(path) if path is not None else {}
    tree = _merge(tree, parse_overrides(list(overrides)))
    return params_from_dict(tree, source=str(path) if path is not None else "params")
