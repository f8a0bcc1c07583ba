"""The evaluation protocols under one call, and the per-class budget of a smaller set.

- ``"lvis"``: the standard LVIS protocol, at most ``max_dets`` detections per image
  (300), per-category AP (``bacl/evaluation/lvis_eval.py``);
- ``"fixed"``: Fixed AP, at most ``max_dets_per_class`` detections per category over
  the set (10,000 for LVIS), no per-image cap, per-category AP
  (``bacl/evaluation/fixed_ap.py``);
- ``"pooled"``: pooled AP, the same budget, detections ranked across the categories
  of a pool (``bacl/evaluation/pooled_ap.py``).

Every metrics dict names its protocol and budget (``protocol``, ``max_dets``,
``max_dets_per_class``; the unused one is None).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from bacl.evaluation.fixed_ap import LVIS_MAX_DETS_PER_CLASS, evaluate_fixed_ap
from bacl.evaluation.lvis_eval import (DEFAULT_MAX_DETS, EvaluationError, check_positive_int,
                                       evaluate_lvis)
from bacl.evaluation.lvis_io import PathLike
from bacl.evaluation.pooled_ap import evaluate_pooled_ap

PROTOCOLS = ("lvis", "fixed", "pooled")

#: Images of LVIS v1 val, the set the authors' K = 10,000 is given for.
LVIS_V1_VAL_IMAGES = 19_809
#: LVIS's budget density, 10,000 / 19,809 = 0.505, rounded: half a detection per class and image.
DETECTIONS_PER_CLASS_PER_IMAGE = 0.5


def evaluate_detections(*, annotations: PathLike | Mapping[str, Any],
                        detections: PathLike | Sequence[Mapping[str, Any]] | Mapping[str, Any],
                        protocol: str = "lvis", max_dets: int = DEFAULT_MAX_DETS,
                        max_dets_per_class: int = LVIS_MAX_DETS_PER_CLASS) -> dict[str, Any]:
    """Evaluate ``detections`` under ``protocol`` (one of :data:`PROTOCOLS`).

    ``max_dets`` (per image) is the budget of ``"lvis"``, ``max_dets_per_class`` that
    of ``"fixed"`` and ``"pooled"``; the other one is not used (but still checked).
    Returns the protocol's metrics dict (see ``evaluate_lvis``, ``evaluate_fixed_ap``,
    ``evaluate_pooled_ap``).
    """
    if protocol not in PROTOCOLS:
        raise EvaluationError(f"protocol must be one of {list(PROTOCOLS)}, got {protocol!r}")
    max_dets = check_positive_int("max_dets", max_dets)
    max_dets_per_class = check_positive_int("max_dets_per_class", max_dets_per_class)
    if protocol == "lvis":
        return evaluate_lvis(annotations=annotations, detections=detections, max_dets=max_dets)
    evaluate = evaluate_fixed_ap if protocol == "fixed" else evaluate_pooled_ap
    return evaluate(annotations=annotations, detections=detections,
                    max_dets_per_class=max_dets_per_class)


def scaled_max_dets_per_class(num_images: int) -> int:
    """The per-class budget of an evaluation set of ``num_images`` images.

    LVIS gives each class 10,000 detections over its 19,809 val images: about half a
    detection per class and image. The rule keeps that density, ``ceil(num_images /
    2)``: 150 for the synthetic benchmark's 300 val images (LVIS v1 val itself would get
    9,905, within 1 % of the authors' 10,000, which stays the LVIS setting).
    """
    num_images = check_positive_int("num_images", num_images)
    return math.ceil(num_images * DETECTIONS_PER_CLASS_PER_IMAGE)


def evaluate_protocols(*, annotations: PathLike | Mapping[str, Any], budgets: Sequence[tuple[str, str, int]],
                       per_image: Any = None, per_class: Any = None) -> dict[str, Any]:
    """Every protocol of ``budgets`` (``(name, protocol, budget)``, see
    :meth:`bacl.params.EvaluateParams.budgets`) in one metrics dict.

    ``per_image`` holds detections with a per-image cap at least the largest ``lvis``
    budget (an LVIS results list, file or dict of arrays), ``per_class`` detections without
    a per-image cap holding each class's best ``fixed``/``pooled`` budget over the set.
    The first protocol is the headline: its metrics are the top level of the result;
    ``protocols`` maps every name to its metrics.
    """
    from bacl.evaluation.lvis_io import load_ground_truth

    if not budgets:
        raise EvaluationError("no protocol to evaluate")
    annotations = load_ground_truth(annotations)  # read once for every protocol
    results: dict[str, Any] = {}
    for name, protocol, budget in budgets:
        source = per_image if protocol == "lvis" else per_class
        if source is None:
            raise EvaluationError(f"protocol {name!r} needs {'per-image' if protocol == 'lvis' else 'per-class'} "
                                  f"detections")
        results[name] = evaluate_detections(annotations=annotations, detections=source, protocol=protocol,
                                            max_dets=budget if protocol == "lvis" else DEFAULT_MAX_DETS,
                                            max_dets_per_class=budget if protocol != "lvis"
                                            else LVIS_MAX_DETS_PER_CLASS)
    headline = results[budgets[0][0]]
    return {**headline, "protocols": results}
