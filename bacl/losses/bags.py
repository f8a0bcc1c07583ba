"""BAGS: balanced group softmax (Li et al., CVPR 2020; docs/method.md section 7), the other
decoupled method: trained as a classifier stage on a frozen representation.

As FishYuLi/BalancedGroupSoftmax's ``mmdet/models/bbox_heads/gs_bbox_head_with0.py`` with
the groups of ``tools/lvis_analyse.py`` and the config
``configs/bags/gs_faster_rcnn_r50_fpn_1x_lvis_with0_bg8.py``:

- Group 0 holds two entries, background and "foreground" (every class).
- Classes are grouped by training instance count with ``group_bounds`` (10, 100, 1000):
  ``n < 10`` (classes with no annotation included: the official "with0"), ``[10, 100)``,
  ``[100, 1000)``, ``n >= 1000``. Each such group has its own softmax over an "others"
  entry followed by its classes in label order.
- Logit layout, ``C + 2 + G`` columns for ``G`` class groups: ``[background, foreground]``,
  then per group ``[others, its classes...]``.
- Training, per group a softmax cross-entropy: group 0 on every RoI (target foreground
  or background); a class group on the RoIs of its classes plus, as "others",
  ``int(others_sample_ratio * their number)`` RoIs drawn at random from the rest
  (background and other groups' classes; all of them when there are fewer), and no
  loss when no RoI of the batch belongs to it. Each term is divided by the number of
  rows it used.
- Test: ``score_j = P_group0(foreground) * P_group(j)(j)``; the "others" entries are
  dropped.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from ..seeded_generator import SeededGenerator
from .base import ClassificationLoss, LossArgumentError, check_class_counts, promote_half
from .registry import register_loss


@register_loss("bags")
class BalancedGroupSoftmax(SeededGenerator, ClassificationLoss):
    """Group softmax over instance-count groups with "others" entries.

    Buffers (int64, fixed at construction): ``class_group (C,)``, the class group of each
    class (0 for the rarest), and ``class_position (C,)``, its entry within the group
    (1 + its rank among the group's classes; entry 0 is "others"). The sampling of
    "others" uses the module's own CPU generator, whose state travels in the
    ``state_dict`` (``_extra_state``); build each process with its own ``seed``.

    Args:
        num_classes: ``C``.
        instance_counts: ``(C,)`` training annotations of each class.
        group_bounds: increasing positive instance-count bounds between class groups
            (official: 10, 100, 1000, so 4 groups).
        others_sample_ratio: "others" RoIs drawn per RoI of the group, ``>= 0``
            (official: 8).
        seed: seed of the generator.
    """

    use_sigmoid = False

    def __init__(
        self,
        *,
        num_classes: int,
        instance_counts: torch.Tensor,
        group_bounds: Sequence[int] = (10, 100, 1000),
        others_sample_ratio: float = 8.0,
        seed: int = 0,
    ) -> None:
        super().__init__(num_classes=num_classes)
        counts = check_class_counts("BAGS", "instance_counts", instance_counts, self.num_classes)
        bounds = [int(b) for b in group_bounds]
        if not bounds or bounds[0] < 1 or any(upper <= lower for lower, upper in zip(bounds, bounds[1:])):
            raise LossArgumentError(
                f"BAGS: group_bounds must be increasing positive integers, got {list(group_bounds)}"
            )
        if not others_sample_ratio >= 0:
            raise LossArgumentError(f"BAGS: others_sample_ratio must be >= 0, got {others_sample_ratio}")
        self.group_bounds = tuple(bounds)
        self.others_sample_ratio = float(others_sample_ratio)
        group = torch.bucketize(counts, torch.tensor(bounds, dtype=torch.int64), right=True)
        position = torch.zeros_like(group)
        for g in range(self.num_groups):
            members = (group == g).nonzero().squeeze(1)
            position[members] = torch.arange(1, members.numel() + 1)
        self.register_buffer("class_group", group)
        self.register_buffer("class_position", position)
        self.init_generator(seed)

    @property
    def num_groups(self) -> int:
        """``G``, the number of class groups (group 0, background vs foreground, not counted)."""
        return len(self.group_bounds) + 1

    @property
    def num_logits(self) -> int:
        return self.num_classes + 2 + self.num_groups

    def group_slices(self) -> list[tuple[int, int]]:
        """``(start, length)`` of each class group's columns, "others" first; ``G`` entries."""
        sizes = torch.bincount(self.class_group, minlength=self.num_groups).tolist()
        out, start = [], 2
        for size in sizes:
            out.append((start, 1 + size))
            start += 1 + size
        return out

    def class_columns(self) -> torch.Tensor:
        """``(C,)`` int64: the column of each class's logit."""
        starts = torch.tensor([s for s, _ in self.group_slices()], device=self.class_group.device)
        return starts[self.class_group] + self.class_position

    def group_weights(self, group_labels: torch.Tensor) -> torch.Tensor:
        """0/1 row weights ``(N,)`` of one class group from its labels ``(N,)`` (0 = others):
        every row of the group, plus the sampled "others" rows; all 0 if none of the group."""
        inside = group_labels > 0
        num_inside = int(inside.sum())
        if num_inside == 0:
            return torch.zeros_like(group_labels, dtype=torch.bool)
        others = (~inside).nonzero().squeeze(1)
        wanted = int(num_inside * self.others_sample_ratio)
        if wanted >= others.numel():
            return torch.ones_like(inside)
        pick = torch.randperm(others.numel(), generator=self.generator)[:wanted].to(others.device)
        weight = inside.clone()
        weight[others[pick]] = True
        return weight

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """Args: logits ``(N, C+2+G)``; labels ``(N,)`` int64 in ``[0, C]``, ``C`` = background.

        Returns ``{"loss_cls_bin0": ..., "loss_cls_bin1": ..., ...}``, one scalar for group 0
        and each class group; ``N == 0`` gives zeros that keep the graph.
        """
        self.check_inputs(logits, labels)
        logits = promote_half(logits)
        n, c = logits.shape[0], self.num_classes
        zero = logits.sum() * 0.0
        if n == 0:
            return {f"loss_cls_bin{k}": zero.clone() for k in range(self.num_groups + 1)}
        foreground = labels < c
        losses = {"loss_cls_bin0": F.cross_entropy(logits[:, :2], foreground.long(), reduction="sum") / n}
        safe = labels.clamp(max=c - 1)
        for k, (start, length) in enumerate(self.group_slices()):
            in_group = foreground & (self.class_group[safe] == k)
            group_labels = torch.where(in_group, self.class_position[safe], torch.zeros_like(labels))
            rows = self.group_weights(group_labels).nonzero().squeeze(1)
            if rows.numel() == 0:
                losses[f"loss_cls_bin{k + 1}"] = zero.clone()
                continue
            group_logits = logits[rows, start : start + length]
            group_loss = F.cross_entropy(group_logits, group_labels[rows], reduction="sum")
            losses[f"loss_cls_bin{k + 1}"] = group_loss / rows.numel()
        return losses

    def scores(self, logits: torch.Tensor) -> torch.Tensor:
        """``(N, C)``: ``softmax(z[:, :2])[:, 1] * softmax(z[:, group(j)])[:, entry(j)]``."""
        probs = torch.empty_like(logits)
        probs[:, :2] = torch.softmax(logits[:, :2], dim=1)
        for start, length in self.group_slices():
            probs[:, start : start + length] = torch.softmax(logits[:, start : start + length], dim=1)
        return probs[:, self.class_columns()] * probs[:, 1:2]
