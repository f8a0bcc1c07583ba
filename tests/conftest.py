"""Shared fixtures: a tiny LVIS-format dataset written on the fly (no downloads)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

torch.set_num_threads(1)

TINY_CATEGORIES = [
    {"id": 1, "name": "red_square", "synset": "red_square.n.01", "frequency": "f"},
    {"id": 2, "name": "green_square", "synset": "green_square.n.01", "frequency": "c"},
    {"id": 3, "name": "blue_square", "synset": "blue_square.n.01", "frequency": "r"},
]
COLOURS = {1: (220, 30, 30), 2: (30, 200, 30), 3: (30, 30, 220)}


def write_tiny_lvis(root: Path, *, num_train: int = 12, num_val: int = 4, size: int = 64, seed: int = 0) -> dict:
    """Images with coloured squares on noise, and LVIS v1 jsons for train and val."""
    rng = np.random.default_rng(seed)
    paths = {}
    for split, count, first_id in (("train", num_train, 1), ("val", num_val, 1000)):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        images, annotations = [], []
        for k in range(count):
            image_id = first_id + k
            pixels = rng.integers(0, 80, size=(size, size, 3), dtype=np.uint8)
            present = set()
            for _ in range(int(rng.integers(1, 3))):
                cat = int(rng.choice([1, 1, 1, 2, 2, 3]))
                w, h = (int(v) for v in rng.integers(10, size // 2, size=2))
                x, y = int(rng.integers(0, size - w)), int(rng.integers(0, size - h))
                pixels[y:y + h, x:x + w] = COLOURS[cat]
                present.add(cat)
                annotations.append({
                    "id": len(annotations) + 1 + first_id * 10, "image_id": image_id, "category_id": cat,
                    "bbox": [x, y, w, h], "area": float(w * h),
                    "segmentation": [[x, y, x + w, y, x + w, y + h, x, y + h]],
                })
            name = f"{split}/{image_id:012d}.png"
            Image.fromarray(pixels).save(root / "images" / name)
            images.append({"id": image_id, "width": size, "height": size, "file_name": name,
                           "neg_category_ids": sorted({1, 2, 3} - present),
                           "not_exhaustive_category_ids": []})
        cats = []
        for cat in TINY_CATEGORIES:
            img_ids = {a["image_id"] for a in annotations if a["category_id"] == cat["id"]}
            cats.append({**cat, "image_count": len(img_ids),
                         "instance_count": sum(a["category_id"] == cat["id"] for a in annotations)})
        ann_path = root / "annotations" / f"lvis_v1_{split}.json"
        ann_path.parent.mkdir(parents=True, exist_ok=True)
        ann_path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": cats}))
        paths[split] = ann_path
    return {"root": root, "image_root": root / "images", **paths}


def use_train_counts(train_json, val_json) -> None:
    """Give the val file's categories the train split's counts, as LVIS's val file has."""
    train = {c["id"]: c for c in json.loads(train_json.read_text())["categories"]}
    val = json.loads(val_json.read_text())
    for cat in val["categories"]:
        cat.update(image_count=train[cat["id"]]["image_count"], instance_count=train[cat["id"]]["instance_count"])
    val_json.write_text(json.dumps(val))


@pytest.fixture
def tiny_lvis(tmp_path):
    return write_tiny_lvis(tmp_path / "tiny")
