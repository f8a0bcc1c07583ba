"""Reading parameters: YAML files, ``key=value`` overrides, presets as deltas over a base.

A preset file (``configs/*.yaml``) holds only what differs from its base: the built-in
defaults (the synthetic benchmark) or the file named by its ``_base_`` key. Checkpoints
of the first parameter layout (one ``train`` section, sizes and test settings under
``model``) are read through :func:`upgrade_layout`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import pydantic
import yaml

from .root import Params
from .section import ParamError, validation_error

BASE_KEY = "_base_"


def parse_overrides(overrides: Sequence[str]) -> dict[str, Any]:
    """``["representation.epochs=3", "seed=1"]`` -> nested dict (values parsed as YAML)."""
    tree: dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ParamError(f"override {item!r}: expected key=value")
        dotted, raw = (part.strip() for part in item.split("=", 1))
        parts = dotted.split(".")
        node = tree
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ParamError(f"override {item!r}: {part!r} is not a section")
        node[parts[-1]] = yaml.safe_load(raw) if raw else None
    return tree


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``extra`` laid over ``base``, section by section."""
    out = dict(base)
    for key, value in extra.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML mapping; errors name the file."""
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


def read_preset(path: str | Path, *, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A preset file with its ``_base_`` chain resolved (relative to the file), as one dict."""
    path = Path(path).resolve()
    if path in _seen:
        raise ParamError(f"{path.name}: {BASE_KEY} chain loops back to itself")
    tree = read_yaml(path)
    base = tree.pop(BASE_KEY, None)
    if base is None:
        return tree
    return merge(read_preset(path.parent / base, _seen=_seen + (path,)), tree)


def upgrade_layout(tree: dict[str, Any]) -> dict[str, Any]:
    """Parameters saved in the first layout -> this one (used when reading old checkpoints)."""
    if "train" not in tree or "representation" in tree:
        return tree
    old = {k: dict(v) if isinstance(v, dict) else v for k, v in tree.items()}
    train, model, evaluate = old.pop("train"), old.pop("model", {}), old.pop("evaluate", {})
    solver_keys = ("batch_size", "base_lr", "base_batch_size", "momentum", "warmup_iters", "warmup_factor",
                   "lr_gamma", "clip_grad_norm", "amp", "workers")
    stage_keys = ("output_dir", "init_from", "loss", "epochs", "lr_steps", "weight_decay", "flip_prob",
                  "repeat_factor_threshold", "filter_empty")
    sizes = {k: v for k, v in (("min_sizes", model.get("min_size_train")), ("max_size", model.get("max_size")))
             if v is not None}
    new: dict[str, Any] = {"seed": train.get("seed", 0), "data": old.get("data", {}),
                           "model": {k: model[k] for k in ("preset", "pretrained_backbone") if k in model},
                           "solver": {k: train[k] for k in solver_keys if k in train}}
    new["representation"] = {**{k: train[k] for k in stage_keys if k in train and k != "init_from"}, **sizes}
    for name in ("classifier", "baseline"):
        section = old.get(name) or {}
        new[name] = {**{k: section[k] for k in stage_keys if k in section}, **sizes}
    if isinstance(old.get("classifier"), dict):
        if "fhm" in old["classifier"]:
            new["classifier"]["fhm"] = old["classifier"]["fhm"]
        if "fcbl" in old["classifier"]:
            new["losses"] = {"fcbl": old["classifier"]["fcbl"]}
    test = {"detections_per_img": evaluate.get("max_dets", model.get("detections_per_img")),
            "score_thresh": model.get("score_thresh"), "nms_thresh": model.get("nms_thresh"),
            "min_size": model.get("min_size_test"), "max_size": model.get("max_size"),
            "batch_size": evaluate.get("batch_size"), "workers": evaluate.get("workers")}
    new["evaluate"] = {k: v for k, v in test.items() if v is not None}
    return new


def params_from_dict(tree: dict[str, Any], *, source: str = "params") -> Params:
    try:
        return Params.model_validate(upgrade_layout(tree))
    except pydantic.ValidationError as err:
        raise validation_error(Params, err, source=source) from None


def load_params(path: str | Path | None = None, overrides: Sequence[str] = ()) -> Params:
    """Read a params or preset file (the built-in defaults when ``path`` is None) and apply
    ``key=value`` overrides."""
    tree = read_preset(path) if path is not None else {}
    tree = merge(tree, parse_overrides(list(overrides)))
    return params_from_dict(tree, source=str(path) if path is not None else "params")
