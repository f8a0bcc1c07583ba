"""Time bacl's ``evaluate_lvis`` against the official lvis-api on LVIS-sized files.

Generates, with a fixed seed and in a temporary folder (nothing is downloaded), an
LVIS-v1-like ground-truth file (1203 categories with r/c/f frequencies and
``image_count``, long-tailed category occurrence, 1-3 dozen boxes per image of all
sizes, ``neg_category_ids`` / ``not_exhaustive_category_ids``) and a results file
with a fixed number of detections per image: jittered copies of ground-truth boxes
(right or confusable category, high scores) mixed with random boxes (mostly low
scores). Both evaluators then read the same two files; the times include reading
them. Usage::

    python benchmarks/evaluator_speed.py                      # 5000 images x 300 dets
    python benchmarks/evaluator_speed.py --images 500 --skip-reference
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

# LVIS v1 has 337 rare, 461 common and 405 frequent categories.
FREQUENCY_COUNTS = {"r": 337, "c": 461, "f": 405}
SUMMARY_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "APr", "APc", "APf")


def make_categories(rng: np.random.Generator) -> list[dict[str, Any]]:
    """1203 categories whose ``image_count`` matches their frequency bin."""
    bins = {"r": (1, 10), "c": (11, 100), "f": (101, 5000)}
    freqs = [f for f, n in FREQUENCY_COUNTS.items() for _ in range(n)]
    rng.shuffle(freqs)
    cats = []
    for i, freq in enumerate(freqs):
        lo, hi = bins[freq]
        # Log-uniform inside the bin: many categories near the bottom of each bin.
        count = int(np.exp(rng.uniform(np.log(lo), np.log(hi + 1))))
        count = min(max(count, lo), hi)
        cats.append({"id": i + 1, "name": f"category_{i + 1:04d}", "synonyms": [],
                     "frequency": freq, "image_count": count,
                     "instance_count": count * int(rng.integers(1, 4))})
    return cats


def random_boxes(rng: np.random.Generator, n: int, width: float, height: float) -> np.ndarray:
    """``(n, 4)`` xywh boxes inside the image, area log-uniform from 4x4 to the image."""
    area = np.exp(rng.uniform(np.log(16.0), np.log(width * height * 0.8), size=n))
    aspect = np.exp(rng.uniform(np.log(0.33), np.log(3.0), size=n))
    w = np.minimum(np.sqrt(area * aspect), width - 1)
    h = np.minimum(np.sqrt(area / aspect), height - 1)
    x = rng.uniform(0, width - w)
    y = rng.uniform(0, height - h)
    return np.round(np.stack([x, y, w, h], axis=1), 2)


def jitter_boxes(rng: np.random.Generator, boxes: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """``(n, 4)`` copies of ``boxes`` with corners moved by ``scale`` times the box size."""
    x, y, w, h = boxes.T
    d = rng.normal(0.0, 1.0, size=(len(boxes), 4)) * scale[:, None]
    x1, y1 = x + d[:, 0] * w, y + d[:, 1] * h
    x2, y2 = x + w + d[:, 2] * w, y + h + d[:, 3] * h
    out = np.stack([x1, y1, np.maximum(x2 - x1, 0.5), np.maximum(y2 - y1, 0.5)], axis=1)
    return np.round(out, 2)


def make_dataset(rng: np.random.Generator, num_images: int,
                 dets_per_image: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The ground-truth dict and the detection list (LVIS results format)."""
    cats = make_categories(rng)
    cat_ids = np.array([c["id"] for c in cats])
    weight = np.array([c["image_count"] for c in cats], dtype=np.float64)
    weight /= weight.sum()
    images, anns, dets = [], [], []
    for img_id in range(1, num_images + 1):
        width, height = float(rng.integers(320, 641)), float(rng.integers(240, 481))
        n_pos = int(rng.integers(1, 8))
        chosen = rng.choice(cat_ids, size=n_pos + int(rng.integers(2, 12)), replace=False, p=weight)
        pos, neg = chosen[:n_pos], chosen[n_pos:]
        not_exhaustive = [int(c) for c in pos if rng.random() < 0.15]
        images.append({"id": img_id, "width": width, "height": height,
                       "neg_category_ids": [int(c) for c in neg],
                       "not_exhaustive_category_ids": not_exhaustive})
        gt_boxes, gt_cats = [], []
        for cat in pos:
            n_inst = int(min(rng.geometric(0.35), 25))
            boxes = random_boxes(rng, n_inst, width, height)
            for box in boxes:
                # LVIS areas are mask areas, a fraction of the box area.
                area = float(box[2] * box[3] * rng.uniform(0.4, 1.0))
                anns.append({"id": len(anns) + 1, "image_id": img_id, "category_id": int(cat),
                             "bbox": [float(v) for v in box], "area": round(area, 2)})
            gt_boxes.append(boxes)
            gt_cats += [int(cat)] * n_inst
        gt_boxes_arr = np.concatenate(gt_boxes)
        n_near = min(dets_per_image, int(dets_per_image * 0.35))
        src = rng.integers(0, len(gt_boxes_arr), size=n_near)
        near = jitter_boxes(rng, gt_boxes_arr[src], rng.uniform(0.02, 0.25, size=n_near))
        plausible = np.concatenate([pos, neg])
        near_cats = np.where(rng.random(n_near) < 0.7, np.array(gt_cats)[src],
                             rng.choice(plausible, size=n_near))
        n_rand = dets_per_image - n_near
        rand = random_boxes(rng, n_rand, width, height)
        rand_cats = np.where(rng.random(n_rand) < 0.4, rng.choice(plausible, size=n_rand),
                             rng.choice(cat_ids, size=n_rand, p=weight))
        scores = np.concatenate([rng.beta(4, 2, size=n_near), rng.beta(1, 6, size=n_rand)])
        # Five decimals, as many dumps use: ties in score happen and must be handled.
        scores = np.round(scores, 5)
        for box, cat, score in zip(np.concatenate([near, rand]),
                                   np.concatenate([near_cats, rand_cats]), scores):
            dets.append({"image_id": img_id, "category_id": int(cat),
                         "bbox": [float(v) for v in box], "score": float(score)})
    gt = {"info": {"description": "synthetic LVIS-like benchmark"}, "licenses": [],
          "images": images, "annotations": anns, "categories": cats}
    return gt, dets


def run_reference(gt_path: str, dt_path: str, max_dets: int) -> dict[str, Any]:
    """The official lvis-api on the two files; returns summary and per-class AP."""
    if not hasattr(np, "float"):
        # lvis 0.5.3 uses the alias removed in numpy 1.24; only this script patches it.
        np.float = float  # type: ignore[attr-defined]
    from lvis import LVIS, LVISEval, LVISResults

    gt = LVIS(gt_path)
    dt = LVISResults(gt, dt_path, max_dets=max_dets)
    ev = LVISEval(gt, dt, iou_type="bbox")
    ev.params.max_dets = max_dets
    ev.run()
    precision = ev.eval["precision"][:, :, :, 0]
    per_class = [float(np.mean(p[p > -1])) if (p > -1).any() else None
                 for p in np.moveaxis(precision, 2, 0)]
    return {"summary": {k: float(ev.results[k]) for k in SUMMARY_KEYS}, "per_class": per_class}


def run_ours(gt_path: str, dt_path: str, max_dets: int) -> dict[str, Any]:
    from bacl.evaluation.lvis_eval import evaluate_lvis

    metrics = evaluate_lvis(annotations=gt_path, detections=dt_path, max_dets=max_dets)
    return {"summary": {k: metrics[k] for k in SUMMARY_KEYS},
            "per_class": [c["AP"] for c in metrics["per_class"]], "metrics": metrics}


def max_abs_diff(a: dict[str, Any], b: dict[str, Any]) -> float:
    """Largest difference over summary and per-class numbers; inf if null-ness differs."""
    diffs = [abs(a["summary"][k] - b["summary"][k]) for k in SUMMARY_KEYS]
    for x, y in zip(a["per_class"], b["per_class"], strict=True):
        if (x is None) != (y is None):
            return float("inf")
        if x is not None:
            diffs.append(abs(x - y))
    return max(diffs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--dets-per-image", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-reference", action="store_true",
                        help="time only bacl's evaluator")
    args = parser.parse_args()

    load = " | load avg %.1f %.1f %.1f" % os.getloadavg() if hasattr(os, "getloadavg") else ""
    print(f"machine: {platform.platform()} | {platform.processor() or platform.machine()} | "
          f"cpus {os.cpu_count()} | python {platform.python_version()} | "
          f"numpy {np.__version__}{load}")
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    gt, dets = make_dataset(rng, args.images, args.dets_per_image)
    with tempfile.TemporaryDirectory() as tmp:
        gt_path, dt_path = str(Path(tmp) / "gt.json"), str(Path(tmp) / "dets.json")
        with open(gt_path, "w") as f:
            json.dump(gt, f)
        with open(dt_path, "w") as f:
            json.dump(dets, f)
        del gt, dets
        print(f"data: {args.images} images, {args.dets_per_image} detections per image, "
              f"results file {os.path.getsize(dt_path) / 2**20:.0f} MiB "
              f"(generated in {time.perf_counter() - t0:.1f} s)")

        t0 = time.perf_counter()
        ours = run_ours(gt_path, dt_path, args.dets_per_image)
        t_ours = time.perf_counter() - t0
        print(f"bacl evaluate_lvis: {t_ours:.2f} s  AP={ours['summary']['AP']:.4f} "
              f"APr={ours['summary']['APr']:.4f} APc={ours['summary']['APc']:.4f} "
              f"APf={ours['summary']['APf']:.4f}")
        if args.skip_reference:
            return
        t0 = time.perf_counter()
        ref = run_reference(gt_path, dt_path, args.dets_per_image)
        t_ref = time.perf_counter() - t0
        print(f"lvis-api LVISEval:  {t_ref:.2f} s  AP={ref['summary']['AP']:.4f}")
        print(f"speed-up: {t_ref / t_ours:.1f}x")
        print(f"max abs diff (summary + {len(ref['per_class'])} per-class APs): "
              f"{max_abs_diff(ours, ref):.3g}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
