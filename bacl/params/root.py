"""The whole parameter tree, ``params.yaml``'s sections."""

from __future__ import annotations

from typing import Any, Union

from pydantic import Field, model_validator

from .data import DataParams
from .evaluate import EvaluateParams
from .losses import LOSSES_WITH_CLASS_ACCURACY, LossesParams
from .model import ModelParams
from .section import Int, Section
from .training import BaselineParams, ClassifierParams, RepresentationParams, SolverParams

StageSettings = Union[RepresentationParams, ClassifierParams, BaselineParams]
#: The training stages, in pipeline order; each reads the section of its own name.
STAGE_NAMES = ("representation", "classifier", "baseline")


class Params(Section):
    seed: Int = Field(0, ge=0, description="training seed: model init, sampling, augmentation and FHM draws of "
                                           "every stage")
    data: DataParams = Field(default_factory=DataParams, description="the dataset")
    model: ModelParams = Field(default_factory=ModelParams, description="the detector's architecture")
    solver: SolverParams = Field(default_factory=SolverParams, description="SGD and data loading, shared by the "
                                                                           "training stages")
    representation: RepresentationParams = Field(default_factory=RepresentationParams,
                                                 description="stage 1: bacl train --stage representation")
    classifier: ClassifierParams = Field(default_factory=ClassifierParams,
                                         description="stage 2 of BACL: bacl train --stage classifier")
    baseline: BaselineParams = Field(default_factory=BaselineParams,
                                     description="what the classifier stage is compared with: bacl train "
                                                 "--stage baseline")
    losses: LossesParams = Field(default_factory=LossesParams,
                                 description="hyperparameters of each classification loss")
    evaluate: EvaluateParams = Field(default_factory=EvaluateParams,
                                     description="test-time settings: bacl evaluate")

    @model_validator(mode="after")
    def _losses_exist(self):
        known = list(LossesParams.model_fields)
        for name in STAGE_NAMES:
            loss = getattr(self, name).loss
            if loss not in known:
                raise ValueError(f"{name}.loss: unknown loss {loss!r}; known: {known}")
        if self.classifier.fhm.enabled and self.classifier.loss not in LOSSES_WITH_CLASS_ACCURACY:
            raise ValueError(
                f"classifier.fhm.enabled: FHM draws classes by per-class accuracy, which loss "
                f"{self.classifier.loss!r} does not track; use loss fcbl (losses.fcbl.alpha=0 and "
                f"losses.fcbl.reweight=false for plain BCE with FHM) or disable FHM")
        return self

    def stage(self, name: str) -> StageSettings:
        """The settings of training stage ``name`` (its own section)."""
        if name not in STAGE_NAMES:
            raise ValueError(f"unknown stage {name!r}; known: {list(STAGE_NAMES)}")
        return getattr(self, name)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")
