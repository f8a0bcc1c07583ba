"""params.yaml -> validated, typed settings (pydantic models, one file per section).

Modules never read ``params.yaml`` themselves: they take keyword arguments, and
:mod:`bacl.engine.build` maps these settings onto them.
"""

from .data import DATASETS, DataParams, LVISPaths, SyntheticParams
from .evaluate import EvaluateParams
from .loading import load_params, merge, params_from_dict, parse_overrides, read_preset, read_yaml, upgrade_layout
from .losses import FCBLOptions, LossesParams
from .model import PRESETS, ModelParams
from .render import render_params
from .root import STAGE_NAMES, Params, StageSettings
from .section import ParamError
from .training import (BaselineParams, ClassifierParams, FHMParams, LSJParams, RepresentationParams,
                       SolverParams, StageParams)

__all__ = [
    "DATASETS", "PRESETS", "STAGE_NAMES", "BaselineParams", "ClassifierParams", "DataParams", "EvaluateParams",
    "FCBLOptions", "FHMParams", "LSJParams", "LVISPaths", "LossesParams", "ModelParams", "ParamError", "Params",
    "RepresentationParams", "SolverParams", "StageParams", "StageSettings", "SyntheticParams", "load_params",
    "merge", "params_from_dict", "parse_overrides", "read_preset", "read_yaml", "render_params", "upgrade_layout",
]
