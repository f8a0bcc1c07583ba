import numpy as np
import pytest
import torch

from bacl.analysis import confusion
from bacl.analysis.errors import AnalysisInputError, MissingStatisticsError
from bacl.analysis.trained_stage import LOSS_PREFIX
from bacl.losses.fcbl import FCBL

CATS = [{"id": 10, "name": "a", "frequency": "f"}, {"id": 20, "name": "b", "frequency": "c"},
        {"id": 30, "name": "c", "frequency": "r"}]


def gt_with(*boxes):
    anns = [{"id": k + 1, "image_id": img, "category_id": cat, "bbox": box} for k, (img, cat, box) in enumerate(boxes)]
    return {"categories": CATS, "annotations": anns, "images": [{"id": 1}, {"id": 2}]}


def slow_detection_confusion(gt, dets, iou_threshold):
    """Per ground-truth box, a plain loop over every detection."""
    ids = sorted(c["id"] for c in gt["categories"])
    out = np.zeros((len(ids), len(ids) + 1), dtype=np.int64)

    def iou(a, b):
        ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
        iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
        inter = ix * iy
        return inter / (a[2] * a[3] + b[2] * b[3] - inter)

    for ann in gt["annotations"]:
        best, label = -1.0, len(ids)
        for det in dets:
            if det["image_id"] == ann["image_id"] and iou(ann["bbox"], det["bbox"]) >= iou_threshold:
                if det["score"] > best:
                    best, label = det["score"], ids.index(det["category_id"])
        out[ids.index(ann["category_id"]), label] += 1
    return out


def test_detection_confusion_by_hand():
    gt = gt_with((1, 10, [0, 0, 10, 10]), (1, 30, [50, 50, 10, 10]), (2, 20, [0, 0, 20, 20]))
    dets = [
        {"image_id": 1, "category_id": 30, "bbox": [0, 0, 10, 10], "score": 0.9},  # a seen as c
        {"image_id": 1, "category_id": 10, "bbox": [1, 1, 10, 10], "score": 0.5},  # lower score
        {"image_id": 1, "category_id": 10, "bbox": [80, 80, 5, 5], "score": 0.99},  # overlaps nothing
    ]
    counts = confusion.detection_confusion(gt, dets)
    expected = np.zeros((3, 4), dtype=np.int64)
    expected[0, 2] = 1  # a -> c
    expected[2, 3] = 1  # c missed
    expected[1, 3] = 1  # b: image without detections
    np.testing.assert_array_equal(counts, expected)
    assert confusion.detection_confusion(gt, dets, min_score=0.95).sum() == 3


def test_detection_confusion_matches_a_slow_reference():
    rng = np.random.default_rng(0)
    boxes = [(int(rng.integers(1, 3)), int(rng.choice([10, 20, 30])),
              [float(v) for v in rng.uniform(0, 40, 2)] + [float(v) for v in rng.uniform(5, 20, 2)])
             for _ in range(30)]
    gt = gt_with(*boxes)
    dets = [{"image_id": int(rng.integers(1, 3)), "category_id": int(rng.choice([10, 20, 30])),
             "bbox": [float(v) for v in rng.uniform(0, 40, 2)] + [float(v) for v in rng.uniform(5, 20, 2)],
             "score": float(rng.uniform())} for _ in range(200)]
    for thr in (0.3, 0.5):
        np.testing.assert_array_equal(confusion.detection_confusion(gt, dets, iou_threshold=thr),
                                      slow_detection_confusion(gt, dets, thr))


def test_detection_confusion_rejects_unknown_categories_and_bad_threshold():
    gt = gt_with((1, 10, [0, 0, 10, 10]))
    with pytest.raises(AnalysisInputError, match="unknown category ids"):
        confusion.detection_confusion(gt, [{"image_id": 1, "category_id": 99, "bbox": [0, 0, 1, 1], "score": 1}])
    with pytest.raises(ValueError, match="iou_threshold"):
        confusion.detection_confusion(gt, [], iou_threshold=0.0)


def test_row_rates_and_bin_flow():
    counts = np.array([[2, 0, 2, 0], [0, 0, 0, 0], [1, 1, 1, 1]])
    rates = confusion.row_rates(counts)
    np.testing.assert_allclose(rates[0], [0.5, 0, 0.5, 0])
    np.testing.assert_array_equal(rates[1], 0)
    flow = confusion.bin_flow(rates, ["f", "c", "r"])
    # rows r, c, f; columns r, c, f, missed
    np.testing.assert_allclose(flow[0], [0.25, 0.25, 0.25, 0.25])
    assert np.isnan(flow[1]).all()  # the common class has no row mass
    np.testing.assert_allclose(flow[2], [0.5, 0.0, 0.5, 0.0])
    mass = confusion.head_tail_mass(flow)
    assert mass["frequent->rare"] == pytest.approx(0.5) and mass["rare->frequent"] == pytest.approx(0.25)
    with pytest.raises(ValueError, match="rates must be"):
        confusion.bin_flow(np.zeros((2, 2)), ["f", "c", "r"])


def test_bin_flow_averages_classes_of_a_bin():
    cm = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.5, 0.5, 0.0]])
    flow = confusion.bin_flow(cm, ["f", "f", "r"])
    r, c, f = (confusion.BINS.index(b) for b in "rcf")
    np.testing.assert_allclose(flow[f], [0.5, 0.0, 0.5])  # mean of the two frequent rows
    np.testing.assert_allclose(flow[r], [0.0, 0.0, 1.0])
    assert np.isnan(flow[c]).all()  # no common class


def test_training_confusion_is_fcbl_own_normalisation():
    fcbl = FCBL(num_classes=2)
    fcbl.cm_num.copy_(torch.tensor([[3.0, 1.0], [0.0, 0.0]], dtype=torch.float64))
    fcbl.num_gt.copy_(torch.tensor([4.0, 0.0], dtype=torch.float64))
    state = {LOSS_PREFIX + k: v for k, v in fcbl.state_dict().items()}
    cm, num_gt = confusion.training_confusion(state)
    np.testing.assert_allclose(cm, [[0.75, 0.25], [0.0, 0.0]])
    np.testing.assert_array_equal(cm, fcbl.cm.numpy())
    np.testing.assert_array_equal(num_gt, [4, 0])
    with pytest.raises(MissingStatisticsError, match="^w.pt: no FCBL statistics.*fcbl"):
        confusion.training_confusion({}, source="w.pt")


def test_most_confused_pairs():
    rates = np.array([[0.5, 0.4, 0.1, 0.0], [0.0, 1.0, 0.0, 0.0], [0.3, 0.0, 0.7, 0.0]])
    pairs = confusion.most_confused_pairs(rates, ["a", "b", "c"], k=5)
    assert pairs == [{"true": "a", "predicted": "b", "rate": 0.4}, {"true": "c", "predicted": "a", "rate": 0.3},
                     {"true": "a", "predicted": "c", "rate": 0.1}]
    assert confusion.most_confused_pairs(rates, ["a", "b", "c"], k=0) == []
    assert confusion.confused_classes(rates, num_pairs=2) == [0, 1, 2]
    assert confusion.confused_classes(rates, num_pairs=1) == [0, 1]
    assert confusion.confused_classes(np.eye(3), num_pairs=5) == []  # nothing confused
    with pytest.raises(ValueError, match="rates must be"):
        confusion.confused_pair_indices(rates, 4, 1)


def slow_confused_pairs(rates, k):
    """Every off-diagonal foreground entry, sorted in Python: largest first, then row-major."""
    c = rates.shape[0]
    entries = [(-rates[a, b], a, b) for a in range(c) for b in range(c) if a != b and rates[a, b] > 0]
    return [(a, b, -r) for r, a, b in sorted(entries)[:k]]


def test_confused_pairs_match_a_slow_reference_with_ties():
    rng = np.random.default_rng(3)
    rates = rng.integers(0, 4, size=(40, 41)) / 4.0  # many ties, a "missed" column, zeros
    assert confusion.confused_pair_indices(rates, 40, 25) == slow_confused_pairs(rates, 25)
    assert confusion.confused_pair_indices(rates[:, :40], 40, 10_000) == slow_confused_pairs(rates, 10_000)


def test_at_lvis_scale_the_confusion_views_stay_bounded():
    """1,203 classes with random detections: the bin view is 3 x 4 and the per-class picks
    are bounded, whatever C."""
    num_classes = 1203
    rng = np.random.default_rng(11)
    counts = rng.poisson(0.02, size=(num_classes, num_classes + 1))
    counts[np.arange(num_classes), np.arange(num_classes)] += rng.integers(0, 20, num_classes)
    rates = confusion.row_rates(counts)
    frequency = list(rng.choice(["r", "c", "f"], size=num_classes, p=[0.28, 0.38, 0.34]))
    flow = confusion.bin_flow(rates, frequency)
    assert flow.shape == (3, 4)
    np.testing.assert_allclose(np.nansum(flow, axis=1), 1.0)
    chosen = confusion.confused_classes(rates, num_pairs=30)
    assert 2 <= len(chosen) <= 60
    # the 30 pairs: the largest off-diagonal rates, checked against a sort of every entry
    fg = rates[:, :num_classes].copy()
    np.fill_diagonal(fg, 0)
    top = np.sort(fg, axis=None)[::-1][:30]
    got = [rate for _, _, rate in confusion.confused_pair_indices(rates, num_classes, 30)]
    np.testing.assert_allclose(got, top)
    names = [f"class{k}" for k in range(num_classes)]
    assert len(confusion.most_confused_pairs(rates, names, k=8)) == 8

    cats = [{"id": 1000 + k, "name": names[k], "frequency": frequency[k]} for k in range(num_classes)]

    def box():
        return [float(v) for v in rng.uniform(0, 60, 2)] + [float(v) for v in rng.uniform(5, 30, 2)]

    gt = {"categories": cats, "images": [{"id": i} for i in range(20)],
          "annotations": [{"id": k + 1, "image_id": int(rng.integers(0, 20)),
                           "category_id": 1000 + int(rng.integers(0, 40)), "bbox": box()} for k in range(120)]}
    dets = [{"image_id": int(rng.integers(0, 20)), "category_id": 1000 + int(rng.integers(0, num_classes)),
             "bbox": box(), "score": float(rng.uniform())} for _ in range(600)]
    detected = confusion.detection_confusion(gt, dets, iou_threshold=0.3)
    assert detected.shape == (num_classes, num_classes + 1) and detected.sum() == 120
    np.testing.assert_array_equal(detected, slow_detection_confusion(gt, dets, 0.3))


def test_on_real_checkpoints(tiny_study):
    cm, num_gt = confusion.load_training_confusion(tiny_study["bacl"]["final"])
    seen = num_gt > 0
    np.testing.assert_allclose(cm[seen].sum(axis=1), 1.0, rtol=1e-6)
    with pytest.raises(KeyError, match="model_final.pt"):
        confusion.load_training_confusion(tiny_study["baseline"]["final"])  # trained with bce
