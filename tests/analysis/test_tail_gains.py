import json
import math
import random

import pytest

from bacl.analysis import tail_gains
from bacl.analysis.errors import AnalysisInputError
from bacl.errors import MissingFileError


def metrics(aps: dict[int, float | None], *, counts: dict[int, int], freq: dict[int, str], **summary) -> dict:
    per_class = [{"category_id": c, "name": f"class{c}", "frequency": freq[c], "image_count": counts[c], "AP": ap}
                 for c, ap in sorted(aps.items())]
    return {"AP": 0.3, "APr": 0.1, "APc": 0.2, "APf": -1.0, **summary, "per_class": per_class}


COUNTS = {1: 2, 2: 8, 3: 40, 4: 150, 5: 5}
FREQ = {1: "r", 2: "r", 3: "c", 4: "f", 5: "r"}
BASE = metrics({1: 0.0, 2: 0.10, 3: 0.30, 4: 0.50, 5: None}, counts=COUNTS, freq=FREQ)
NEW = metrics({1: 0.20, 2: 0.05, 3: 0.35, 4: 0.50, 5: None}, counts=COUNTS, freq=FREQ, APr=0.2)


def test_per_class_records_drop_undefined_ap():
    rows = tail_gains.per_class_records(BASE)
    assert [r["category_id"] for r in rows] == [1, 2, 3, 4]
    assert rows[0] == {"category_id": 1, "name": "class1", "frequency": "r", "image_count": 2, "AP": 0.0}


def test_per_class_csv_round_trip(tmp_path):
    tricky = metrics({1: 0.25}, counts={1: 3}, freq={1: "r"})
    tricky["per_class"][0]["name"] = 'a, "quoted" name'
    path = tmp_path / "sub" / "per_class.csv"
    tail_gains.write_per_class_csv(path, tricky)
    assert path.read_text().splitlines()[0] == "category_id,name,frequency,image_count,AP"
    assert tail_gains.read_per_class_csv(path) == tail_gains.per_class_records(tricky)


def test_ap_by_frequency_turns_minus_one_into_none():
    assert tail_gains.ap_by_frequency(BASE) == {"AP": 0.3, "APr": 0.1, "APc": 0.2, "APf": None}


def test_ap_by_image_count_bins():
    rows = tail_gains.ap_by_image_count(BASE, edges=(1, 5, 101))
    assert [(r["label"], r["classes"]) for r in rows] == [("1-4", 1), ("5-100", 2), (">=101", 1)]
    assert rows[1]["AP"] == pytest.approx((0.10 + 0.30) / 2)
    assert rows[2]["hi"] == math.inf
    empty = tail_gains.ap_by_image_count(BASE, edges=(1000,))
    assert empty == [{"lo": 1000, "hi": math.inf, "label": ">=1000", "classes": 0, "AP": None}]
    with pytest.raises(ValueError, match="increasing"):
        tail_gains.ap_by_image_count(BASE, edges=(5, 1))


def test_compare_frequency_bins():
    rows = {r["metric"]: r for r in tail_gains.compare_frequency_bins(BASE, NEW)}
    assert rows["APr"]["delta"] == pytest.approx(0.1)
    assert rows["APf"]["delta"] is None


def test_ap_changes_and_top_changes():
    changes = tail_gains.ap_changes(BASE, NEW)
    assert [r["category_id"] for r in changes] == [1, 2, 3, 4]  # by image count
    assert [r["delta"] for r in changes] == pytest.approx([0.2, -0.05, 0.05, 0.0])
    gained, lost = tail_gains.top_changes(changes, k=1)
    assert [r["category_id"] for r in gained] == [1]
    assert [r["category_id"] for r in lost] == [2]
    gained, lost = tail_gains.top_changes(changes, k=5)
    assert [r["category_id"] for r in gained] == [1, 3] and len(lost) == 1
    assert tail_gains.top_changes([], k=3) == ([], [])


def test_ap_changes_refuses_other_categories():
    other = metrics({9: 0.1}, counts={9: 1}, freq={9: "r"})
    with pytest.raises(AnalysisInputError, match="same annotations"):
        tail_gains.ap_changes(BASE, other)


def test_mean_change_by_frequency():
    summary = tail_gains.mean_change_by_frequency(tail_gains.ap_changes(BASE, NEW))
    assert summary["r"] == {"classes": 2, "mean_delta": pytest.approx(0.075), "gained": 1, "lost": 1}
    assert summary["f"]["mean_delta"] == 0.0


def test_load_metrics_names_the_file(tmp_path):
    with pytest.raises(MissingFileError, match="missing.json"):
        tail_gains.load_metrics(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(AnalysisInputError, match="bad.json"):
        tail_gains.load_metrics(bad)
    bad.write_text(json.dumps({"AP": 0.1}))
    with pytest.raises(AnalysisInputError, match="per_class"):
        tail_gains.load_metrics(bad)
    good = tmp_path / "good.json"
    good.write_text(json.dumps(BASE))
    assert tail_gains.load_metrics(good) == BASE


def test_on_a_real_evaluation(tiny_study):
    metrics_ = tail_gains.load_metrics(tiny_study["bacl"]["metrics"])
    rows = tail_gains.per_class_records(metrics_)
    assert rows and all(0.0 <= r["AP"] <= 1.0 for r in rows)
    changes = tail_gains.ap_changes(tail_gains.load_metrics(tiny_study["baseline"]["metrics"]), metrics_)
    assert {r["category_id"] for r in changes} <= {r["category_id"] for r in rows}


def change(cat: int, delta: float, *, freq: str = "r", images: int = 5) -> dict:
    return {"category_id": cat, "name": f"class{cat}", "frequency": freq, "image_count": images,
            "AP_baseline": 0.5, "AP_method": 0.5 + delta, "delta": delta}


def test_gallery_classes_picks_half_gains_half_losses_of_the_bin():
    changes = [change(1, 0.3), change(2, 0.3, images=2), change(3, 0.1), change(4, -0.2), change(5, -0.05),
               change(6, 0.9, freq="f"), change(7, 0.0, images=1), change(8, 0.0, images=3)]
    picks = tail_gains.gallery_classes(changes, num=4)
    assert [(p["category_id"], p["pick"]) for p in picks] == [(2, "gained"), (1, "gained"), (4, "lost"), (5, "lost")]
    assert [p["category_id"] for p in tail_gains.gallery_classes(changes, num=3)] == [2, 1, 4]
    picks = tail_gains.gallery_classes(changes, num=8)  # gains fill in; then the unchanged, rarest first
    assert [p["category_id"] for p in picks] == [2, 1, 3, 4, 5, 7, 8]
    assert tail_gains.describe_picks(picks) == "3 gained most, 2 lost most, 2 unchanged"
    only_losses = [change(1, -0.1), change(2, -0.4), change(3, 0.2)]
    assert [p["category_id"] for p in tail_gains.gallery_classes(only_losses, num=4)] == [3, 2, 1]
    assert tail_gains.gallery_classes(changes, frequency="c") == [] and tail_gains.describe_picks([]) == "none"
    assert tail_gains.gallery_classes(changes, num=0) == []
    with pytest.raises(ValueError):
        tail_gains.gallery_classes(changes, num=-1)
    assert "pick" not in changes[0]  # rows are copies


def test_gallery_classes_at_lvis_scale():
    """1,203 classes: the picks stay at most ``num``, and are the extremes of the rare bin."""
    rng = random.Random(1)
    changes = [change(c, rng.uniform(-0.5, 0.5), freq=rng.choice("rcf"), images=rng.randint(1, 2000))
               for c in range(1203)]
    picks = tail_gains.gallery_classes(changes, num=6)
    rare = [r["delta"] for r in changes if r["frequency"] == "r"]
    assert len(picks) == 6 and all(p["frequency"] == "r" for p in picks)
    assert [p["delta"] for p in picks[:3]] == sorted(rare, reverse=True)[:3]
    assert [p["delta"] for p in picks[3:]] == sorted(rare)[:3]
