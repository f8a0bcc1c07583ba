"""Settings -> parts: datasets, samplers, loaders, detector, loss and FHM.

The one place that maps :mod:`bacl.params` onto keyword-only constructors, so every
part can also be built and tested without a params file.
"""

from __future__ import annotations

import gc
import inspect
import logging
from typing import Callable, Optional, Sequence

import torch
from torch.utils.data import DataLoader

from ..data.collate import collate_detection
from ..data.lvis_dataset import LVISDetection
from ..data.repeat_factor_sampler import repeat_factors
from ..data.samplers import TrainingSampler
from ..data.transforms import Compose, RandomHorizontalFlip
from ..losses import ClassificationLoss, build_loss
from ..models.detector import build_detector
from ..models.feature_hallucination import FeatureHallucination
from ..models.image_transform import TrainTestSizeTransform
from ..params import (DataParams, EvaluateParams, FHMParams, LossesParams, ModelParams, RepresentationParams,
                      SolverParams, StageParams)

log = logging.getLogger(__name__)


def build_dataset(data: DataParams, *, split: str, filter_empty: bool = False) -> LVISDetection:
    """The train or val split named by ``data``, without augmentation."""
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    annotations = data.train_annotations if split == "train" else data.val_annotations
    return LVISDetection(annotation_file=annotations, image_root=data.image_root, filter_empty=filter_empty)


def build_train_dataset(data: DataParams, stage: StageParams):
    """The train split with ``stage``'s augmentation: flips (the model resizes to one of
    ``min_sizes``), or large-scale jitter, with copy-paste over a second image when
    ``lsj.copy_paste`` (the images then leave the dataset at the size the model trains at)."""
    lsj = stage.lsj
    if not lsj.enabled:
        transforms = Compose([RandomHorizontalFlip(prob=stage.flip_prob)]) if stage.flip_prob > 0 else None
        return LVISDetection(annotation_file=data.train_annotations, image_root=data.image_root,
                             transforms=transforms, filter_empty=stage.filter_empty)
    from ..data.copy_paste import CopyPasteDataset
    from ..data.large_scale_jitter import large_scale_jitter

    transforms = large_scale_jitter(output_size=lsj.output_size, scale_range=tuple(lsj.scale_range),
                                    flip_prob=stage.flip_prob)
    dataset = LVISDetection(annotation_file=data.train_annotations, image_root=data.image_root,
                            transforms=transforms, filter_empty=stage.filter_empty, with_masks=lsj.copy_paste)
    if not lsj.copy_paste:
        return dataset
    return CopyPasteDataset(dataset, max_num_pasted=lsj.max_num_pasted, bbox_occluded_thr=lsj.bbox_occluded_thr,
                            mask_occluded_thr=lsj.mask_occluded_thr)


def build_train_loader(dataset: LVISDetection, *, stage: StageParams, solver: SolverParams,
                       seed: int) -> tuple[DataLoader, TrainingSampler]:
    factors = None
    if stage.repeat_factor_threshold is not None:
        factors = repeat_factors(image_category_sets=dataset.image_category_sets, num_classes=dataset.num_classes,
                                 threshold=stage.repeat_factor_threshold)
        log.info("repeat-factor sampling: t=%g, %.0f images per epoch instead of %d",
                 stage.repeat_factor_threshold, float(factors.sum()), len(dataset))
    sampler = TrainingSampler(dataset_size=len(dataset), seed=seed, shuffle=True, repeat_factors=factors)
    # Forked workers copy every page holding a parent object once their garbage collector walks it
    # (+41 MiB per worker at LVIS v1 size, benchmarks/loader_memory.py); frozen objects are never walked.
    gc.freeze()
    loader = DataLoader(dataset, batch_size=solver.batch_size, sampler=sampler, num_workers=solver.workers,
                        collate_fn=collate_detection, pin_memory=torch.cuda.is_available(),
                        persistent_workers=False)  # workers re-created each epoch: no stale state across resume
    return loader, sampler


def build_eval_loader(dataset, evaluate: EvaluateParams) -> DataLoader:
    return DataLoader(dataset, batch_size=evaluate.batch_size, shuffle=False, num_workers=evaluate.workers,
                      collate_fn=collate_detection)


def training_statistics(dataset: LVISDetection) -> dict[str, object]:
    """What a loss may need from the training split (``bacl/losses/base.py``): images and
    annotations per class, int64 ``(C,)``, and the number of images with an annotation."""
    instances = torch.bincount(dataset.annotation_labels - 1, minlength=dataset.num_classes)
    annotated = sum(1 for labels in dataset.image_category_sets if len(labels))
    return {"image_counts": dataset.image_count.clone(), "instance_counts": instances, "num_images": annotated}


def build_classification_loss(name: str, *, losses: LossesParams, num_classes: int,
                              statistics: Optional[dict[str, object]] = None, seed: int = 0) -> ClassificationLoss:
    """Loss ``name`` with its ``losses.<name>`` options, the training-set statistics it takes
    (or placeholders, for a loss whose buffers are then loaded from a checkpoint) and, for a
    loss that draws random numbers, ``seed``."""
    from ..losses import LOSSES, placeholder_statistics

    kwargs = losses.options(name)
    if "seed" in inspect.signature(LOSSES[name].__init__).parameters:
        kwargs["seed"] = seed
    return build_loss(name, num_classes=num_classes, statistics=statistics or placeholder_statistics(num_classes),
                      **kwargs)


def build_hallucinator(fhm: FHMParams, *, num_classes: int, feat_dim: int, seed: int,
                       accuracy_source: Callable[[], torch.Tensor]) -> FeatureHallucination:
    return FeatureHallucination(num_classes=num_classes, feat_dim=feat_dim, decay=fhm.decay,
                                num_sampled_classes=fhm.num_sampled_classes,
                                num_samples_per_class=fhm.num_samples_per_class, num_jitter=fhm.num_jitter,
                                seed=seed, accuracy_source=accuracy_source)


def build_model(model: ModelParams, *, num_classes: int, loss: ClassificationLoss,
                stage: Optional[StageParams] = None, test: Optional[EvaluateParams] = None) -> torch.nn.Module:
    """The detector: ``model``'s architecture, trained at ``stage``'s sizes and tested with
    ``test``'s settings (both default to their sections' defaults)."""
    stage = stage if stage is not None else RepresentationParams()
    test = test if test is not None else EvaluateParams()
    # With large-scale jitter the images arrive at their training size: the model's scale is then 1.
    train_sizes = (stage.lsj.output_size,) if stage.lsj.enabled else tuple(stage.min_sizes)
    train_max_size = max(stage.max_size, stage.lsj.output_size) if stage.lsj.enabled else stage.max_size
    detector = build_detector(
        preset=model.preset, num_classes=num_classes, loss=loss, min_size=train_sizes,
        max_size=train_max_size, pretrained_backbone=model.pretrained_backbone,
        roi_align_aligned=model.roi_align_aligned, backbone_norm=model.backbone_norm, rpn_box_loss=model.rpn_box_loss,
        box_head_init=model.box_head_init, fpn_init=model.fpn_init, anchors=model.anchors,
        rpn_post_nms_top_n_train=stage.rpn_proposals,
        detections_per_img=test.detections_per_img, score_thresh=test.score_thresh, nms_thresh=test.nms_thresh,
    )
    detector.transform = TrainTestSizeTransform(
        train_sizes=train_sizes, test_size=test.min_size, max_size=train_max_size,
        image_mean=detector.transform.image_mean, image_std=detector.transform.image_std,
    )
    return detector


def apply_test_settings(model: torch.nn.Module, test: EvaluateParams) -> None:
    """Make a built detector test with ``test``'s budget, thresholds and test size; the
    architecture and training sizes stay as built."""
    model.roi_heads.detections_per_img = int(test.detections_per_img)
    model.roi_heads.score_thresh = float(test.score_thresh)
    model.roi_heads.nms_thresh = float(test.nms_thresh)
    model.transform.test_size = int(test.min_size)
    model.transform.max_size = int(test.max_size)
    model.transform.train(model.transform.training)  # re-applies the test size in eval mode
