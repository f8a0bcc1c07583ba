"""Loader throughput: the flip-only augmentation against large-scale jitter with copy-paste.

Generates, in a temporary folder, small synthetic benchmarks at two image sizes and
times the training-set loader (decode, annotations, augmentation, collate; one process,
no workers, so the numbers are per-core costs) in three settings:

- ``flip``: the current augmentation (the model resizes later, inside its transform);
- ``lsj``: large-scale jitter on boxes only (no masks);
- ``lsj+copy-paste``: masks rasterised from the annotation polygons (pycocotools, as the
  reference's ``LoadAnnotations(with_mask=True)``), large-scale jitter on image and
  masks, and copy-paste from a second, separately jittered image.

Sizes: the synthetic default (160 px images, output 160) and LVIS-like (640 px
images, output 1280, as the reference's representation stage). Each setting runs
``--rounds`` times, interleaved, and keeps its best round; ratios are against ``flip``
of the same size in the same run.

    python benchmarks/loader_speed.py
    python benchmarks/loader_speed.py --images 24 --rounds 2 --sizes 160
"""

from __future__ import annotations

import argparse
import json
import operator
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from pycocotools import mask as mask_utils
from torch.utils.data import DataLoader, Dataset

from bacl.data.collate import collate_detection
from bacl.data.copy_paste import CopyPasteDataset
from bacl.data.large_scale_jitter import large_scale_jitter
from bacl.data.lvis_dataset import LVISDetection
from bacl.data.synthetic import generate_synthetic_lvis
from bacl.data.synthetic_plan import SyntheticSpec, minimum_train_images
from bacl.data.transforms import Compose, RandomHorizontalFlip

# Image size -> LSJ output size: the synthetic default keeps its size; LVIS images
# (about 640 x 480) leave the reference's LSJ at 1280 x 1280.
OUTPUT_SIZE = {160: 160, 640: 1280}
# The reference's occlusion thresholds are pixels at 1280; scaled to the output size.
REFERENCE_SIZE = 1280


class RasterisedMasks(Dataset):
    """An :class:`LVISDetection` whose targets get ``masks`` rasterised from polygons.

    Masks ``(K, H, W)`` bool are drawn for every sample from the annotation file's
    ``segmentation`` (one image's annotations in file order, as the dataset keeps
    them), then ``transforms`` run with the sample's seeded generator.
    """

    def __init__(self, *, annotation_file: Path, image_root: Path, transforms: Callable) -> None:
        self.base = LVISDetection(annotation_file=annotation_file, image_root=image_root, filter_empty=True)
        self.transforms = transforms
        records = json.loads(Path(annotation_file).read_text())
        self.polygons: dict[int, list[Any]] = {}
        for ann in records["annotations"]:
            self.polygons.setdefault(int(ann["image_id"]), []).append(ann["segmentation"])

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key):
        index, aug_seed = (key if isinstance(key, tuple) else (key, key))
        index, aug_seed = operator.index(index), operator.index(aug_seed)
        image, target = self.base[index]
        height, width = image.shape[1:]
        polygons = self.polygons.get(target["image_id"], [])
        if len(polygons) != len(target["boxes"]):
            raise RuntimeError(f"image id {target['image_id']}: {len(polygons)} polygons for "
                               f"{len(target['boxes'])} boxes")
        masks = np.zeros((len(polygons), height, width), dtype=bool)
        for k, parts in enumerate(polygons):
            rle = mask_utils.merge(mask_utils.frPyObjects(parts, height, width))
            masks[k] = mask_utils.decode(rle).astype(bool)
        target["masks"] = torch.from_numpy(masks)
        generator = torch.Generator()
        generator.manual_seed(aug_seed)
        return self.transforms(image, target, generator)


def generate(root: Path, image_size: int, seed: int) -> tuple[Path, Path]:
    options = dict(num_shapes=2, num_colours=2, num_textures=2, image_size=image_size)
    num_train = minimum_train_images(SyntheticSpec(num_train_images=10**6, num_val_images=40, **options))
    paths = generate_synthetic_lvis(out_dir=root, seed=seed, num_train_images=num_train, num_val_images=40,
                                    progress=False, **options)
    return paths.train_annotations, paths.image_root


def build_loaders(annotations: Path, image_root: Path, image_size: int,
                  keys: list[tuple[int, int]]) -> dict[str, DataLoader]:
    out = OUTPUT_SIZE[image_size]
    scale = out / REFERENCE_SIZE
    datasets = {
        "flip": LVISDetection(annotation_file=annotations, image_root=image_root, filter_empty=True,
                              transforms=Compose([RandomHorizontalFlip(prob=0.5)])),
        "lsj": LVISDetection(annotation_file=annotations, image_root=image_root, filter_empty=True,
                             transforms=large_scale_jitter(output_size=out)),
        "lsj+copy-paste": CopyPasteDataset(
            RasterisedMasks(annotation_file=annotations, image_root=image_root,
                            transforms=large_scale_jitter(output_size=out)),
            bbox_occluded_thr=10.0 * scale, mask_occluded_thr=int(round(300 * scale**2)),
        ),
    }
    return {name: DataLoader(d, batch_size=2, sampler=keys, num_workers=0, collate_fn=collate_detection)
            for name, d in datasets.items()}


def images_per_second(loader: DataLoader) -> tuple[float, float]:
    """Images per second over one pass, and the mean number of objects per image."""
    tic = time.perf_counter()
    images = objects = 0
    for batch_images, targets in loader:
        images += len(batch_images)
        objects += sum(len(t["boxes"]) for t in targets)
    return images / (time.perf_counter() - tic), objects / max(images, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=48, help="samples per pass")
    parser.add_argument("--rounds", type=int, default=3, help="passes per setting, best kept")
    parser.add_argument("--sizes", type=int, nargs="+", default=sorted(OUTPUT_SIZE), choices=sorted(OUTPUT_SIZE))
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{args.threads} torch thread(s), loader in the main process, batch 2, "
          f"{args.images} samples per pass, best of {args.rounds}")
    with tempfile.TemporaryDirectory() as tmp:
        for image_size in args.sizes:
            tic = time.perf_counter()
            annotations, image_root = generate(Path(tmp) / str(image_size), image_size, args.seed)
            generated = time.perf_counter() - tic
            keys_rng = torch.Generator().manual_seed(args.seed)
            loaders = build_loaders(annotations, image_root, image_size, [])
            n = len(loaders["flip"].dataset)
            keys = [(int(torch.randint(0, n, (), generator=keys_rng)), int(torch.randint(0, 2**62, (), generator=keys_rng)))
                    for _ in range(args.images)]
            loaders = build_loaders(annotations, image_root, image_size, keys)
            best: dict[str, tuple[float, float]] = {}
            for _ in range(args.rounds):
                for name, loader in loaders.items():
                    rate, objects = images_per_second(loader)
                    if name not in best or rate > best[name][0]:
                        best[name] = (rate, objects)
            out = OUTPUT_SIZE[image_size]
            print(f"\n{image_size} px images ({n} generated in {generated:.1f} s), LSJ output {out} x {out}:")
            base = best["flip"][0]
            for name, (rate, objects) in best.items():
                print(f"  {name:16s} {rate:7.1f} images/s  {objects:5.1f} objects/image  "
                      f"ratio to flip {rate / base:6.3f}")


if __name__ == "__main__":
    main()
