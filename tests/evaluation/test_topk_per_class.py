"""The streaming top-K per class against a sort of everything at once."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bacl.errors import BaclError
from bacl.evaluation.fixed_ap import evaluate_fixed_ap
from bacl.evaluation.pooled_ap import evaluate_pooled_ap
from bacl.evaluation.topk_per_class import TopKPerClass
from tests.evaluation.test_lvis_eval import make_case

REPO = Path(__file__).resolve().parents[2]


def random_stream(seed: int, *, num_images: int, num_classes: int,
                  max_per_image: int) -> list[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
    """Per image: (image_id, boxes (n, 4) xyxy, scores (n,), labels (n,)); coarse scores
    so that ties are common; some images empty; class 0 never appears."""
    rng = np.random.default_rng(seed)
    stream = []
    for i in range(num_images):
        n = 0 if i % 7 == 3 else int(rng.integers(0, max_per_image + 1))
        xy = rng.uniform(0, 100, size=(n, 2)).round(2)
        wh = rng.uniform(1, 50, size=(n, 2)).round(2)
        scores = rng.integers(1, 12, size=n) / 12.0
        labels = rng.integers(1, num_classes, size=n)
        stream.append((1000 + 3 * i, np.hstack([xy, xy + wh]), scores.astype(np.float32), labels))
    return stream


def slow_top_k(stream, k: int, category_ids: list[int]) -> list[dict[str, Any]]:
    """Every detection in the order added; per class Python's stable sort by score, first
    k; listed by class, score descending, then order added."""
    dets = []
    for image_id, boxes, scores, labels in stream:
        for box, score, label in zip(boxes.tolist(), scores.tolist(), labels.tolist()):
            x1, y1, x2, y2 = box
            dets.append({"image_id": image_id, "category_id": category_ids[label],
                         "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score, "label": label})
    out = []
    for label in range(len(category_ids)):
        mine = [d for d in dets if d["label"] == label]
        out.extend(sorted(mine, key=lambda d: d["score"], reverse=True)[:k])
    for d in out:
        del d["label"]
    return out


@pytest.mark.parametrize("seed,k,buffer_size", [(0, 5, 16), (1, 1, 1), (2, 40, 7), (3, 8, 1 << 16)])
def test_streaming_equals_one_sort_of_everything(seed: int, k: int, buffer_size: int) -> None:
    num_classes = 9
    category_ids = [100 + 7 * c for c in range(num_classes)]
    stream = random_stream(seed, num_images=60, num_classes=num_classes, max_per_image=12)
    acc = TopKPerClass(num_classes=num_classes, k=k, category_ids=category_ids,
                       buffer_size=buffer_size)
    bound = num_classes * k + max(buffer_size, num_classes * k)
    for image_id, boxes, scores, labels in stream:
        acc.add(image_id, boxes, scores, labels)
        assert acc.num_held <= bound + len(scores)
    assert acc.records() == slow_top_k(stream, k, category_ids)
    assert len(acc) == len(acc.records())


def test_merge_in_rank_order_equals_one_pass() -> None:
    stream = random_stream(4, num_images=45, num_classes=6, max_per_image=10)
    whole = TopKPerClass(num_classes=6, k=4, buffer_size=8)
    parts = [TopKPerClass(num_classes=6, k=4, buffer_size=8) for _ in range(3)]
    for i, item in enumerate(stream):
        whole.add(*item)
        parts[i // 15].add(*item)  # rank r holds a contiguous share, as a gather in rank order
    merged = parts[0]
    for other in parts[1:]:
        merged.merge(other)
    assert merged.records() == whole.records()


def test_min_scores_is_the_kth_best_and_pruning_below_it_changes_nothing() -> None:
    stream = random_stream(5, num_images=80, num_classes=5, max_per_image=15)
    full = TopKPerClass(num_classes=5, k=6, buffer_size=10)
    pruned = TopKPerClass(num_classes=5, k=6, buffer_size=10)
    for image_id, boxes, scores, labels in stream:
        full.add(image_id, boxes, scores, labels)
        # What inference may do before NMS: drop what can no longer be kept.
        keep = scores >= pruned.min_scores()[labels]
        pruned.add(image_id, boxes[keep], scores[keep], labels[keep])
    assert pruned.records() == full.records()
    len(full)  # merges the buffer
    floor = full.min_scores()
    assert floor[0] == -np.inf  # class 0 is never detected
    arrays = full.arrays()
    for label in range(1, 5):
        scores = arrays["score"][arrays["category_id"] == label]
        assert len(scores) == 6 and floor[label] == scores.min()


def test_evaluating_the_collected_detections_equals_evaluating_all() -> None:
    """Top-K at inference then Fixed AP / pooled AP equals those metrics on everything
    (boxes on a 1/4 grid, so that xyxy <-> xywh is exact)."""
    gt, dets = make_case(6, max_dets=25)
    for d in dets:
        d["bbox"] = [round(v * 4) / 4 for v in d["bbox"]]
    cat_ids = sorted(c["id"] for c in gt["categories"])
    acc = TopKPerClass(num_classes=len(cat_ids), k=5, category_ids=cat_ids, buffer_size=32)
    ordered = []
    for image_id in sorted({d["image_id"] for d in dets}, reverse=True):
        mine = [d for d in dets if d["image_id"] == image_id]
        ordered += mine
        xywh = np.array([d["bbox"] for d in mine])
        acc.add(image_id, np.hstack([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]]),
                np.array([d["score"] for d in mine]),
                np.array([cat_ids.index(d["category_id"]) for d in mine]))
    for evaluate in (evaluate_fixed_ap, evaluate_pooled_ap):
        collected = evaluate(annotations=gt, detections=acc.arrays(), max_dets_per_class=5)
        everything = evaluate(annotations=gt, detections=ordered, max_dets_per_class=5)
        assert collected == everything


def test_empty_images_and_no_detections_at_all() -> None:
    acc = TopKPerClass(num_classes=3, k=2)
    acc.add(7, np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64))
    assert acc.records() == [] and len(acc) == 0
    assert acc.arrays()["bbox"].shape == (0, 4)
    assert (acc.min_scores() == -np.inf).all()


@pytest.mark.parametrize("args,match", [
    (dict(num_classes=0, k=5), "num_classes"),
    (dict(num_classes=3, k=0), "k must"),
    (dict(num_classes=3, k=2, buffer_size=0), "buffer_size"),
    (dict(num_classes=3, k=2, category_ids=[1, 2]), "category_ids"),
    (dict(num_classes=3, k=2, category_ids=[1, 2, 2]), "repeat"),
])
def test_bad_settings_are_refused(args: dict[str, Any], match: str) -> None:
    with pytest.raises(BaclError, match=match):
        TopKPerClass(**args)


@pytest.mark.parametrize("boxes,scores,labels,match", [
    (np.zeros((2, 4)), np.ones(2), np.array([0, 3]), "image 5: label 3 is outside"),
    (np.zeros((2, 4)), np.ones(2), np.array([-1, 0]), "label -1"),
    (np.zeros((2, 3)), np.ones(2), np.array([0, 1]), "image 5: boxes"),
    (np.zeros((2, 4)), np.ones((2, 1)), np.array([0, 1]), "scores"),
    (np.zeros((2, 4)), np.ones(2), np.array([0.0, 1.0]), "labels must be an integer"),
    (np.zeros((2, 4)), np.array([0.5, np.nan]), np.array([0, 1]), "finite"),
])
def test_bad_detections_name_the_image_and_argument(boxes, scores, labels, match: str) -> None:
    acc = TopKPerClass(num_classes=3, k=2)
    with pytest.raises(BaclError, match=match):
        acc.add(5, boxes, scores, labels)
    with pytest.raises(BaclError, match="image_id"):
        acc.add(5.0, np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64))


def test_merge_refuses_a_different_budget_and_itself() -> None:
    acc = TopKPerClass(num_classes=3, k=2)
    with pytest.raises(BaclError, match="cannot merge"):
        acc.merge(TopKPerClass(num_classes=3, k=3))
    with pytest.raises(BaclError, match="itself"):
        acc.merge(acc)


def test_evaluation_modules_do_not_import_torch() -> None:
    code = ("import sys; import bacl.evaluation; import bacl.evaluation.topk_per_class; "
            "import bacl.evaluation.protocols; assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO,
                   env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"})
