"""Time bacl's evaluators against the reference implementations on LVIS-sized files.

Generates, with a fixed seed and in a temporary folder (nothing is downloaded), an
LVIS-v1-like ground-truth file (1203 categories with r/c/f frequencies and
``image_count``, long-tailed category occurrence, 1-3 dozen boxes per image of all
sizes, ``neg_category_ids`` / ``not_exhaustive_category_ids``) and a results file
with a fixed number of detections per image: jittered copies of ground-truth boxes
(right or confusable category, high scores) mixed with random boxes (mostly low
scores). Every evaluator reads the same two files; the times include reading them.

Modes (``--modes``), each timed against its reference:

- ``lvis``: ``evaluate_lvis`` (300 per image) against lvis-api 0.5.3's ``LVISEval``;
- ``fixed``: ``evaluate_fixed_ap`` against the authors' definition (large-vocab-devil
  ``scripts/evaluate_ap_fixed.py``): each category's K best by a stable Python sort,
  then lvis-api with no per-image cap;
- ``pooled``: ``evaluate_pooled_ap`` against the authors' ``LVISPooledEval`` when
  ``--devil-checkout`` points to a checkout of github achalddave/large-vocab-devil
  (its ``lvdevil/eval_wrapper.py`` is imported from there; the package is not
  installed), otherwise without a reference.

Every mode's time is also given as a ratio to bacl's ``lvis`` mode in the same run;
bacl's times are the best of ``--repeats`` rounds (each round runs every mode once,
after one untimed warm-up run), the references' a single run.
K defaults to half a detection per class and image (``scaled_max_dets_per_class``).
Each reference runs in a child process, so that its memory is returned. Usage::

    python benchmarks/evaluator_speed.py                      # 5000 images x 300 dets
    python benchmarks/evaluator_speed.py --images 500 --skip-reference
    python benchmarks/evaluator_speed.py --images 2000 --devil-checkout ../large-vocab-devil
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

# LVIS v1 has 337 rare, 461 common and 405 frequent categories.
FREQUENCY_COUNTS = {"r": 337, "c": 461, "f": 405}
SUMMARY_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "APr", "APc", "APf")
MODES = ("lvis", "fixed", "pooled")


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
        width, height = int(rng.integers(320, 641)), int(rng.integers(240, 481))
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


def _lvis_api() -> Any:
    if not hasattr(np, "float"):
        # lvis 0.5.3 uses the alias removed in numpy 1.24; only this script patches it.
        np.float = float  # type: ignore[attr-defined]
    import lvis

    return lvis


def _per_class_budget(results: list[dict[str, Any]], k: int) -> list[dict[str, Any]]:
    """The authors' budget: per category (first appearance order), a stable sort by
    score, descending, cut at k."""
    by_cat: dict[int, list[dict[str, Any]]] = {}
    for det in results:
        by_cat.setdefault(det["category_id"], []).append(det)
    return [d for dets in by_cat.values() for d in sorted(dets, key=lambda d: d["score"], reverse=True)[:k]]


def _lvis_eval_outputs(ev: Any) -> dict[str, Any]:
    precision = ev.eval["precision"][:, :, :, 0]
    per_class = [float(np.mean(p[p > -1])) if (p > -1).any() else None
                 for p in np.moveaxis(precision, 2, 0)]
    return {"summary": {k: float(ev.results[k]) for k in SUMMARY_KEYS}, "per_class": per_class}


def run_reference(mode: str, gt_path: str, dt_path: str, budget: int,
                  devil_checkout: str | None) -> dict[str, Any]:
    """The reference of ``mode`` on the two files: summary, per-class AP (None where
    the protocol has none) and the wall time in seconds."""
    tic = time.perf_counter()
    lvis = _lvis_api()
    gt = lvis.LVIS(gt_path)
    if mode == "lvis":
        dt = lvis.LVISResults(gt, dt_path, max_dets=budget)
        ev = lvis.LVISEval(gt, dt, iou_type="bbox")
        ev.params.max_dets = budget
        ev.run()
        out = _lvis_eval_outputs(ev)
    else:
        with open(dt_path) as f:
            results = _per_class_budget(json.load(f), budget)
        dt = lvis.LVISResults(gt, results, max_dets=-1)
        if mode == "fixed":
            ev = lvis.LVISEval(gt, dt, iou_type="bbox")
            ev.params.max_dets = -1
            ev.run()
            out = _lvis_eval_outputs(ev)
        else:
            sys.path.insert(0, devil_checkout)
            from lvdevil.eval_wrapper import LVISPooledEval

            ev = LVISPooledEval(gt, dt, iou_type="bbox", pools=["all", "r", "c", "f"])
            ev.params.max_dets = -1
            ev.run()
            summary = {"AP": ev.results["AP-pooled-all"]}
            summary.update({f"AP{p}": ev.results[f"AP-pooled-{p}"] for p in "rcf"})
            summary.update(AP50=ev._summarize_pool("ap", 0, iou_thr=0.5),
                           AP75=ev._summarize_pool("ap", 0, iou_thr=0.75))
            for key, area in (("APs", "small"), ("APm", "medium"), ("APl", "large")):
                summary[key] = ev._summarize_pool("ap", 0, area_rng=area)
            out = {"summary": {k: float(v) for k, v in summary.items()}, "per_class": None}
    out["seconds"] = time.perf_counter() - tic
    return out


def run_ours(mode: str, gt_path: str, dt_path: str, budget: int) -> dict[str, Any]:
    """bacl's evaluator of ``mode``, once, with its wall time in seconds."""
    from bacl.evaluation.protocols import evaluate_detections

    tic = time.perf_counter()
    metrics = evaluate_detections(annotations=gt_path, detections=dt_path, protocol=mode,
                                  max_dets=budget, max_dets_per_class=budget)
    seconds = time.perf_counter() - tic
    per_class = [c["AP"] for c in metrics["per_class"]] if "per_class" in metrics else None
    return {"summary": {k: metrics[k] for k in SUMMARY_KEYS}, "per_class": per_class,
            "metrics": metrics, "seconds": seconds}


def in_child(fn: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """``fn(*args)`` in a fresh process (its memory goes back to the system after)."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(fn, args)


def max_abs_diff(a: dict[str, Any], b: dict[str, Any]) -> float:
    """Largest difference over summary and per-class numbers; inf if null-ness differs."""
    diffs = [abs(a["summary"][k] - b["summary"][k]) for k in SUMMARY_KEYS]
    if a["per_class"] is None or b["per_class"] is None:
        return max(diffs)
    for x, y in zip(a["per_class"], b["per_class"], strict=True):
        if (x is None) != (y is None):
            return float("inf")
        if x is not None:
            diffs.append(abs(x - y))
    return max(diffs)


def _compared(out: dict[str, Any]) -> str:
    n = len([x for x in out["per_class"] if x is not None]) if out["per_class"] is not None else 0
    return f"summary + {n} per-class APs" if n else "summary"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=5000)
    parser.add_argument("--dets-per-image", type=int, default=300)
    parser.add_argument("--dets-per-class", type=int, default=None,
                        help="K of the fixed and pooled modes (default: half the images)")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=5,
                        help="bacl's times are the best of this many rounds (references run once)")
    parser.add_argument("--skip-reference", action="store_true", help="time only bacl's evaluators")
    parser.add_argument("--devil-checkout", default=None,
                        help="a checkout of achalddave/large-vocab-devil: its LVISPooledEval is "
                             "the pooled mode's reference")
    args = parser.parse_args()
    from bacl.evaluation.protocols import scaled_max_dets_per_class

    per_class = args.dets_per_class or scaled_max_dets_per_class(args.images)
    budgets = {"lvis": args.dets_per_image, "fixed": per_class, "pooled": per_class}
    modes = ["lvis"] + [m for m in args.modes if m != "lvis"]  # the baseline of the ratios

    load = " | load avg %.1f %.1f %.1f" % os.getloadavg() if hasattr(os, "getloadavg") else ""
    print(f"machine: {platform.platform()} | {platform.processor() or platform.machine()} | "
          f"cpus {os.cpu_count()} | python {platform.python_version()} | "
          f"numpy {np.__version__}{load}")
    rng = np.random.default_rng(args.seed)
    t0 = time.perf_counter()
    gt, dets = make_dataset(rng, args.images, args.dets_per_image)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        gt_path, dt_path = str(Path(tmp) / "gt.json"), str(Path(tmp) / "dets.json")
        with open(gt_path, "w") as f:
            json.dump(gt, f)
        with open(dt_path, "w") as f:
            json.dump(dets, f)
        del gt, dets
        print(f"data: {args.images} images, {args.dets_per_image} detections per image, "
              f"results file {os.path.getsize(dt_path) / 2**20:.0f} MiB "
              f"(generated in {time.perf_counter() - t0:.1f} s); per-class budget K = {per_class}")
        run_ours("lvis", gt_path, dt_path, budgets["lvis"])  # warm-up (imports, file cache)
        # Rounds interleave the modes, so that a change in the machine's load hits all alike.
        runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in modes}
        for _ in range(args.repeats):
            for mode in modes:
                runs[mode].append(run_ours(mode, gt_path, dt_path, budgets[mode]))
        base = min(r["seconds"] for r in runs["lvis"])
        for mode in modes:
            ours = min(runs[mode], key=lambda r: r["seconds"])
            median = float(np.median([r["seconds"] for r in runs[mode]]))
            s = ours["summary"]
            print(f"{mode:6s} bacl: {ours['seconds']:.2f} s best, {median:.2f} s median of "
                  f"{args.repeats} ({ours['seconds'] / base:.2f}x bacl lvis), "
                  f"{ours['metrics']['num_detections']} detections evaluated, AP={s['AP']:.4f} "
                  f"APr={s['APr']:.4f} APc={s['APc']:.4f} APf={s['APf']:.4f}", flush=True)
            row = {"mode": mode, "budget": budgets[mode], "ours": ours, "ref": None}
            has_reference = mode != "pooled" or args.devil_checkout is not None
            if not args.skip_reference and has_reference and mode in args.modes:
                ref = in_child(run_reference, mode, gt_path, dt_path, budgets[mode], args.devil_checkout)
                row["ref"] = ref
                print(f"{mode:6s} reference: {ref['seconds']:.2f} s, speed-up "
                      f"{ref['seconds'] / ours['seconds']:.1f}x, max abs diff ({_compared(ref)}): "
                      f"{max_abs_diff(ours, ref):.3g}", flush=True)
            if mode in args.modes:
                rows.append(row)
    print()
    print("| mode | budget | detections evaluated | bacl (s) | vs bacl lvis | reference (s) "
          "| speed-up | max abs diff |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        ours, ref = row["ours"], row["ref"]
        budget = (f"{row['budget']} / image" if row["mode"] == "lvis" else f"{row['budget']} / class")
        cells = [row["mode"], budget, str(ours["metrics"]["num_detections"]), f"{ours['seconds']:.2f}",
                 f"{ours['seconds'] / base:.2f}x"]
        if ref is None:
            cells += ["-", "-", "-"]
        else:
            cells += [f"{ref['seconds']:.2f}", f"{ref['seconds'] / ours['seconds']:.1f}x",
                      f"{max_abs_diff(ours, ref):.3g}"]
        print("| " + " | ".join(cells) + " |")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
