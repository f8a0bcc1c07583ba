"""Settings -> parts: datasets, samplers, loaders, detector and loss.

The one place that maps :mod:`bacl.params` onto keyword-only constructors, so every
part can also be built and tested without a params file.
"""

from __future__ import annotations

import logging
from typing import Callable

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
from ..params import ClassifierParams, DataParams, EvaluateParams, FHMParams, ModelParams, TrainParams

log = logging.getLogger(__name__)


def build_dataset(data: DataParams, *, split: str, flip_prob: float = 0.0, filter_empty: bool = False) -> LVISDetection:
    """The train or val split named by ``data``; training adds the flip augmentation."""
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    annotations = data.train_annotations if split == "train" else data.val_annotations
    transforms = Compose([RandomHorizontalFlip(prob=flip_prob)]) if flip_prob > 0 else None
    return LVISDetection(
        annotation_file=annotations,
        image_root=data.image_root,
        transforms=transforms,
        filter_empty=filter_empty,
    )


def build_train_loader(dataset: LVISDetection, train: TrainParams) -> tuple[DataLoader, TrainingSampler]:
    factors = None
    if train.repeat_factor_threshold is not None:
        factors = repeat_factors(
            image_category_sets=dataset.image_category_sets,
            num_classes=dataset.num_classes,
            threshold=train.repeat_factor_threshold,
        )
        log.info("repeat-factor sampling: t=%g, %.0f images per epoch instead of %d",
                 train.repeat_factor_threshold, float(factors.sum()), len(dataset))
    sampler = TrainingSampler(dataset_size=len(dataset), seed=train.seed, shuffle=True, repeat_factors=factors)
    loader = DataLoader(
        dataset,
        batch_size=train.batch_size,
        sampler=sampler,
        num_workers=train.workers,
        collate_fn=collate_detection,
        pin_memory=torch.cuda.is_available(),
        persistent_workers=False,  # workers re-created each epoch: no stale state across resume
    )
    return loader, sampler


def build_eval_loader(dataset: LVISDetection, evaluate: EvaluateParams) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=evaluate.batch_size,
        shuffle=False,
        num_workers=evaluate.workers,
        collate_fn=collate_detection,
    )


def build_classification_loss(train: TrainParams, *, num_classes: int) -> ClassificationLoss:
    """The stage's loss. In the classifier stage FCBL takes ``classifier.fcbl``'s alpha and
    prob_thr; its ``reweight`` is switched on by the engine when the stage starts."""
    kwargs = {}
    if isinstance(train, ClassifierParams) and train.loss == "fcbl":
        kwargs = {"alpha": train.fcbl.alpha, "prob_thr": train.fcbl.prob_thr}
    return build_loss(train.loss, num_classes=num_classes, **kwargs)


def build_hallucinator(
    fhm: FHMParams, *, num_classes: int, feat_dim: int, seed: int, accuracy_source: Callable[[], torch.Tensor]
) -> FeatureHallucination:
    return FeatureHallucination(
        num_classes=num_classes,
        feat_dim=feat_dim,
        decay=fhm.decay,
        num_sampled_classes=fhm.num_sampled_classes,
        num_samples_per_class=fhm.num_samples_per_class,
        num_jitter=fhm.num_jitter,
        seed=seed,
        accuracy_source=accuracy_source,
    )


def build_model(model: ModelParams, *, num_classes: int, loss: ClassificationLoss) -> torch.nn.Module:
    detector = build_detector(
        preset=model.preset,
        num_classes=num_classes,
        loss=loss,
        min_size=tuple(model.min_size_train),
        max_size=model.max_size,
        pretrained_backbone=model.pretrained_backbone,
        detections_per_img=model.detections_per_img,
        score_thresh=model.score_thresh,
        nms_thresh=model.nms_thresh,
    )
    detector.transform = TrainTestSizeTransform(
        train_sizes=tuple(model.min_size_train), test_size=model.min_size_test, max_size=model.max_size,
        image_mean=detector.transform.image_mean, image_std=detector.transform.image_std,
    )
    return detector
