"""What each training stage is: the one place that says it (docs/method.md section 4).

- ``representation`` (stage 1): the whole detector trains, from the model's initialisation.
- ``classifier`` (stage 2 of BACL): starts from stage 1's weights; only the classification
  layer, the box regression layer and the RPN train (everything else frozen, BatchNorm
  statistics included); FHM is attached when ``classifier.fhm.enabled``.
- ``baseline``: what the classifier stage is compared with; every parameter trains, from
  stage 1's weights (stage 1 continued) or from the model's initialisation
  (``baseline.init_from: model``, the seed table's baselines).

The loss of every stage is its section's ``loss``, built with ``losses.<loss>``.
State a stage builds for itself (its loss's statistics, FHM) starts afresh: it is neither
required in nor taken from the weights the stage starts from, and FHM is training-only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn

from ..params import ParamError, Params
from .build import build_hallucinator
from ..checkpoint import CheckpointError, load_checkpoint
from .freeze import freeze_except
from .runtime import Runtime

log = logging.getLogger(__name__)

FINAL_WEIGHTS = "model_final.pt"
#: Parameter-name prefixes BACL's classifier stage trains.
CLASSIFIER_STAGE_TRAINABLE = ("roi_heads.box_predictor.cls_score.", "roi_heads.box_predictor.bbox_pred.", "rpn.")
#: Prefixes of state a stage builds for itself and that starts afresh.
STAGE_STATE = ("roi_heads.classification_loss.", "roi_heads.hallucinator.")
#: Prefixes of training-only modules, dropped when a checkpoint is loaded for inference.
TRAINING_ONLY = ("roi_heads.hallucinator.",)
#: ``init_from`` value for "a freshly built model" (random init or ``model.pretrained_backbone``).
FROM_MODEL_INIT = "model"
#: The classification layer, re-initialised when a stage's loss lays it out differently.
CLASSIFICATION_LAYER = "roi_heads.box_predictor.cls_score."


@dataclass(frozen=True)
class Stage:
    name: str
    #: Parameter-name prefixes that train; ``None``: all of them.
    trainable: Optional[tuple[str, ...]]
    #: Starts by default from the representation stage's final weights.
    continues_representation: bool
    #: Its section has FHM settings.
    hallucinates: bool


STAGES: dict[str, Stage] = {
    "representation": Stage("representation", trainable=None, continues_representation=False, hallucinates=False),
    "classifier": Stage("classifier", trainable=CLASSIFIER_STAGE_TRAINABLE, continues_representation=True,
                        hallucinates=True),
    "baseline": Stage("baseline", trainable=None, continues_representation=True, hallucinates=False),
}


def get_stage(name: str) -> Stage:
    if name not in STAGES:
        raise ValueError(f"unknown stage {name!r}; known: {list(STAGES)}")
    return STAGES[name]


def init_checkpoint(params: Params, stage: str) -> Optional[Path]:
    """The checkpoint ``stage`` starts from, or ``None`` for the model's own initialisation."""
    spec = get_stage(stage)
    if not spec.continues_representation:
        return None
    init_from = params.stage(stage).init_from
    if init_from == FROM_MODEL_INIT:
        return None
    if init_from is not None:
        return Path(init_from)
    return Path(params.representation.output_dir) / FINAL_WEIGHTS


def settings_read(params: dict[str, Any], stage: str) -> dict[str, Any]:
    """The parts of a params dict (:meth:`Params.to_dict`) that ``stage``'s training reads,
    except ``epochs`` (a run may be continued to more epochs: the learning rate is a
    function of the iteration, so that equals training for them straight away)."""
    section = dict(params.get(stage, {}))
    section.pop("epochs", None)
    loss = section.get("loss")
    return {"seed": params.get("seed"), "data": params.get("data"), "model": params.get("model"),
            "solver": params.get("solver"), stage: section,
            f"losses.{loss}": params.get("losses", {}).get(loss)}


def stale_reason(state: dict[str, Any], params: Params, *, stage: str, init_sha256: Optional[str]) -> Optional[str]:
    """Why the checkpoint ``state`` cannot be continued by this run of ``stage``; ``None`` if it can.

    It can when it is an unfinished run of the same stage, with the same settings
    (:func:`settings_read`) and, for a stage that starts from a checkpoint, from the same
    weights. A finished run is never continued: a pipeline re-runs a finished stage only
    because its code or inputs changed.
    """
    saved_stage = state.get("stage", "representation")
    if saved_stage != stage:
        return f"it was written by the {saved_stage} stage"
    epochs = params.stage(stage).epochs
    if int(state.get("epoch", 0)) >= epochs:
        return f"its run finished ({state.get('epoch')} of {epochs} epochs)"
    old = settings_read(state.get("params", {}), stage)
    new = settings_read(params.to_dict(), stage)
    changed = [key for key in new if old.get(key) != new[key]]
    if changed:
        return f"its settings differ ({', '.join(changed)})"
    if state.get("init_sha256") != init_sha256:
        return f"it started from other weights than {init_checkpoint(params, stage)}"
    return None


def _saved_loss_uses_standard_classifier(state: dict[str, Any], source: Path) -> bool:
    """Whether the loss that trained checkpoint ``state`` used the plain C+1 linear classifier."""
    from ..losses import build_loss, placeholder_statistics
    from ..params import params_from_dict

    saved = params_from_dict(state.get("params", {}), source=f"{source} (saved params)")
    name = saved.stage(state.get("stage", "representation")).loss
    num_classes = int(state.get("num_classes") or 1)
    loss = build_loss(name, num_classes=num_classes, statistics=placeholder_statistics(num_classes),
                      **saved.losses.options(name))
    return loss.uses_standard_classifier


def load_initial_weights(model: nn.Module, path: Path, *, preset: str, stage: str) -> None:
    """Load the weights ``stage`` starts from into ``model``.

    Every parameter and buffer must be there with the same shape, except the stage's own
    state (:data:`STAGE_STATE`, skipped) and the classification layer when either loss
    lays it out other than as a plain C+1 linear layer (EQL, Seesaw, ECM, BAGS): then it
    keeps the initialisation of this stage's loss. Errors name the file.
    """
    if not path.is_file():
        raise CheckpointError(f"{path}: no checkpoint to start the {stage} stage from; train the representation "
                              f"stage first (bacl train) or point {stage}.init_from at its {FINAL_WEIGHTS}")
    state = load_checkpoint(path)
    saved_preset = state.get("params", {}).get("model", {}).get("preset")
    if saved_preset is not None and saved_preset != preset:
        raise CheckpointError(f"{path}: was trained with model.preset {saved_preset!r}, this run uses {preset!r}")
    skipped = STAGE_STATE
    if not (model.roi_heads.classification_loss.uses_standard_classifier
            and _saved_loss_uses_standard_classifier(state, path)):
        skipped = STAGE_STATE + (CLASSIFICATION_LAYER,)
        log.info("%s stage: the classification layer is laid out differently from %s's; it starts from its "
                 "initialisation", stage, path)
    weights = {k: v for k, v in state["model"].items() if not k.startswith(skipped)}
    expected = [k for k in model.state_dict() if not k.startswith(skipped)]
    missing = [k for k in expected if k not in weights]
    unexpected = sorted(set(weights) - set(expected))
    if missing or unexpected:
        raise CheckpointError(f"{path}: does not fit the model: {len(missing)} missing {missing[:8]}, "
                              f"{len(unexpected)} unexpected {unexpected[:8]}")
    try:
        model.load_state_dict(weights, strict=False)
    except RuntimeError as err:  # shape mismatch, e.g. another number of classes
        raise CheckpointError(f"{path}: does not fit the model ({err})") from None


def prepare_stage(model: nn.Module, params: Params, *, stage: str, runtime: Runtime,
                  load_weights: bool) -> list[nn.Module]:
    """Turn a freshly built detector into ``stage``'s; returns the BatchNorm layers to keep in
    eval mode (frozen ones).

    Loads :func:`init_checkpoint` (unless ``load_weights`` is False: a resumed run loads its
    own checkpoint), freezes what the stage does not train, and attaches FHM as
    ``roi_heads.hallucinator`` (so its statistics and generator are in the model's
    ``state_dict``), seeded with ``seed + rank`` so processes draw differently.
    """
    spec = get_stage(stage)
    settings = params.stage(stage)
    start = init_checkpoint(params, stage)
    if load_weights and start is not None:
        load_initial_weights(model, start, preset=params.model.preset, stage=stage)
        if runtime.is_main:
            log.info("%s stage: weights from %s", stage, start)
    frozen_norms: list[nn.Module] = []
    if spec.trainable is not None:
        names = [name for name, _ in model.named_parameters() if name.startswith(spec.trainable)]
        frozen_norms = freeze_except(model, names)
    loss = model.roi_heads.classification_loss
    if spec.hallucinates and settings.fhm.enabled:
        if not hasattr(loss, "class_accuracy"):
            raise ParamError(f"{stage}.fhm.enabled: loss {settings.loss!r} tracks no per-class accuracy")
        model.roi_heads.hallucinator = build_hallucinator(
            settings.fhm, num_classes=loss.num_classes,
            feat_dim=model.roi_heads.box_predictor.cls_score.in_features,
            seed=params.seed + runtime.rank, accuracy_source=lambda: loss.class_accuracy,
        ).to(runtime.device)
    if runtime.is_main:
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in model.parameters())
        fhm = "on" if spec.hallucinates and settings.fhm.enabled else "off"
        log.info("%s stage: loss %s %s, FHM %s, %d of %d parameters trainable", stage, settings.loss,
                 params.losses.options(settings.loss), fhm, trainable, total)
    return frozen_norms


def generator_states(model: nn.Module, world_size: int) -> Optional[dict[str, list[torch.Tensor]]]:
    """Every process's state of each random generator the model's modules own (FHM's, and
    the federated and BAGS losses'), by module name: processes draw differently, and the
    ``state_dict`` rank 0 saves holds rank 0's only. ``None`` when there is none. A
    collective under a process group."""
    local = {name: module.generator.get_state() for name, module in model.named_modules()
             if isinstance(getattr(module, "generator", None), torch.Generator)}
    if not local:
        return None
    if world_size == 1:
        return {name: [value] for name, value in local.items()}
    import torch.distributed as dist

    gathered: list[Any] = [None] * world_size
    dist.all_gather_object(gathered, local)
    return {name: [states[name] for states in gathered] for name in local}


def restore_generator_states(model: nn.Module, states: Optional[dict[str, list[torch.Tensor]]], *, rank: int,
                             world_size: int) -> None:
    """Give each process its own generator states back (:func:`generator_states`); with
    another number of processes than the saved run, every process keeps rank 0's, which
    the ``state_dict`` restored."""
    if not states or any(len(per_rank) != world_size for per_rank in states.values()):
        return
    modules = dict(model.named_modules())
    for name, per_rank in states.items():
        modules[name].generator.set_state(per_rank[rank])
