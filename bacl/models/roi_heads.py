"""Faster R-CNN RoI heads with a swappable classification loss and a hallucination hook.

Composes torchvision's :class:`~torchvision.models.detection.roi_heads.RoIHeads`: its
proposal matching and fg/bg sampling (``select_training_samples``) and its box coder
are kept; what changes is the classifier and what happens around it:

- the predictor has ``C + 1`` logits with background LAST (or the layout the loss
  declares with ``loss.num_logits``), and the loss is any
  :class:`~bacl.losses.ClassificationLoss` (sigmoid BCE, softmax CE, FCBL, peers);
- the box loss is L1 on positive RoIs, summed and divided by the number of sampled
  RoIs (the reference's ``L1Loss`` with the sampled-RoI average factor);
- an optional ``hallucinator`` adds synthetic embeddings to the classifier's batch
  during training (BACL's FHM, docs/method.md section 3);
- test-time scores come from ``loss.scores``, ``(N, C)`` in label order whatever the
  logit layout (docs/method.md section 1 for sigmoid losses).

Label conventions: targets carry torchvision's labels (``1..C``, 0 = background);
the loss sees docs/method.md's (``0..C-1`` foreground, ``C`` = background). The conversion
happens in exactly two places, :func:`to_loss_labels` and the output of
:meth:`BACLRoIHeads.postprocess_detections`.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection.roi_heads import RoIHeads
from torchvision.ops import boxes as box_ops

from ..losses.base import ClassificationLoss


def to_loss_labels(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """torchvision labels (``0`` = background, ``1..C``) -> loss labels (``0..C-1``, ``C`` = bg)."""
    return torch.where(labels == 0, torch.full_like(labels, num_classes), labels - 1)


class BACLRoIHeads(RoIHeads):
    """Box branch of Faster R-CNN with a registry loss (see the module docstring).

    Args:
        box_roi_pool: ``MultiScaleRoIAlign`` over the FPN levels.
        box_head: RoI features -> classification embedding ``(N, D)`` (the last shared
            FC after ReLU; FHM models this space).
        box_predictor: :class:`~bacl.models.box_predictor.BoxPredictor` (or any module
            with ``cls_score`` and ``bbox_pred`` giving ``(N, loss.num_logits)`` and
            ``(N, 4C)``; build it with ``BoxPredictor.for_loss(loss, ...)``).
        loss: the classification loss; a submodule, so its statistics are saved with
            the model.
        fg_iou_thresh, bg_iou_thresh, batch_size_per_image, positive_fraction: RoI
            sampling, as in torchvision.
        bbox_reg_weights: box coder weights.
        score_thresh, nms_thresh, detections_per_img: test-time postprocessing.

    Attribute ``hallucinator`` (``None`` by default): when set, called during training as
    ``hallucinator(roi_heads=self, features=features, proposals=proposals,
    targets=targets, image_shapes=image_shapes)`` where ``proposals`` are the sampled
    RoIs of each image and ``targets`` are in the transformed image's coordinates. It
    returns ``None`` or ``(embeddings (M, D), labels (M,))`` with loss labels in
    ``[0, C)``; those go through ``box_predictor.cls_score`` only (no box regression)
    and are appended to the real RoIs before the classification loss.
    """

    def __init__(
        self,
        *,
        box_roi_pool: nn.Module,
        box_head: nn.Module,
        box_predictor: nn.Module,
        loss: ClassificationLoss,
        fg_iou_thresh: float = 0.5,
        bg_iou_thresh: float = 0.5,
        batch_size_per_image: int = 512,
        positive_fraction: float = 0.25,
        bbox_reg_weights: tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0),
        score_thresh: float = 1e-4,
        nms_thresh: float = 0.5,
        detections_per_img: int = 300,
    ) -> None:
        super().__init__(
            box_roi_pool,
            box_head,
            box_predictor,
            fg_iou_thresh,
            bg_iou_thresh,
            batch_size_per_image,
            positive_fraction,
            bbox_reg_weights,
            score_thresh,
            nms_thresh,
            detections_per_img,
        )
        num_logits = box_predictor.cls_score.out_features
        if num_logits != loss.num_logits:
            raise ValueError(
                f"box_predictor has {num_logits} logits but the loss ({type(loss).__name__}, "
                f"{loss.num_classes} classes) reads {loss.num_logits}"
            )
        self.num_classes = loss.num_classes
        self.classification_loss = loss
        self.hallucinator: Optional[nn.Module] = None

    def forward(
        self,
        features: dict[str, torch.Tensor],
        proposals: list[torch.Tensor],
        image_shapes: list[tuple[int, int]],
        targets: Optional[list[dict[str, torch.Tensor]]] = None,
    ) -> tuple[list[dict[str, torch.Tensor]], dict[str, torch.Tensor]]:
        """Training: returns ``([], {"loss_cls" (or the loss's ``loss_cls*`` terms), "loss_box_reg"})``.
        Inference: returns ``([{"boxes" (K, 4), "scores" (K,), "labels" (K,) in 1..C}], {})``.
        """
        if not self.training:
            box_features = self.box_roi_pool(features, proposals, image_shapes)
            logits, deltas = self.box_predictor(self.box_head(box_features))
            boxes, scores, labels = self.postprocess_detections(logits, deltas, proposals, image_shapes)
            result = [{"boxes": b, "labels": l, "scores": s} for b, s, l in zip(boxes, scores, labels)]
            return result, {}

        self._check_training_targets(targets)
        proposals, _, labels, regression_targets = self.select_training_samples(proposals, targets)
        box_features = self.box_roi_pool(features, proposals, image_shapes)
        logits, deltas = self.box_predictor(self.box_head(box_features))

        labels = torch.cat(labels, dim=0)
        regression_targets = torch.cat(regression_targets, dim=0)
        cls_logits = logits
        cls_labels = to_loss_labels(labels, self.num_classes)

        if self.hallucinator is not None:
            extra = self.hallucinator(
                roi_heads=self,
                features=features,
                proposals=proposals,
                targets=targets,
                image_shapes=image_shapes,
            )
            if extra is not None:
                extra_embeddings, extra_labels = extra
                cls_logits = torch.cat([cls_logits, self.box_predictor.cls_score(extra_embeddings)], dim=0)
                cls_labels = torch.cat([cls_labels, extra_labels.to(cls_labels)], dim=0)

        losses = dict(self.classification_loss(cls_logits, cls_labels))
        losses["loss_box_reg"] = self.box_regression_loss(deltas, labels, regression_targets)
        return [], losses

    def box_regression_loss(
        self, deltas: torch.Tensor, labels: torch.Tensor, regression_targets: torch.Tensor
    ) -> torch.Tensor:
        """L1 on positives, summed, divided by the number of sampled RoIs.

        Args: deltas ``(N, 4C)`` or ``(N, 4)``; labels ``(N,)`` torchvision labels
        (0 = background); regression_targets ``(N, 4)`` encoded with the box coder.
        """
        num_rois = labels.shape[0]
        deltas = deltas.reshape(num_rois, -1, 4)
        positive = torch.where(labels > 0)[0]
        class_index = labels[positive] - 1 if deltas.shape[1] > 1 else torch.zeros_like(positive)
        loss = F.l1_loss(deltas[positive, class_index], regression_targets[positive], reduction="sum")
        return loss / max(num_rois, 1)

    def postprocess_detections(
        self,
        class_logits: torch.Tensor,
        box_regression: torch.Tensor,
        proposals: list[torch.Tensor],
        image_shapes: list[tuple[int, int]],
    ) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
        """torchvision's postprocessing with our scores and background-last layout.

        Per image: scores from ``loss.scores`` ``(N, C)``, keep ``score > score_thresh``,
        decode the kept (RoI, class) boxes, clip, drop boxes under 0.01 px, NMS per
        class, keep the ``detections_per_img`` best. Only kept pairs are decoded, which
        matters with C = 1203 classes (torchvision decodes all ``N * C`` boxes first;
        the result is the same). Returns boxes, scores and labels in ``1..C``.
        """
        scores = self.classification_loss.scores(class_logits)
        num_rois, num_classes = scores.shape
        deltas = box_regression.reshape(num_rois, -1, 4)
        per_image = [len(p) for p in proposals]

        all_boxes, all_scores, all_labels = [], [], []
        for img_scores, img_deltas, img_proposals, image_shape in zip(
            scores.split(per_image), deltas.split(per_image), proposals, image_shapes
        ):
            roi_index, class_index = torch.where(img_scores > self.score_thresh)
            img_scores = img_scores[roi_index, class_index]
            delta_index = class_index if img_deltas.shape[1] > 1 else torch.zeros_like(class_index)
            boxes = self.box_coder.decode_single(img_deltas[roi_index, delta_index], img_proposals[roi_index])
            boxes = box_ops.clip_boxes_to_image(boxes, image_shape)
            labels = class_index + 1

            keep = box_ops.remove_small_boxes(boxes, min_size=1e-2)
            boxes, img_scores, labels = boxes[keep], img_scores[keep], labels[keep]
            keep = box_ops.batched_nms(boxes, img_scores, labels, self.nms_thresh)[: self.detections_per_img]
            all_boxes.append(boxes[keep])
            all_scores.append(img_scores[keep])
            all_labels.append(labels[keep])
        return all_boxes, all_scores, all_labels

    def _check_training_targets(self, targets: Optional[list[dict[str, torch.Tensor]]]) -> None:
        if targets is None:
            raise ValueError("targets are required in training mode")
        for t in targets:
            if not t["boxes"].is_floating_point():
                raise TypeError(f"target boxes must be floating point, got {t['boxes'].dtype}")
            if t["labels"].dtype != torch.int64:
                raise TypeError(f"target labels must be int64, got {t['labels'].dtype}")
        labels = torch.cat([t["labels"] for t in targets])
        if labels.numel() and bool(((labels < 1) | (labels > self.num_classes)).any()):
            raise ValueError(
                f"target labels must be in 1..{self.num_classes} (0 is background), "
                f"got min {int(labels.min())}, max {int(labels.max())}"
            )
