"""torchvision's region proposal network with a choice of box regression loss.

torchvision's ``RegionProposalNetwork.compute_loss`` takes a smooth L1 loss (beta 1/9)
on the sampled positive anchors, summed and divided by the number of sampled anchors.
The reference's ``RPNHead`` (mmdetection 2.8, ``mmdet/models/dense_heads/anchor_head.py``
with ``loss_bbox=dict(type='L1Loss', loss_weight=1.0)`` in
``configs/_base_/models/faster_rcnn_r50_fpn.py``) takes a plain L1 loss with the same
normalisation: ``avg_factor = num_total_pos + num_total_neg``, the anchors its random
sampler drew (256 per image, at most half positive) over the whole batch, and the
objectness BCE averaged over the same anchors. Sampling, matching and the box coder
(weights 1, 1, 1, 1, i.e. mmdetection's ``target_stds=[1, 1, 1, 1]``) are torchvision's.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.models.detection.rpn import RegionProposalNetwork

RPN_BOX_LOSSES = ("smooth_l1", "l1")


class BoxLossRegionProposalNetwork(RegionProposalNetwork):
    """:class:`~torchvision.models.detection.rpn.RegionProposalNetwork` whose box loss is
    ``box_loss``: ``"smooth_l1"`` (torchvision's, beta 1/9) or ``"l1"`` (the reference's).

    Takes torchvision's constructor arguments plus the keyword ``box_loss``. Training
    returns ``{"loss_objectness", "loss_rpn_box_reg"}`` as torchvision's does.
    """

    def __init__(self, *args, box_loss: str = "smooth_l1", **kwargs) -> None:
        if box_loss not in RPN_BOX_LOSSES:
            raise ValueError(f"unknown RPN box loss {box_loss!r}; known: {list(RPN_BOX_LOSSES)}")
        super().__init__(*args, **kwargs)
        self.box_loss = box_loss

    def compute_loss(
        self, objectness: Tensor, pred_bbox_deltas: Tensor, labels: list[Tensor], regression_targets: list[Tensor]
    ) -> tuple[Tensor, Tensor]:
        """Objectness BCE (mean over sampled anchors) and box loss (sum over sampled
        positives / number of sampled anchors).

        Args:
            objectness: ``(A_total, 1)`` logits of every anchor of the batch.
            pred_bbox_deltas: ``(A_total, 4)`` predicted deltas.
            labels: per image ``(A_i,)`` with 1 (object), 0 (background), -1 (ignored).
            regression_targets: per image ``(A_i, 4)`` encoded targets.
        """
        pos_masks, neg_masks = self.fg_bg_sampler(labels)
        positives = torch.where(torch.cat(pos_masks))[0]
        negatives = torch.where(torch.cat(neg_masks))[0]
        sampled = torch.cat([positives, negatives])
        labels_all = torch.cat(labels)
        targets_all = torch.cat(regression_targets)
        num_sampled = max(sampled.numel(), 1)

        deltas, targets = pred_bbox_deltas[positives], targets_all[positives]
        if self.box_loss == "l1":
            box_loss = F.l1_loss(deltas, targets, reduction="sum") / num_sampled
        else:
            box_loss = F.smooth_l1_loss(deltas, targets, beta=1 / 9, reduction="sum") / num_sampled
        logits = objectness.flatten()[sampled]
        if logits.numel() == 0:
            objectness_loss = objectness.sum() * 0.0
        else:
            objectness_loss = F.binary_cross_entropy_with_logits(logits, labels_all[sampled])
        return objectness_loss, box_loss
