"""A training stage as its checkpoint left it: the stage's settings, and its FCBL and FHM
rebuilt from the saved state, so the analysis calls their own methods (class accuracy,
margins, draw probabilities, the draw) instead of re-deriving them.

A checkpoint (``model_final.pt`` or ``checkpoints/last.pt``) holds the model's
``state_dict`` under ``model``, the stage under ``stage`` and the run's resolved
parameters under ``params``. FCBL's statistics sit under
``roi_heads.classification_loss.`` (``cm_num``, ``num_gt``), FHM's under
``roi_heads.hallucinator.`` (``mean``, ``var``, ``seen`` and its generator state).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Optional

import torch

from ..checkpoint import load_checkpoint
from ..losses.fcbl import FCBL
from ..models.feature_hallucination import FeatureHallucination
from ..params import STAGE_NAMES, ParamError, params_from_dict
from .errors import AnalysisInputError, MissingStatisticsError

LOSS_PREFIX = "roi_heads.classification_loss."
FHM_PREFIX = "roi_heads.hallucinator."
FCBL_BUFFERS = ("cm_num", "num_gt")
FHM_BUFFERS = ("mean", "var", "seen")
# Constructor arguments read from a stage's ``fcbl`` / ``fhm`` settings when present.
_FCBL_KEYS = ("alpha", "prob_thr", "reweight")
_FHM_KEYS = ("decay", "num_sampled_classes", "num_samples_per_class", "num_jitter")


def checkpoint_stage(state: Mapping[str, Any]) -> str:
    """The training stage that wrote a checkpoint (``representation`` for checkpoints
    written before stages were recorded, as the training engine reads them)."""
    return str(state.get("stage", "representation"))


def stage_settings(params: Mapping[str, Any], stage: str, *, source: str = "params") -> dict[str, Any]:
    """The settings of training stage ``stage`` in a run's saved parameters (a dict), with
    its loss's options under the loss's name (``settings["fcbl"]``).

    Parameters of either layout are read (older checkpoints are upgraded by
    :func:`bacl.params.params_from_dict`); ``source`` names the file in errors.
    """
    if stage not in STAGE_NAMES:
        raise AnalysisInputError(f"{source}: unknown training stage {stage!r}; known: {list(STAGE_NAMES)}")
    try:
        saved = params_from_dict(dict(params), source=f"{source} (saved params)")
    except ParamError as err:
        raise AnalysisInputError(str(err)) from None
    settings = saved.stage(stage)
    return {**settings.model_dump(), settings.loss: saved.losses.options(settings.loss)}


def _sub_state(weights: Mapping[str, torch.Tensor], prefix: str) -> dict[str, Any]:
    return {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}


def fcbl_from_weights(weights: Mapping[str, torch.Tensor], settings: Mapping[str, Any], *,
                      source: str = "weights") -> Optional[FCBL]:
    """FCBL with the statistics of a model ``state_dict`` (``cm_num (C, C)``, ``num_gt (C,)``)
    and the ``fcbl`` settings of ``settings`` (constructor defaults for keys not there);
    ``None`` when the weights hold no FCBL statistics (the stage trained another loss)."""
    state = _sub_state(weights, LOSS_PREFIX)
    if not all(k in state for k in FCBL_BUFFERS):
        return None
    options = settings.get("fcbl") or {}
    fcbl = FCBL(num_classes=int(state["num_gt"].shape[0]), **{k: options[k] for k in _FCBL_KEYS if k in options})
    try:
        fcbl.load_state_dict({k: state[k] for k in FCBL_BUFFERS})
    except RuntimeError as err:
        raise AnalysisInputError(f"{source}: FCBL statistics do not fit together ({err})") from None
    return fcbl


def fhm_from_weights(weights: Mapping[str, torch.Tensor], settings: Mapping[str, Any], *,
                     source: str = "weights") -> Optional[FeatureHallucination]:
    """FHM with the statistics of a model ``state_dict`` (``mean (C, D)``, ``var (C, D)``,
    ``seen (C,)`` and the generator state where saved) and the ``fhm`` settings of
    ``settings``; ``None`` when the weights hold no FHM (the stage trained without it)."""
    state = _sub_state(weights, FHM_PREFIX)
    if not all(k in state for k in FHM_BUFFERS):
        return None
    options = settings.get("fhm") or {}
    num_classes, feat_dim = (int(n) for n in state["mean"].shape)
    fhm = FeatureHallucination(num_classes=num_classes, feat_dim=feat_dim,
                               **{k: options[k] for k in _FHM_KEYS if k in options})
    try:
        missing, unexpected = fhm.load_state_dict(state, strict=False)
    except RuntimeError as err:
        raise AnalysisInputError(f"{source}: FHM statistics do not fit together ({err})") from None
    if unexpected or set(missing) - {"_extra_state"}:
        raise AnalysisInputError(f"{source}: FHM state has unexpected keys {unexpected} or misses {missing}")
    return fhm


@dataclass(frozen=True)
class TrainedStage:
    """What a stage's checkpoint says about its classifier training.

    ``fcbl`` is ``None`` for a stage trained with another loss, ``fhm`` for one trained
    without FHM (e.g. ``classifier.fhm.enabled: false``). Classes are ``0..C-1`` in
    category-id order.
    """

    source: str                          # the checkpoint file, for messages
    stage: str                           # representation, classifier or baseline
    settings: dict[str, Any]             # the stage's section of the saved parameters
    num_classes: int                     # C
    fcbl: Optional[FCBL]
    fhm: Optional[FeatureHallucination]

    @property
    def has_fcbl(self) -> bool:
        return self.fcbl is not None

    @property
    def has_fhm(self) -> bool:
        return self.fhm is not None

    def require_fcbl(self) -> FCBL:
        """:attr:`fcbl`, or an error naming the checkpoint when the stage kept none."""
        if self.fcbl is None:
            raise MissingStatisticsError(
                f"{self.source}: no FCBL statistics ({LOSS_PREFIX}cm_num): the {self.stage} stage trained with "
                f"loss {self.settings.get('loss', '?')!r}, not fcbl")
        return self.fcbl

    def require_fhm(self) -> FeatureHallucination:
        """:attr:`fhm`, or an error naming the checkpoint when the stage trained without FHM."""
        if self.fhm is None:
            raise MissingStatisticsError(f"{self.source}: no FHM statistics ({FHM_PREFIX}mean): "
                                         f"the {self.stage} stage trained without FHM")
        return self.fhm


def trained_stage(state: Mapping[str, Any], *, source: str = "checkpoint") -> TrainedStage:
    """:class:`TrainedStage` of a loaded checkpoint ``state`` (see the module docstring)."""
    weights = state["model"]
    stage = checkpoint_stage(state)
    settings = stage_settings(state.get("params") or {}, stage, source=source)
    num_classes = state.get("num_classes")
    if num_classes is None:  # checkpoints/last.pt: the plain classifier's C + 1 rows
        cls_key = next((k for k in weights if k.endswith("cls_score.weight")), None)
        if cls_key is None:
            raise AnalysisInputError(f"{source}: no classification layer (cls_score) in the weights")
        num_classes = int(weights[cls_key].shape[0]) - 1
    num_classes = int(num_classes)
    fcbl = fcbl_from_weights(weights, settings, source=source)
    fhm = fhm_from_weights(weights, settings, source=source)
    for name, module in (("FCBL", fcbl), ("FHM", fhm)):
        if module is not None and module.num_classes != num_classes:
            raise AnalysisInputError(f"{source}: {name} has {module.num_classes} classes, "
                                     f"the classification layer {num_classes}")
    return TrainedStage(source=source, stage=stage, settings=settings, num_classes=num_classes, fcbl=fcbl, fhm=fhm)


def load_trained_stage(checkpoint: str | Path) -> TrainedStage:
    """:func:`trained_stage` of a checkpoint file (loaded with ``weights_only``)."""
    return trained_stage(load_checkpoint(checkpoint), source=str(checkpoint))
