"""Copy-paste: objects of a second training image pasted onto the first.

As the reference trains BACL's representation stage (Tianhao-Qi/BACL
``mmdet/datasets/pipelines/transforms.py`` ``CopyPaste`` inside
``mmdet/datasets/dataset_wrappers.py`` ``MultiImageMixDataset``, after each image's
large-scale jitter): draw a source image uniformly from the dataset, keep a random
subset of its objects, and paste their pixels, by their masks and without blending,
over the destination image, which has the same size (both were padded to one square).
Destination objects lose the pixels the pasted ones cover; each gets the box of its
visible mask, and one is dropped when it is mostly hidden.

The wrapper keeps the dataset's key protocol (an index or ``(index, aug_seed)``), and
all its randomness comes from ``aug_seed``, so a sample is the same in any DataLoader
worker and after resume.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from bacl.data.instance_masks import masks_to_boxes
from bacl.data.samplers import split_sample_key
from bacl.data.transforms import Target, TransformInputError, check_masks

#: The reference's defaults (``CopyPaste(max_num_pasted=100, bbox_occluded_thr=10,
#: mask_occluded_thr=300)``), in pixels of the 1280 x 1280 LVIS images.
MAX_NUM_PASTED = 100
BBOX_OCCLUDED_THR = 10.0
MASK_OCCLUDED_THR = 300

# Separates the wrapper's random stream from the wrapped dataset's, which is seeded
# with the same aug_seed.
_PASTE_STREAM = 0x43505354
# Source samples get augmentation seeds in [0, 2**63 - 1), as the training sampler's.
_AUG_SEED_HIGH = 2**63 - 1


def _required_masks(image: torch.Tensor, target: Target, role: str) -> torch.Tensor:
    masks = check_masks(image, target)
    if masks is None:
        raise TransformInputError(
            f"image id {target.get('image_id')} ({role} of copy-paste) has no 'masks' in its "
            f"target; copy-paste needs instance masks (load the dataset with masks)"
        )
    return masks


def select_objects(
    target: Target, generator: torch.Generator, *, max_num_pasted: int = MAX_NUM_PASTED
) -> Target:
    """A random subset of ``target``'s objects: the ones to paste.

    The count is drawn uniformly from ``0 .. min(K, max_num_pasted - 1)`` and the
    objects uniformly without replacement (the reference's ``_select_object``, whose
    ``max_num_pasted`` is an exclusive bound: at most 99 objects with the default 100).
    ``boxes`` ``(K, 4)``, ``labels`` ``(K,)`` and ``masks`` ``(K, H, W)`` (when present)
    are indexed alike; other keys are kept. Two draws per call.
    """
    if int(max_num_pasted) < 1:
        raise ValueError(f"max_num_pasted must be >= 1, got {max_num_pasted}")
    count = len(target["boxes"])
    high = min(count, int(max_num_pasted) - 1)
    num = int(torch.randint(0, high + 1, (), generator=generator))
    chosen = torch.randperm(count, generator=generator)[:num]
    selected = dict(target)
    selected["boxes"] = target["boxes"][chosen]
    selected["labels"] = target["labels"][chosen]
    if target.get("masks") is not None:
        selected["masks"] = target["masks"][chosen]
    return selected


def paste_objects(
    image: torch.Tensor,
    target: Target,
    paste_image: torch.Tensor,
    paste_target: Target,
    *,
    bbox_occluded_thr: float = BBOX_OCCLUDED_THR,
    mask_occluded_thr: int = MASK_OCCLUDED_THR,
) -> tuple[torch.Tensor, Target]:
    """Paste every object of ``paste_target`` onto ``image`` (no randomness).

    Args:
        image, paste_image: ``(C, H, W)`` float, the same size.
        target, paste_target: ``boxes`` ``(K, 4)`` / ``(P, 4)`` float32 xyxy,
            ``labels`` ``(K,)`` / ``(P,)`` int64, ``masks`` ``(K, H, W)`` /
            ``(P, H, W)`` bool (required).
        bbox_occluded_thr: a destination object whose visible-mask box moved by at most
            this many pixels on every side is kept, however much of it is hidden.
        mask_occluded_thr: otherwise it is kept only with more than this many visible
            pixels.

    Returns ``(image, target)``: pixels under the union of the pasted masks come from
    ``paste_image``; ``boxes`` ``(K' + P, 4)``, ``labels`` ``(K' + P,)`` and ``masks``
    ``(K' + P, H, W)`` list the kept destination objects first, each with the box of
    its visible mask and that mask, then the pasted ones unchanged. A destination
    object with no visible pixel is always dropped. With ``P = 0`` the inputs come
    back unchanged. Other keys (``image_id``, ``orig_size``) are ``target``'s.
    """
    masks = _required_masks(image, target, "destination")
    paste_masks = _required_masks(paste_image, paste_target, "source")
    if paste_image.shape != image.shape:
        raise TransformInputError(
            f"copy-paste needs images of one size: image id {target.get('image_id')} is "
            f"{tuple(image.shape)}, image id {paste_target.get('image_id')} is "
            f"{tuple(paste_image.shape)}; pad both to one square (large-scale jitter does)"
        )
    if len(paste_target["boxes"]) == 0:
        return image, target

    covered = paste_masks.any(dim=0)  # (H, W)
    visible = masks & ~covered
    boxes = masks_to_boxes(visible)
    seen = boxes[:, 2] > boxes[:, 0]  # some pixel visible
    box_kept = ((boxes - target["boxes"]).abs() <= float(bbox_occluded_thr)).all(dim=1)
    keep = seen & box_kept
    # Visible pixels are counted only where needed, inside the visible box.
    for k in torch.nonzero(seen & ~box_kept).flatten().tolist():
        x1, y1, x2, y2 = (int(v) for v in boxes[k].tolist())
        if int(visible[k, y1:y2, x1:x2].sum()) > int(mask_occluded_thr):
            keep[k] = True

    out = dict(target)
    out["boxes"] = torch.cat([boxes[keep], paste_target["boxes"].to(torch.float32)])
    out["labels"] = torch.cat([target["labels"][keep], paste_target["labels"]])
    out["masks"] = torch.cat([visible[keep], paste_masks])
    return torch.where(covered, paste_image, image), out


def _paste_seed(aug_seed: int) -> int:
    """A 63-bit seed for the wrapper's draws, independent of ``aug_seed``'s own stream."""
    words = np.random.SeedSequence(
        entropy=int(aug_seed) % 2**64, spawn_key=(_PASTE_STREAM,)
    ).generate_state(2, dtype=np.uint32)
    return int(words[0]) | (int(words[1]) & 0x7FFFFFFF) << 32


class CopyPasteDataset(Dataset):
    """Wrap a detection dataset whose samples carry masks; each sample gets pasted objects.

    For key ``(index, aug_seed)`` (or ``index``, meaning ``aug_seed = index``):

    1. the destination is ``dataset[(index, aug_seed)]``, so with nothing pasted the
       sample is exactly the wrapped dataset's;
    2. a generator seeded from ``aug_seed`` (a stream of its own) draws the source
       index uniformly from ``0 .. len - 1`` (possibly ``index`` itself) and an
       augmentation seed for it; the source is ``dataset[(source, seed)]``, so it gets
       its own large-scale jitter;
    3. :func:`select_objects` picks the source objects and :func:`paste_objects`
       pastes them.

    Args:
        dataset: indexable by ``(index, aug_seed)``, returning ``(image, target)`` with
            ``target["masks"]`` ``(K, H, W)`` bool and every image of one size, e.g.
            :class:`~bacl.data.lvis_dataset.LVISDetection` with masks and
            :func:`~bacl.data.large_scale_jitter.large_scale_jitter` as transforms.
        max_num_pasted, bbox_occluded_thr, mask_occluded_thr: see
            :func:`select_objects` and :func:`paste_objects`; pixel thresholds are at
            the output resolution.
        keep_masks: keep ``target["masks"]`` in the output. Off by default: Faster
            R-CNN does not read masks, and torchvision's ``GeneralizedRCNNTransform``
            would resize a ``(K, H, W)`` stack as float for nothing.

    Returns ``(image, target)``: image ``(C, H, W)``; target ``boxes`` ``(N, 4)`` float32,
    ``labels`` ``(N,)`` int64, the destination's ``image_id`` and ``orig_size``, and
    ``masks`` ``(N, H, W)`` bool only with ``keep_masks``. Attributes this class does
    not define (``num_classes``, ``image_category_sets``, ``label_to_cat_id``, ...)
    are the wrapped dataset's.
    """

    def __init__(
        self,
        dataset: Any,
        *,
        max_num_pasted: int = MAX_NUM_PASTED,
        bbox_occluded_thr: float = BBOX_OCCLUDED_THR,
        mask_occluded_thr: int = MASK_OCCLUDED_THR,
        keep_masks: bool = False,
    ) -> None:
        if isinstance(max_num_pasted, bool) or int(max_num_pasted) != max_num_pasted or max_num_pasted < 1:
            raise ValueError(f"max_num_pasted must be an int >= 1, got {max_num_pasted!r}")
        if not float(bbox_occluded_thr) >= 0.0:
            raise ValueError(f"bbox_occluded_thr must be >= 0, got {bbox_occluded_thr!r}")
        if isinstance(mask_occluded_thr, bool) or int(mask_occluded_thr) != mask_occluded_thr \
                or mask_occluded_thr < 0:
            raise ValueError(f"mask_occluded_thr must be an int >= 0, got {mask_occluded_thr!r}")
        if len(dataset) < 1:
            raise ValueError("copy-paste needs a dataset with at least one image")
        self.dataset = dataset
        self.max_num_pasted = int(max_num_pasted)
        self.bbox_occluded_thr = float(bbox_occluded_thr)
        self.mask_occluded_thr = int(mask_occluded_thr)
        self.keep_masks = bool(keep_masks)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, Target]:
        index, aug_seed = split_sample_key(key, len(self))
        if aug_seed is None:
            aug_seed = index

        image, target = self.dataset[(index, aug_seed)]
        generator = torch.Generator()
        generator.manual_seed(_paste_seed(aug_seed))
        source = int(torch.randint(0, len(self), (), generator=generator))
        source_seed = int(torch.randint(0, _AUG_SEED_HIGH, (), generator=generator))
        paste_image, paste_target = self.dataset[(source, source_seed)]
        selected = select_objects(paste_target, generator, max_num_pasted=self.max_num_pasted)
        image, target = paste_objects(
            image, target, paste_image, selected,
            bbox_occluded_thr=self.bbox_occluded_thr,
            mask_occluded_thr=self.mask_occluded_thr,
        )
        if not self.keep_masks:
            target = {k: v for k, v in target.items() if k != "masks"}
        return image, target

    def __getattr__(self, name: str) -> Any:
        # Only reached for names not found normally; never for the wrapper's own
        # fields, so unpickling (before __init__ ran) cannot recurse.
        if name.startswith("__") or name == "dataset" or "dataset" not in self.__dict__:
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.dataset!r}, max_num_pasted={self.max_num_pasted}, "
            f"bbox_occluded_thr={self.bbox_occluded_thr}, "
            f"mask_occluded_thr={self.mask_occluded_thr}, keep_masks={self.keep_masks})"
        )
