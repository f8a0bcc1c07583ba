"""The embedded LVIS-style long-tailed detection benchmark.

Classes are compositions shape x colour x texture ("red_star_striped"); training
image counts per class are long-tailed across the three LVIS bins, and every rare
class has a frequent sibling that differs from it in one attribute only, so the
classifier bias between fine-grained relatives that BACL corrects shows up at toy
scale. Images hold several occluding, textured objects on textured backgrounds,
and the annotations are LVIS v1 json, federated labels included
(``neg_category_ids``, ``not_exhaustive_category_ids`` with partial labelling).

Layout written by :func:`generate_synthetic_lvis`::

    out_dir/annotations/lvis_v1_train.json
    out_dir/annotations/lvis_v1_val.json
    out_dir/images/train/000000000001.jpg ...
    out_dir/images/val/000000001201.jpg ...

Images are JPEG, quality 90 without chroma subsampling: like COCO/LVIS, about
ten times smaller than PNG on noisy textures, and 4:4:4 keeps the colour edges of
14-px objects sharp. The planning (what is where) is separate from the painting
(:mod:`.synthetic_plan`, :mod:`.synthetic_render`), so the statistics can be
checked without rendering.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from tqdm import tqdm

from ..atomic_io import atomic_write_json
from .synthetic_plan import DatasetPlan, PlannedImage, SyntheticSpec, frequency_of, plan_dataset
from .synthetic_render import render_image
from .synthetic_shapes import polygon_area, polygon_box

__all__ = [
    "SyntheticPaths",
    "SyntheticSpec",
    "generate_synthetic_lvis",
    "synthetic_categories",
    "plan_dataset",
    "render_planned_image",
    "build_lvis_json",
]

SPLITS = ("train", "val")
_SPLIT_CODE = {"train": 1, "val": 2}
_IMAGE_NAME = re.compile(r"^\d{12}\.jpg$")


@dataclass(frozen=True)
class SyntheticPaths:
    """Where a generated benchmark lives."""

    root: Path
    train_annotations: Path
    val_annotations: Path
    image_root: Path


def generate_synthetic_lvis(
    *,
    out_dir: str | PathLike,
    seed: int = 0,
    num_train_images: int = 1200,
    num_val_images: int = 300,
    image_size: int = 160,
    num_shapes: int = 5,
    num_colours: int = 4,
    num_textures: int = 3,
    jpeg_quality: int = 90,
    progress: bool = True,
    **options: Any,
) -> SyntheticPaths:
    """Generate the benchmark under ``out_dir`` and return its paths.

    ``options`` are the other :class:`SyntheticSpec` fields (``objects_per_image``,
    ``min_object_size``, ``max_object_fraction``, ``max_occlusion``, ``rare_fraction``,
    ``common_fraction``, ``val_min_instances``, ``neg_fraction``,
    ``not_exhaustive_fraction``). Invalid values raise ``ValueError`` naming the
    parameter. The output is a deterministic function of the parameters.

    Existing annotation files are removed first and the new ones are written last,
    each atomically, so an interrupted run never leaves a json that points at missing
    or stale images.
    """
    spec = SyntheticSpec(seed=seed, num_train_images=num_train_images, num_val_images=num_val_images,
                         image_size=image_size, num_shapes=num_shapes, num_colours=num_colours,
                         num_textures=num_textures, **options)
    if not 1 <= int(jpeg_quality) <= 100:
        raise ValueError(f"jpeg_quality={jpeg_quality!r}: must be in [1, 100]")
    root = Path(out_dir)
    paths = SyntheticPaths(
        root=root,
        train_annotations=root / "annotations" / "lvis_v1_train.json",
        val_annotations=root / "annotations" / "lvis_v1_val.json",
        image_root=root / "images",
    )
    plan = plan_dataset(spec)
    paths.train_annotations.parent.mkdir(parents=True, exist_ok=True)
    for ann in (paths.train_annotations, paths.val_annotations):
        ann.unlink(missing_ok=True)

    with tqdm(total=len(plan.train) + len(plan.val), desc="rendering synthetic LVIS", unit="img",
              disable=not progress) as bar:
        for split in SPLITS:
            folder = paths.image_root / split
            folder.mkdir(parents=True, exist_ok=True)
            expected = set()
            for index in range(len(_split_images(plan, split))):
                name = _file_name(plan, split, index)
                expected.add(Path(name).name)
                pixels = render_planned_image(plan, split=split, index=index)
                Image.fromarray(pixels).save(paths.image_root / name, format="JPEG", quality=int(jpeg_quality),
                                             subsampling=0)
                bar.update(1)
            # Images of an earlier, larger generation would otherwise linger.
            for stale in folder.iterdir():
                if _IMAGE_NAME.match(stale.name) and stale.name not in expected:
                    stale.unlink()

    jsons = build_lvis_json(plan)
    atomic_write_json(paths.val_annotations, jsons["val"], separators=(",", ":"))
    atomic_write_json(paths.train_annotations, jsons["train"], separators=(",", ":"))
    return paths


def synthetic_categories(
    *,
    seed: int = 0,
    num_train_images: int = 1200,
    num_val_images: int = 300,
    image_size: int = 160,
    num_shapes: int = 5,
    num_colours: int = 4,
    num_textures: int = 3,
    **options: Any,
) -> list[dict[str, Any]]:
    """The LVIS ``categories`` block that :func:`generate_synthetic_lvis` writes for
    the same parameters (counts from the train split), computed without rendering."""
    spec = SyntheticSpec(seed=seed, num_train_images=num_train_images, num_val_images=num_val_images,
                         image_size=image_size, num_shapes=num_shapes, num_colours=num_colours,
                         num_textures=num_textures, **options)
    return _categories(plan_dataset(spec, include_val=False))


def render_planned_image(plan: DatasetPlan, *, split: str, index: int) -> np.ndarray:
    """Pixels ``(H, W, 3)`` uint8 of image ``index`` of ``split`` (deterministic)."""
    image = _split_images(plan, split)[index]
    rng = np.random.default_rng(np.random.SeedSequence([plan.spec.seed, _SPLIT_CODE[split], 3, index]))
    objects = [(o.polygon, plan.classes[o.category].colour, plan.classes[o.category].texture) for o in image.objects]
    size = plan.spec.image_size
    return render_image(height=size, width=size, objects=objects, rng=rng)


def build_lvis_json(plan: DatasetPlan) -> dict[str, dict[str, Any]]:
    """``{"train": ..., "val": ...}`` LVIS v1 dicts for ``plan``; both share one
    ``categories`` block computed from the train split."""
    categories = _categories(plan)
    out = {}
    next_ann_id = 1
    for split in SPLITS:
        images, annotations = [], []
        size = plan.spec.image_size
        for index, image in enumerate(_split_images(plan, split)):
            image_id = _image_id(plan, split, index)
            images.append({
                "id": image_id,
                "width": size,
                "height": size,
                "file_name": _file_name(plan, split, index),
                "neg_category_ids": [c + 1 for c in image.neg_categories],
                "not_exhaustive_category_ids": [c + 1 for c in image.not_exhaustive_categories],
            })
            for obj in image.objects:
                if not obj.annotated:
                    continue
                annotations.append({
                    "id": next_ann_id,
                    "image_id": image_id,
                    "category_id": obj.category + 1,
                    "bbox": [round(v, 2) for v in polygon_box(obj.polygon)],
                    "area": round(polygon_area(obj.polygon), 2),
                    "segmentation": [obj.polygon.reshape(-1).tolist()],
                })
                next_ann_id += 1
        out[split] = {
            "info": {
                "description": "bacl synthetic long-tailed LVIS-style detection benchmark",
                "version": "1.0",
                "split": split,
                "params": plan.spec.as_dict(),
            },
            "licenses": [],
            "images": images,
            "annotations": annotations,
            "categories": categories,
        }
    return out


def _categories(plan: DatasetPlan) -> list[dict[str, Any]]:
    n = len(plan.classes)
    image_count = np.zeros(n, dtype=np.int64)
    instance_count = np.zeros(n, dtype=np.int64)
    for image in plan.train:
        annotated = [o.category for o in image.objects if o.annotated]
        np.add.at(instance_count, annotated, 1)
        image_count[sorted(set(annotated))] += 1
    categories = []
    for c, cls in enumerate(plan.classes):
        frequency = frequency_of(int(image_count[c]))
        if frequency != plan.frequency[c]:
            raise RuntimeError(f"{cls.name}: planned bin {plan.frequency[c]!r}, realised {frequency!r}")
        categories.append({
            "id": c + 1,
            "name": cls.name,
            "synset": f"{cls.name}.n.01",
            "synonyms": [cls.name],
            "def": f"a {cls.texture} {cls.colour} {cls.shape}",
            "frequency": frequency,
            "image_count": int(image_count[c]),
            "instance_count": int(instance_count[c]),
            "shape": cls.shape,
            "colour": cls.colour,
            "texture": cls.texture,
        })
    return categories


def _split_images(plan: DatasetPlan, split: str) -> list[PlannedImage]:
    if split not in _SPLIT_CODE:
        raise ValueError(f"split={split!r}: must be one of {SPLITS}")
    return plan.train if split == "train" else plan.val


def _image_id(plan: DatasetPlan, split: str, index: int) -> int:
    # Ids are unique across splits, as in LVIS (val continues after train).
    return index + 1 + (len(plan.train) if split == "val" else 0)


def _file_name(plan: DatasetPlan, split: str, index: int) -> str:
    return f"{split}/{_image_id(plan, split, index):012d}.jpg"
