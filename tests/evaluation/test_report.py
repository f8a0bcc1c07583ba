"""The protocol views of a metrics dict."""

from __future__ import annotations

from bacl.evaluation.fixed_ap import evaluate_fixed_ap
from bacl.evaluation.lvis_eval import evaluate_lvis
from bacl.evaluation.pooled_ap import evaluate_pooled_ap
from bacl.evaluation.report import describe_protocol, evaluation_settings, headline_metrics
from tests.evaluation.test_lvis_eval import make_case


def test_settings_and_description_of_each_protocol() -> None:
    gt, dets = make_case(70)
    lvis = evaluate_lvis(annotations=gt, detections=dets, max_dets=20)
    fixed = evaluate_fixed_ap(annotations=gt, detections=dets, max_dets_per_class=150)
    pooled = evaluate_pooled_ap(annotations=gt, detections=dets, max_dets_per_class=150)
    assert evaluation_settings(lvis) == {"protocol": "lvis", "max_dets": 20, "max_dets_per_class": None}
    assert evaluation_settings(fixed) == {"protocol": "fixed", "max_dets": None, "max_dets_per_class": 150}
    assert evaluation_settings(pooled)["protocol"] == "pooled"
    assert describe_protocol(lvis) == "LVIS protocol, at most 20 detections per image"
    assert describe_protocol(fixed) == ("Fixed AP, at most 150 detections per class over the set, "
                                        "no per-image cap")
    assert describe_protocol(pooled).startswith("pooled AP, at most 150 detections per class")
    # The headline of pooled AP has every summary number even without per-class AP.
    assert headline_metrics(pooled)["AP"] == pooled["AP"]


def test_a_metrics_dict_without_settings_is_the_lvis_protocol() -> None:
    assert evaluation_settings({"AP": 0.3, "max_dets": 300})["protocol"] == "lvis"
