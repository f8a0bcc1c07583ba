"""bacl's evaluator and lvis-api's LVISEval on an LVIS-v1-val-sized results file: time and memory.

Ground truth: an LVIS-format val file (``benchmarks/lvis_sized_annotations.py`` writes one
of LVIS v1 val's size: 19,809 images, 1,203 categories, polygons), cut to its first
``--images`` images if asked. Results: ``--dets-per-image`` detections for every image
(LVIS's 300 by default), written to a temporary folder: a third are jittered copies of
the image's ground-truth boxes (their category 70% of the time), the rest random boxes
whose category is one of the image's (40%) or drawn by ``image_count``; scores with five
decimals, so ties happen. Each evaluator runs in its own process on the same two files
(its time includes reading them); its peak RSS is the kernel's (``wait4``). A watchdog
stops a process whose RSS passes ``--memory-limit-gb`` and says so: lvis-api holds every
detection as a Python dict and may not fit at full size, so ``--reference-images`` runs
it (and bacl again, for the ratio) on a smaller cut::

    python benchmarks/lvis_sized_annotations.py --out data/lvis_sized --train-images 0
    python benchmarks/evaluator_scale.py --annotations data/lvis_sized/lvis_v1_val.json
    python benchmarks/evaluator_scale.py --annotations ... --reference-images 2000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec
from evaluator_speed import max_abs_diff  # a sibling script: benchmarks/ is on sys.path
import numpy as np

SUMMARY_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "APr", "APc", "APf")
GiB = 2 ** 30


class _Image(msgspec.Struct, gc=False):
    id: int
    height: int
    width: int


class _Annotation(msgspec.Struct, gc=False):
    image_id: int


class _Sections(msgspec.Struct):
    images: list[msgspec.Raw]
    annotations: list[msgspec.Raw]


def cut_ground_truth(source: Path, dest: Path, num_images: int) -> tuple[list[int], int]:
    """Write ``source`` with only its first ``num_images`` images (0: all) and their
    annotations to ``dest``, record text untouched; returns the image ids and the
    number of annotations."""
    data = source.read_bytes()
    sections = msgspec.json.decode(data, type=_Sections)
    images = sections.images[:num_images] if num_images else sections.images
    ids = [msgspec.json.decode(r, type=_Image).id for r in images]
    keep = set(ids)
    anns = [r for r in sections.annotations
            if msgspec.json.decode(r, type=_Annotation).image_id in keep]
    top = msgspec.json.decode(data, type=dict[str, msgspec.Raw])
    parts = [b'"images":[' + b",".join(images) + b"]",
             b'"annotations":[' + b",".join(anns) + b"]"]
    parts += [msgspec.json.encode(k) + b":" + bytes(v) for k, v in top.items()
              if k not in ("images", "annotations")]
    dest.write_bytes(b"{" + b",".join(parts) + b"}")
    return ids, len(anns)


def write_detections(gt_path: Path, dest: Path, dets_per_image: int,
                     rng: np.random.Generator) -> int:
    """An LVIS results file for every image of ``gt_path``; returns its length."""
    from bacl.lvis_format import read_lvis

    gt = read_lvis(gt_path)
    num_images, num_cats = len(gt.image_ids), len(gt.category_ids)
    weight = np.array([c.get("image_count") or 1 for c in gt.categories], dtype=np.float64)
    weight /= weight.sum()
    order = np.argsort(gt.ann_image_index, kind="stable")
    first = np.searchsorted(gt.ann_image_index[order], np.arange(num_images + 1))
    encoder = msgspec.json.Encoder()
    total = 0
    with open(dest, "wb") as f:
        f.write(b"[")
        for lo in range(0, num_images, 1000):
            hi = min(lo + 1000, num_images)
            img = np.repeat(np.arange(lo, hi), dets_per_image)
            n = len(img)
            count = first[img + 1] - first[img]
            pick = order[np.minimum(first[img] + (rng.random(n) * count).astype(np.int64),
                                    len(order) - 1)] if len(order) else np.zeros(n, np.int64)
            near = (rng.random(n) < 1 / 3) & (count > 0)
            h = gt.image_heights[img].astype(np.float64)
            w = gt.image_widths[img].astype(np.float64)
            area = np.exp(rng.uniform(np.log(16.0), np.log(h * w * 0.8)))
            aspect = np.exp(rng.uniform(np.log(0.33), np.log(3.0), size=n))
            bw, bh = np.minimum(np.sqrt(area * aspect), w - 1), np.minimum(np.sqrt(area / aspect), h - 1)
            boxes = np.stack([rng.uniform(0, w - bw), rng.uniform(0, h - bh), bw, bh], axis=1)
            if len(order):
                src = gt.ann_boxes_xywh[pick]
                jitter = rng.normal(0, 1, (n, 4)) * rng.uniform(0.02, 0.25, (n, 1))
                x1, y1 = src[:, 0] + jitter[:, 0] * src[:, 2], src[:, 1] + jitter[:, 1] * src[:, 3]
                x2 = src[:, 0] + src[:, 2] * (1 + jitter[:, 2])
                y2 = src[:, 1] + src[:, 3] * (1 + jitter[:, 3])
                jittered = np.stack([x1, y1, np.maximum(x2 - x1, 0.5), np.maximum(y2 - y1, 0.5)], 1)
                boxes[near] = jittered[near]
                own = gt.ann_category_index[pick]
            else:
                own = np.zeros(n, np.int64)
            by_count = rng.choice(num_cats, size=n, p=weight)
            use_own = np.where(near, rng.random(n) < 0.7, (rng.random(n) < 0.4) & (count > 0))
            cats = gt.category_ids[np.where(use_own, own, by_count)]
            scores = np.round(np.where(near, rng.beta(4, 2, n), rng.beta(1, 6, n)), 5)
            image_ids = gt.image_ids[img]
            boxes = np.round(boxes, 2).tolist()
            records = [{"image_id": i, "category_id": c, "bbox": b, "score": s}
                       for i, c, b, s in zip(image_ids.tolist(), cats.tolist(), boxes,
                                             scores.tolist())]
            f.write((b"," if total else b"") + encoder.encode(records)[1:-1])
            total += n
        f.write(b"]")
    return total


def evaluate(which: str, gt_path: str, dt_path: str, max_dets: int) -> dict[str, Any]:
    """Run one evaluator in this process; summary, per-class AP and seconds."""
    tic = time.perf_counter()
    if which == "bacl":
        from bacl.evaluation.lvis_eval import evaluate_lvis

        metrics = evaluate_lvis(annotations=gt_path, detections=dt_path, max_dets=max_dets)
        summary = {k: metrics[k] for k in SUMMARY_KEYS}
        per_class = [c["AP"] for c in metrics["per_class"]]
    else:
        if not hasattr(np, "float"):
            # lvis 0.5.3 uses the alias removed in numpy 1.24; only this script patches it.
            np.float = float  # type: ignore[attr-defined]
        from lvis import LVIS, LVISEval, LVISResults

        gt = LVIS(gt_path)
        ev = LVISEval(gt, LVISResults(gt, dt_path, max_dets=max_dets), iou_type="bbox")
        ev.params.max_dets = max_dets
        ev.run()
        precision = ev.eval["precision"][:, :, :, 0]
        summary = {k: float(ev.results[k]) for k in SUMMARY_KEYS}
        per_class = [float(np.mean(p[p > -1])) if (p > -1).any() else None
                     for p in np.moveaxis(precision, 2, 0)]
    return {"seconds": time.perf_counter() - tic, "summary": summary, "per_class": per_class}


def run_child(which: str, gt_path: Path, dt_path: Path, max_dets: int,
              limit_bytes: float) -> dict[str, Any]:
    """:func:`evaluate` in a child process, watched: its result plus ``peak_gib``, or
    ``stopped`` when its RSS passed ``limit_bytes``."""
    cmd = [sys.executable, __file__, "--child", which, "--gt", str(gt_path), "--dets",
           str(dt_path), "--dets-per-image", str(max_dets)]
    out = tempfile.TemporaryFile()
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.DEVNULL)
    tic, stopped = time.perf_counter(), None
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        try:
            with open(f"/proc/{proc.pid}/status") as f:
                rss = next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmRSS:"))
        except (OSError, StopIteration):
            rss = 0
        if rss > limit_bytes and stopped is None:
            stopped = f"stopped at RSS {rss / GiB:.1f} GiB after {time.perf_counter() - tic:.0f} s"
            os.kill(proc.pid, signal.SIGKILL)
        time.sleep(0.2)
    proc.returncode = os.waitstatus_to_exitcode(status)
    peak = usage.ru_maxrss * 1024 / GiB
    if stopped:
        return {"stopped": stopped, "peak_gib": peak}
    if proc.returncode != 0:
        raise RuntimeError(f"{which} evaluator failed with exit code {proc.returncode}")
    out.seek(0)
    result = json.loads(out.read().decode().strip().splitlines()[-1])
    return {**result, "peak_gib": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--annotations", type=Path, help="LVIS-format val file")
    parser.add_argument("--images", type=int, default=0, help="first N images (0: all)")
    parser.add_argument("--reference-images", type=int, default=None,
                        help="images for lvis-api (default: --images; -1: skip lvis-api)")
    parser.add_argument("--dets-per-image", type=int, default=300)
    parser.add_argument("--memory-limit-gb", type=float, default=6.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", choices=["bacl", "lvis-api"], help=argparse.SUPPRESS)
    parser.add_argument("--gt", help=argparse.SUPPRESS)
    parser.add_argument("--dets", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(evaluate(args.child, args.gt, args.dets, args.dets_per_image)))
        return
    if args.annotations is None:
        parser.error("--annotations is required")
    reference = args.images if args.reference_images is None else args.reference_images

    print(f"machine: {platform.platform()} | cpus {os.cpu_count()} | python "
          f"{platform.python_version()} | numpy {np.__version__} | "
          f"load avg {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    limit = args.memory_limit_gb * GiB
    sizes = [args.images] + ([reference] if reference >= 0 and reference != args.images else [])
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            gt_path, dt_path = Path(tmp) / f"gt_{size}.json", Path(tmp) / f"dt_{size}.json"
            ids, num_anns = cut_ground_truth(args.annotations, gt_path, size)
            rng = np.random.default_rng(args.seed)
            num_dets = write_detections(gt_path, dt_path, args.dets_per_image, rng)
            print(f"\n{len(ids)} images, {num_anns} ground-truth boxes, {num_dets} detections "
                  f"(results file {dt_path.stat().st_size / 2**20:.0f} MiB)")
            ours = run_child("bacl", gt_path, dt_path, args.dets_per_image, limit)
            show("bacl evaluate_lvis", ours)
            if size != reference:
                continue
            ref = run_child("lvis-api", gt_path, dt_path, args.dets_per_image, limit)
            show("lvis-api LVISEval", ref)
            if "stopped" not in ref and "stopped" not in ours:
                print(f"  lvis-api / bacl: time {ref['seconds'] / ours['seconds']:.1f}x, "
                      f"peak memory {ref['peak_gib'] / ours['peak_gib']:.1f}x; max abs diff "
                      f"(summary + per-class AP): {max_abs_diff(ours, ref):.3g}")


def show(name: str, result: dict[str, Any]) -> None:
    if "stopped" in result:
        print(f"  {name}: {result['stopped']} (limit); peak RSS {result['peak_gib']:.2f} GiB")
        return
    s = result["summary"]
    print(f"  {name}: {result['seconds']:.1f} s, peak RSS {result['peak_gib']:.2f} GiB, "
          f"AP={s['AP']:.4f} APr={s['APr']:.4f} APc={s['APc']:.4f} APf={s['APf']:.4f}")


if __name__ == "__main__":
    main()
