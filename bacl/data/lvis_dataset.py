"""LVIS v0.5 (1230 classes), LVIS v1 (1203) and the synthetic benchmark, one code path.

Labels are contiguous, torchvision style: categories sorted by id get labels
``1..C``; 0 is background. Per-class arrays (``image_count``, ``class_frequency``)
are indexed by ``label - 1``, the foreground channel of the classifier.

The index is a handful of flat arrays (boxes, labels, offsets, polygon coordinates),
not one Python object per image or annotation: DataLoader workers forked from the
main process read it without touching reference counts, so their memory does not grow
page by page over an epoch (LVIS v1 train: 100k images, 1.27M annotations).
"""

from __future__ import annotations

import logging
import os
from os import PathLike
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import Dataset

from bacl.data.annotation_checks import clean_boxes
from bacl.data.masks import instance_masks
from bacl.data.samplers import split_sample_key
from bacl.errors import BaclError, MissingFileError
from bacl.lvis_format import (FREQUENCIES, POLYGONS, TRAINING_KEYS, AnnotationError,
                              RaggedArray, first_ids, read_lvis)
from bacl.lvis_format.polygons import KIND_NAMES

logger = logging.getLogger(__name__)

Target = dict[str, Any]
Transform = Callable[[torch.Tensor, Target, torch.Generator], tuple[torch.Tensor, Target]]

# LVIS frequency bins by number of training images (docs/method.md section 5).
RARE_MAX_IMAGES = 10
COMMON_MAX_IMAGES = 100
_EXIF_ORIENTATION_TAG = 0x0112
_MAX_LISTED = 5


class ImageFileError(BaclError, RuntimeError):
    """An image file that exists but cannot be used (corrupt, or not the recorded size)."""


class LVISDetection(Dataset):
    """Detection dataset over one LVIS-format annotation file.

    Image files are found with :func:`bacl.lvis_format.image_relative_path`:
    ``image_root / file_name`` for the synthetic benchmark, and
    ``image_root / <split>2017 / <name>.jpg`` from ``coco_url`` for LVIS v0.5 and v1,
    so for LVIS ``image_root`` is the COCO folder holding ``train2017/`` and ``val2017/``.

    Args:
        annotation_file: the JSON file (read by :func:`bacl.lvis_format.read_lvis`).
        image_root: folder the image paths are relative to.
        transforms: ``f(image, target, generator) -> (image, target)``, e.g.
            :class:`bacl.data.transforms.Compose`; None for none.
        filter_empty: drop images left with no annotation (for training).
        check_images: check at construction that every image file exists.
        min_box_size: boxes narrower or shorter than this (pixels) are dropped.
        with_masks: also give each sample ``target["masks"]``, rasterised from the
            annotations' polygons (:mod:`bacl.data.masks`). Every annotation kept must
            then have polygons: an RLE or missing ``segmentation`` raises
            :class:`~bacl.lvis_format.AnnotationError` naming the annotation at
            construction, rather than standing in the box for the mask (a rectangle
            pasted by copy-paste would carry background pixels as the object; LVIS
            gives polygons for every annotation, so this only stops foreign files).

    Attributes:
        categories: category records sorted by id.
        num_classes: C.
        cat_id_to_label, label_to_cat_id: dicts, labels in ``1..C``.
        image_ids: ``(N,)`` int64 (read-only), image ids in dataset order.
        image_category_sets: ``N`` rows (a :class:`~bacl.lvis_format.RaggedArray`): row
            ``i`` is a sorted read-only int64 array of the labels image ``i`` contains;
            ``.values`` / ``.offsets`` give the flat arrays.
        image_count: ``(C,)`` int64, images of this file containing each class.
        class_frequency: ``C`` strings 'r'/'c'/'f'; from the category records when
            they carry ``frequency`` (LVIS: train-set bins, the same in the val file),
            otherwise from ``image_count`` with the LVIS thresholds (1-10, 11-100, >100).

    Indexing with ``i`` or ``(i, aug_seed)`` returns ``(image, target)``: image float
    ``(3, H, W)`` RGB in [0, 1]; target ``{"boxes": (K, 4) float32 xyxy pixels,
    "labels": (K,) int64 in 1..C, "image_id": int, "orig_size": (2,) int64 [H, W]}``,
    plus ``"masks": (K, H, W)`` bool in image pixels, row ``k`` the object of
    ``boxes[k]``, when ``with_masks``. Transforms get the target with its masks and
    must flip / crop them with the image. Transforms draw randomness only from a
    generator seeded with ``aug_seed`` (``i`` when no seed is given), so a sample is
    the same in any worker and after resume.
    """

    def __init__(
        self,
        *,
        annotation_file: str | PathLike,
        image_root: str | PathLike,
        transforms: Transform | None = None,
        filter_empty: bool = False,
        check_images: bool = True,
        min_box_size: float = 1.0,
        with_masks: bool = False,
    ) -> None:
        self.annotation_file = str(annotation_file)
        self.image_root = Path(image_root)
        self.transforms = transforms
        self.with_masks = bool(with_masks)
        source = self.annotation_file
        tables = read_lvis(annotation_file, require=TRAINING_KEYS, segmentation=self.with_masks)

        self.categories = tables.categories
        self.num_classes = len(self.categories)
        cat_ids = tables.category_ids
        self.cat_id_to_label = {int(c): k + 1 for k, c in enumerate(cat_ids)}
        self.label_to_cat_id = {k + 1: int(c) for k, c in enumerate(cat_ids)}

        cleaned = clean_boxes(
            boxes_xywh=tables.ann_boxes_xywh,
            image_heights=tables.image_heights[tables.ann_image_index],
            image_widths=tables.image_widths[tables.ann_image_index],
            ann_ids=tables.ann_ids,
            min_size=float(min_box_size),
            source=source,
        )
        kept_rows = np.flatnonzero(cleaned.keep)  # annotation rows of the file
        ann_image_index = tables.ann_image_index[kept_rows]
        ann_labels = tables.ann_category_index[kept_rows] + 1
        ann_boxes = cleaned.boxes_xyxy[kept_rows].astype(np.float32)

        num_images_in_file = len(tables.image_ids)
        anns_per_image = np.bincount(ann_image_index, minlength=num_images_in_file)
        if filter_empty:
            kept_images = np.flatnonzero(anns_per_image > 0)
            dropped = num_images_in_file - len(kept_images)
            if dropped:
                logger.info(
                    "%s: filter_empty dropped %d of %d images with no annotation",
                    source, dropped, num_images_in_file,
                )
        else:
            kept_images = np.arange(num_images_in_file)

        # Annotations grouped by dataset position: image i owns rows
        # _ann_start[i]:_ann_start[i + 1] of _boxes/_labels (and _ann_rows).
        new_position = np.full(num_images_in_file, -1, dtype=np.int64)
        new_position[kept_images] = np.arange(len(kept_images))
        ann_position = new_position[ann_image_index]
        in_dataset = ann_position >= 0
        order = np.argsort(ann_position[in_dataset], kind="stable")
        self._boxes = torch.from_numpy(ann_boxes[in_dataset][order])
        self._labels = torch.from_numpy(ann_labels[in_dataset][order].astype(np.int64))
        counts = np.bincount(ann_position[in_dataset], minlength=len(kept_images))
        self._ann_start = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        # The file row of each annotation, for its polygons; only kept with masks.
        self._ann_rows = kept_rows[in_dataset][order] if self.with_masks else None
        self._polygons = tables.polygons
        if self.with_masks:
            self._check_polygons(tables.ann_ids)

        self._image_ids = tables.image_ids[kept_images]
        self._heights = tables.image_heights[kept_images]
        self._widths = tables.image_widths[kept_images]
        # A numpy string array, not a list of str: DataLoader workers read it without
        # touching Python refcounts, so forked workers do not copy it page by page.
        self._paths = np.array([tables.image_paths[i] for i in kept_images], dtype=str)

        # Unique (position, label) pairs come out sorted by position, then label.
        stride = self.num_classes + 1
        pairs = _sorted_unique(ann_position[in_dataset] * stride + ann_labels[in_dataset])
        self.image_category_sets = RaggedArray.from_lengths(
            pairs % stride, np.bincount(pairs // stride, minlength=len(kept_images))
        )
        # Counted over every image of the file (an image dropped by filter_empty has
        # no class anyway).
        image_label_pairs = _sorted_unique(ann_image_index * stride + ann_labels)
        self.image_count = torch.from_numpy(
            np.bincount(image_label_pairs % stride, minlength=stride)[1:].astype(np.int64)
        )
        self.class_frequency = self._class_frequencies()

        if check_images:
            self._check_image_files_exist()

    @property
    def image_ids(self) -> np.ndarray:
        """``(N,)`` int64, read-only: the image ids in dataset order."""
        view = self._image_ids.view()
        view.flags.writeable = False
        return view

    # ------------------------------------------------------------------ dataset API

    def __len__(self) -> int:
        return len(self._paths)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, Target]:
        index, aug_seed = split_sample_key(key, len(self))

        image = self._load_image(index)
        start, end = self._ann_start[index], self._ann_start[index + 1]
        height, width = int(self._heights[index]), int(self._widths[index])
        target: Target = {
            "boxes": self._boxes[start:end].clone(),
            "labels": self._labels[start:end].clone(),
            "image_id": int(self._image_ids[index]),
            "orig_size": torch.tensor([height, width]),
        }
        if self.with_masks:
            masks = instance_masks(self._polygons, self._ann_rows[start:end],
                                   height=height, width=width)
            target["masks"] = torch.from_numpy(masks)
        if self.transforms is not None:
            generator = torch.Generator()
            generator.manual_seed(index if aug_seed is None else aug_seed)
            image, target = self.transforms(image, target, generator)
        return image, target

    @property
    def annotation_labels(self) -> torch.Tensor:
        """``(M,)`` int64 labels ``1..C`` of every annotation of the dataset's images."""
        return self._labels

    def image_path(self, index: int) -> Path:
        """The file of image ``index``."""
        return self.image_root / str(self._paths[index])

    def get_height_and_width(self, index: int) -> tuple[int, int]:
        """Recorded size of image ``index`` (torchvision's aspect-ratio grouping uses this)."""
        return int(self._heights[index]), int(self._widths[index])

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(annotation_file={self.annotation_file!r}, "
            f"images={len(self)}, annotations={len(self._labels)}, "
            f"classes={self.num_classes})"
        )

    # ------------------------------------------------------------------ helpers

    def _check_polygons(self, ann_ids: np.ndarray) -> None:
        """Every annotation in the dataset has polygons (see ``with_masks``)."""
        kind = self._polygons.kind[self._ann_rows]
        bad = np.flatnonzero(kind != POLYGONS)
        if not len(bad):
            return
        rows = np.sort(self._ann_rows[bad])
        first = int(rows[0])
        more = f" (and {len(rows) - 1} more such annotations: ids {first_ids(ann_ids[rows[1:]])})"
        raise AnnotationError(
            f"{self.annotation_file}: annotations[{first}] (id={int(ann_ids[first])}): "
            f"'segmentation' is {KIND_NAMES[int(self._polygons.kind[first])]}, but "
            f"with_masks=True needs polygons{more if len(rows) > 1 else ''}; convert "
            f"the masks to polygons, drop those annotations, or pass with_masks=False"
        )

    def _class_frequencies(self) -> list[str]:
        if all(c.get("frequency") in FREQUENCIES for c in self.categories):
            return [c["frequency"] for c in self.categories]
        return [
            "r" if n <= RARE_MAX_IMAGES else "c" if n <= COMMON_MAX_IMAGES else "f"
            for n in self.image_count.tolist()
        ]

    def _check_image_files_exist(self) -> None:
        missing = [i for i, rel in enumerate(self._paths)
                   if not os.path.isfile(self.image_root / str(rel))]
        if missing:
            shown = "; ".join(
                f"image id {int(self._image_ids[i])}: {self.image_path(i)}"
                for i in missing[:_MAX_LISTED]
            )
            more = ", ..." if len(missing) > _MAX_LISTED else ""
            raise MissingFileError(
                f"{self.annotation_file}: {len(missing)} of {len(self)} image files are "
                f"missing under {self.image_root} ({shown}{more}); check image_root, or "
                f"pass check_images=False to skip this check"
            )

    def _load_image(self, index: int) -> torch.Tensor:
        path = self.image_path(index)
        image_id = int(self._image_ids[index])
        expected = (int(self._widths[index]), int(self._heights[index]))
        if not path.is_file():
            raise MissingFileError(
                f"image file {path} (image id {image_id}, from {self.annotation_file}) "
                f"does not exist"
            )
        try:
            with Image.open(path) as raw:
                pil = _oriented_like_record(raw, expected)
                pil = pil.convert("RGB")
        except (OSError, ValueError, Image.DecompressionBombError) as e:
            raise ImageFileError(
                f"cannot read image file {path} (image id {image_id}): {e}"
            ) from e
        if pil.size != expected:
            raise ImageFileError(
                f"image file {path} (image id {image_id}) is {pil.size[0]}x{pil.size[1]} "
                f"(width x height) but {self.annotation_file} records "
                f"{expected[0]}x{expected[1]}"
            )
        return torch.from_numpy(np.array(pil, dtype=np.uint8)).permute(2, 0, 1).float().div_(255.0)


def _sorted_unique(values: np.ndarray) -> np.ndarray:
    """``np.unique`` for int64 by sorting (faster than its hashing path on 1M values)."""
    values = np.sort(values)
    if len(values) == 0:
        return values
    first = np.empty(len(values), dtype=bool)
    first[0] = True
    np.not_equal(values[1:], values[:-1], out=first[1:])
    return values[first]


def _oriented_like_record(raw: Image.Image, expected_wh: tuple[int, int]) -> Image.Image:
    """Apply the EXIF orientation unless the record's size says the pixels are meant raw.

    The reference reads images with OpenCV, which applies the EXIF orientation; an
    annotation file made on the stored pixels records the stored size instead. The
    recorded size tells which of the two the boxes refer to; when both fit (a
    180-degree turn) the orientation is applied, as the reference does.
    """
    orientation = raw.getexif().get(_EXIF_ORIENTATION_TAG, 1)
    if orientation in (None, 1):
        return raw
    oriented = ImageOps.exif_transpose(raw)
    if oriented.size != expected_wh and raw.size == expected_wh:
        return raw
    return oriented
