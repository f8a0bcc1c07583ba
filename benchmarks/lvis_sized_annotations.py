"""Write LVIS-v1-sized annotation files (no images) for the loader and evaluator benchmarks.

Deterministic from ``--seed``. The train file has LVIS v1 train's counts: 100,170
images, about 1.27M annotations (12.68 per image on average, negative-binomial), 1,203
categories split 337 rare / 461 common / 405 frequent with an ``image_count`` inside
each bin; an image's categories are drawn with probability proportional to
``image_count`` (long-tailed). Every annotation has a polygon ``segmentation`` (a
star-shaped outline of ``--vertices`` points inside its box, coordinates with two
decimals), its ``bbox`` is the polygon's bounding box and its ``area`` the polygon's.
Images carry LVIS v1 keys (``coco_url``, size, ``neg_category_ids``,
``not_exhaustive_category_ids``, ...). The val file (19,809 images) uses the same
categories and other image ids. Files are written atomically, batch by batch::

    python benchmarks/lvis_sized_annotations.py --out data/lvis_sized
    python benchmarks/lvis_sized_annotations.py --out data/lvis_small --train-images 2000 --val-images 500
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path
from typing import IO, Any

import msgspec
import numpy as np

from bacl.atomic_io import atomic_write

# LVIS v1: 337 rare, 461 common and 405 frequent categories.
FREQUENCY_COUNTS = {"r": 337, "c": 461, "f": 405}
BINS = {"r": (1, 10), "c": (11, 100), "f": (101, 10000)}
TRAIN_IMAGES, VAL_IMAGES = 100_170, 19_809
BOXES_PER_IMAGE = 12.68  # 1,270,141 / 100,170
BATCH_IMAGES = 2_000


def make_categories(rng: np.random.Generator) -> list[dict[str, Any]]:
    """1203 LVIS-style category records, ``image_count`` log-uniform inside each bin."""
    freqs = [f for f, n in FREQUENCY_COUNTS.items() for _ in range(n)]
    rng.shuffle(freqs)
    cats = []
    for i, freq in enumerate(freqs):
        lo, hi = BINS[freq]
        count = int(np.clip(np.exp(rng.uniform(np.log(lo), np.log(hi + 1))), lo, hi))
        name = f"category_{i + 1:04d}"
        cats.append({"id": i + 1, "name": name, "synset": f"{name}.n.01", "synonyms": [name],
                     "def": f"the synthetic category number {i + 1}", "frequency": freq,
                     "image_count": count, "instance_count": count * int(rng.integers(1, 6))})
    return cats


def image_batch(rng: np.random.Generator, ids: np.ndarray, split: str, cats: list[dict],
                first_ann_id: int, vertices: tuple[int, int]) -> tuple[list[dict], list[dict]]:
    """Image and annotation records of the images ``ids`` ``(B,)``."""
    num_cats = len(cats)
    weight = np.array([c["image_count"] for c in cats], dtype=np.float64)
    weight /= weight.sum()
    b = len(ids)
    heights = np.where(rng.random(b) < 0.7, 480, rng.integers(240, 641, size=b))
    widths = np.where(rng.random(b) < 0.7, 640, rng.integers(240, 641, size=b))
    p = 2.0 / (2.0 + BOXES_PER_IMAGE)
    per_image = rng.negative_binomial(2, p, size=b)
    images, ann_image, ann_cat = [], [], []
    for k in range(b):
        n = int(per_image[k])
        present = rng.choice(num_cats, size=min(n, 1 + int(rng.poisson(2.9))), replace=False,
                             p=weight) + 1 if n else np.zeros(0, np.int64)
        others = rng.choice(num_cats, size=int(rng.integers(0, 9)), replace=False) + 1
        neg = sorted(set(others.tolist()) - set(present.tolist()))
        not_exhaustive = sorted(c for c in present.tolist() if rng.random() < 0.1)
        image_id = int(ids[k])
        images.append({
            "id": image_id, "height": int(heights[k]), "width": int(widths[k]),
            "coco_url": f"http://images.cocodataset.org/{split}2017/{image_id:012d}.jpg",
            "flickr_url": f"http://farm.example.org/{image_id}.jpg", "license": 1,
            "date_captured": "2013-11-14 16:28:13",
            "neg_category_ids": neg, "not_exhaustive_category_ids": not_exhaustive,
        })
        if n:
            ann_image += [k] * n
            ann_cat += present[rng.integers(0, len(present), size=n)].tolist()
    ann_image = np.asarray(ann_image, dtype=np.int64)
    polygons, boxes, areas = random_polygons(rng, heights[ann_image], widths[ann_image], vertices)
    anns = []
    for a in range(len(ann_image)):
        anns.append({"id": first_ann_id + a, "image_id": int(ids[ann_image[a]]),
                     "category_id": int(ann_cat[a]), "bbox": boxes[a], "area": areas[a],
                     "segmentation": [polygons[a]]})
    return images, anns


def random_polygons(rng: np.random.Generator, heights: np.ndarray, widths: np.ndarray,
                    vertices: tuple[int, int]) -> tuple[list[list[float]], list, list]:
    """One star-shaped polygon per annotation inside its image, with its box and area."""
    n = len(heights)
    h, w = heights.astype(np.float64), widths.astype(np.float64)
    area = np.exp(rng.uniform(np.log(16.0), np.log(h * w * 0.5)))
    aspect = np.exp(rng.uniform(np.log(0.33), np.log(3.0), size=n))
    bw, bh = np.minimum(np.sqrt(area * aspect), w - 1), np.minimum(np.sqrt(area / aspect), h - 1)
    cx, cy = rng.uniform(bw / 2, w - bw / 2), rng.uniform(bh / 2, h - bh / 2)
    count = rng.integers(vertices[0], vertices[1] + 1, size=n)
    owner = np.repeat(np.arange(n), count)
    step = np.arange(len(owner)) - np.repeat(np.cumsum(count) - count, count)
    angle = (step + rng.uniform(0, 0.8, size=len(owner))) * (2 * np.pi / count[owner])
    radius = rng.uniform(0.55, 1.0, size=len(owner))
    x = np.clip(cx[owner] + bw[owner] / 2 * radius * np.cos(angle), 0, w[owner])
    y = np.clip(cy[owner] + bh[owner] / 2 * radius * np.sin(angle), 0, h[owner])
    x, y = np.round(x, 2), np.round(y, 2)
    starts = np.cumsum(count) - count
    x0, x1 = np.minimum.reduceat(x, starts), np.maximum.reduceat(x, starts)
    y0, y1 = np.minimum.reduceat(y, starts), np.maximum.reduceat(y, starts)
    nxt = np.arange(len(owner)) + 1
    nxt[np.cumsum(count) - 1] = starts
    shoelace = np.add.reduceat(x * y[nxt] - y * x[nxt], starts)
    flat = np.stack([x, y], axis=1).reshape(-1).tolist()
    ends = np.cumsum(2 * count).tolist()
    polygons = [flat[s:e] for s, e in zip([0] + ends[:-1], ends)]
    boxes = np.round(np.stack([x0, y0, x1 - x0, y1 - y0], axis=1), 2).tolist()
    areas = np.round(np.abs(shoelace) / 2, 2).tolist()
    return polygons, boxes, areas


def write_split(path: Path, rng: np.random.Generator, ids: np.ndarray, split: str,
                cats: list[dict], vertices: tuple[int, int]) -> dict[str, int]:
    """Stream one annotation file to ``path`` (atomically); returns its counts.

    Annotations go to the file batch by batch; the image records (a few tens of MB)
    wait in memory and follow them, as in LVIS's own files.
    """
    counts = {"images": 0, "annotations": 0, "coordinates": 0}
    encode = msgspec.json.Encoder().encode
    first_ann_id = 1 if split == "train" else 10_000_001

    def write(handle: IO[bytes]) -> None:
        head = {"info": {"description": f"LVIS-v1-sized synthetic {split} annotations",
                         "version": "1.0"},
                "licenses": [{"id": 1, "name": "synthetic", "url": ""}], "categories": cats}
        handle.write(encode(head)[:-1] + b', "annotations": [')
        image_parts = []
        for first in range(0, len(ids), BATCH_IMAGES):
            images, anns = image_batch(rng, ids[first:first + BATCH_IMAGES], split, cats,
                                       first_ann_id + counts["annotations"], vertices)
            if anns:
                handle.write((b"," if counts["annotations"] else b"") + encode(anns)[1:-1])
            image_parts.append(encode(images)[1:-1])
            counts["images"] += len(images)
            counts["annotations"] += len(anns)
            counts["coordinates"] += sum(len(a["segmentation"][0]) for a in anns)
        handle.write(b'], "images": [' + b",".join(p for p in image_parts if p) + b"]}")

    atomic_write(path, write)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the two files")
    parser.add_argument("--train-images", type=int, default=TRAIN_IMAGES)
    parser.add_argument("--val-images", type=int, default=VAL_IMAGES)
    parser.add_argument("--vertices", type=int, nargs=2, default=(16, 48), metavar=("MIN", "MAX"),
                        help="points per polygon, drawn uniformly (default 16 48)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.train_images < 0 or args.val_images < 0 or not 3 <= args.vertices[0] <= args.vertices[1]:
        parser.error("image counts must be >= 0 and 3 <= MIN <= MAX vertices")

    load = " | load avg %.1f %.1f %.1f" % os.getloadavg() if hasattr(os, "getloadavg") else ""
    print(f"machine: {platform.platform()} | cpus {os.cpu_count()} | "
          f"python {platform.python_version()}{load}")
    rng = np.random.default_rng(args.seed)
    cats = make_categories(rng)
    ids = rng.choice(600_000, size=args.train_images + args.val_images, replace=False) + 1
    splits = {"train": np.sort(ids[:args.train_images]), "val": np.sort(ids[args.train_images:])}
    for split, split_ids in splits.items():
        path = args.out / f"lvis_v1_{split}.json"
        tic = time.perf_counter()
        counts = write_split(path, rng, split_ids, split, cats, tuple(args.vertices))
        print(f"{path}: {counts['images']} images, {counts['annotations']} annotations, "
              f"{counts['coordinates']} polygon coordinates, {len(cats)} categories, "
              f"{path.stat().st_size / 2**20:.0f} MiB in {time.perf_counter() - tic:.1f} s")


if __name__ == "__main__":
    main()
