"""One entry point for the three protocols, and the per-class budget of a smaller set."""

from __future__ import annotations

import pytest

from bacl.errors import BaclError
from bacl.evaluation.fixed_ap import evaluate_fixed_ap
from bacl.evaluation.lvis_eval import evaluate_lvis
from bacl.evaluation.pooled_ap import evaluate_pooled_ap
from bacl.evaluation.protocols import PROTOCOLS, evaluate_detections, scaled_max_dets_per_class
from tests.evaluation.test_lvis_eval import make_case


def test_each_protocol_is_its_evaluator_with_its_budget() -> None:
    gt, dets = make_case(60)
    expected = {"lvis": evaluate_lvis(annotations=gt, detections=dets, max_dets=12),
                "fixed": evaluate_fixed_ap(annotations=gt, detections=dets, max_dets_per_class=9),
                "pooled": evaluate_pooled_ap(annotations=gt, detections=dets, max_dets_per_class=9)}
    assert set(expected) == set(PROTOCOLS)
    for protocol, metrics in expected.items():
        got = evaluate_detections(annotations=gt, detections=dets, protocol=protocol, max_dets=12,
                                  max_dets_per_class=9)
        assert got == metrics and got["protocol"] == protocol


@pytest.mark.parametrize("kwargs,match", [(dict(protocol="coco"), "protocol must be one of"),
                                          (dict(protocol="fixed", max_dets=0), "max_dets must"),
                                          (dict(protocol="lvis", max_dets_per_class=-1),
                                           "max_dets_per_class")])
def test_bad_settings_name_the_setting(kwargs: dict, match: str) -> None:
    gt, dets = make_case(61)
    with pytest.raises(BaclError, match=match):
        evaluate_detections(annotations=gt, detections=dets, **kwargs)


@pytest.mark.parametrize("num_images,budget", [(300, 150), (301, 151), (19_809, 9_905), (1, 1)])
def test_scaled_budget_is_half_a_detection_per_class_and_image(num_images: int, budget: int) -> None:
    assert scaled_max_dets_per_class(num_images) == budget


def test_scaled_budget_refuses_an_empty_set() -> None:
    with pytest.raises(BaclError, match="num_images"):
        scaled_max_dets_per_class(0)
