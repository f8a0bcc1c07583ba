"""FHM: feature hallucination module (docs/method.md section 3).

Keeps a running per-class Gaussian (mean, variance) of the classification embedding,
fed by jittered ground-truth boxes, and draws extra embeddings for the classes the
classifier gets wrong most often (probability proportional to ``1 - accuracy``).

Compared with the reference (``mmdet/models/utils/bbox_generator.py``,
``mmdet/models/roi_heads/bbox_heads/fhm_convfc_bbox_head.py``), on purpose:

- Class draws are restricted to classes seen so far. The reference draws from all
  classes and then drops draws of unseen classes, so it returns fewer than
  ``num_sampled_classes`` draws early on; here every draw lands on a seen class.
  Both return nothing when every seen class has accuracy 1.
- In a multi-process run the reference keeps per-process statistics; here the
  per-class sums, sums of squares and counts are summed over processes before the
  batch moments are taken, so every process holds the same statistics (equal to one
  process that saw the whole global batch).
- Random numbers come from the module's own generator, whose state is saved in the
  ``state_dict`` (``_extra_state``) so a resumed run draws the same numbers. Build it
  with a different ``seed`` per process if the processes should draw differently.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import torch
from torch import nn

from ..distributed import all_reduce_sum_, is_dist
from ..seeded_generator import SeededGenerator

# (16, 4) signs for (x1, y1, x2, y2); row k is the k-th sign pattern, x1 the slowest
# to change (the reference's offset matrix, transposed).
_SIGNS = torch.tensor([[1.0 if (k >> (3 - i)) & 1 else -1.0 for i in range(4)] for k in range(16)])


class FeatureHallucination(SeededGenerator, nn.Module):
    """Per-class embedding statistics and hallucinated embeddings.

    Buffers: ``mean (C, D)``, ``var (C, D)`` float32 and ``seen (C,)`` bool; the
    generator state travels as extra state. Labels are ``0..C-1`` throughout, except
    in :meth:`forward`, which takes torchvision targets (labels ``1..C``).

    Args:
        num_classes: ``C``.
        feat_dim: ``D``, the width of the classification embedding (1024 in R50-FPN).
        decay: weight of the batch statistics in the running average, in ``(0, 1]``.
        num_sampled_classes: classes drawn (with replacement) per call of :meth:`sample`.
        num_samples_per_class: embeddings drawn per drawn class.
        num_jitter: jittered boxes per ground-truth box; a multiple of 16 (each 16 cover
            all sign patterns once). The reference uses 16.
        seed: seed of the module's generator.
        accuracy_source: a callable returning the ``(C,)`` per-class accuracy used by
            :meth:`forward`, e.g. ``lambda: fcbl.class_accuracy`` (a function, not the
            loss module itself, so the loss's buffers are not registered twice).
    """

    def __init__(
        self,
        *,
        num_classes: int,
        feat_dim: int,
        decay: float = 0.1,
        num_sampled_classes: int = 8,
        num_samples_per_class: int = 12,
        num_jitter: int = 16,
        seed: int = 0,
        accuracy_source: Optional[Callable[[], torch.Tensor]] = None,
    ) -> None:
        super().__init__()
        if int(num_classes) < 1:
            raise ValueError(f"FeatureHallucination: num_classes must be >= 1, got {num_classes}")
        if int(feat_dim) < 1:
            raise ValueError(f"FeatureHallucination: feat_dim must be >= 1, got {feat_dim}")
        if not 0 < decay <= 1:
            raise ValueError(f"FeatureHallucination: decay must be in (0, 1], got {decay}")
        if int(num_sampled_classes) < 0:
            raise ValueError(f"FeatureHallucination: num_sampled_classes must be >= 0, got {num_sampled_classes}")
        if int(num_samples_per_class) < 0:
            raise ValueError(
                f"FeatureHallucination: num_samples_per_class must be >= 0, got {num_samples_per_class}"
            )
        if int(num_jitter) < 16 or int(num_jitter) % 16:
            raise ValueError(f"FeatureHallucination: num_jitter must be a positive multiple of 16, got {num_jitter}")
        if isinstance(accuracy_source, nn.Module):
            raise TypeError("FeatureHallucination: pass accuracy_source=lambda: loss.class_accuracy, not a module")
        self.num_classes = int(num_classes)
        self.feat_dim = int(feat_dim)
        self.decay = float(decay)
        self.num_sampled_classes = int(num_sampled_classes)
        self.num_samples_per_class = int(num_samples_per_class)
        self.num_jitter = int(num_jitter)
        self.accuracy_source = accuracy_source
        self.register_buffer("mean", torch.zeros(self.num_classes, self.feat_dim))
        self.register_buffer("var", torch.zeros(self.num_classes, self.feat_dim))
        self.register_buffer("seen", torch.zeros(self.num_classes, dtype=torch.bool))
        self.init_generator(seed)

    # -- boxes ---------------------------------------------------------------------------
    def jitter_boxes(self, boxes: torch.Tensor, image_size: Sequence[int]) -> torch.Tensor:
        """``boxes (G, 4)`` xyxy, ``image_size (H, W)`` -> ``(G * num_jitter, 4)``, box-major.

        As the reference's ``BoxGn.bbox_generator``: each coordinate moves by
        ``sign * U(0, 1) * w / 6`` (``h / 6`` for y) with the 16 sign patterns in order;
        one ``U`` per (pattern, coordinate), drawn fresh per call (per image) and shared
        by all boxes of the call; x clipped to ``[0, W - 1]``, y to ``[0, H - 1]``;
        degenerate results are kept. No draw when ``G == 0``.
        """
        if boxes.dim() != 2 or boxes.shape[1] != 4:
            raise ValueError(f"jitter_boxes: boxes must be (G, 4), got {tuple(boxes.shape)}")
        if boxes.shape[0] == 0:
            return boxes.new_zeros(0, 4)
        height, width = float(image_size[0]), float(image_size[1])
        reps = self.num_jitter // 16
        # drawn as (4, num_jitter) like the reference's torch.rand(4, 16)
        u = torch.rand(4, self.num_jitter, generator=self.generator).t()
        offsets = (_SIGNS.repeat(reps, 1) * u / 6.0).to(boxes.device, boxes.dtype)  # (J, 4)
        size = (boxes[:, 2:] - boxes[:, :2]).repeat(1, 2)  # (G, 4): w, h, w, h
        out = boxes[:, None, :] + offsets[None] * size[:, None, :]
        upper = boxes.new_tensor([width - 1, height - 1, width - 1, height - 1])
        out = torch.minimum(out.clamp(min=0), upper)
        return out.reshape(-1, 4)

    # -- statistics ----------------------------------------------------------------------
    @torch.no_grad()
    def update(self, embeddings: torch.Tensor, labels: torch.Tensor) -> None:
        """Fold a batch of ``embeddings (M, D)`` with ``labels (M,)`` in ``[0, C)`` in.

        Per class present: batch mean and unbiased variance (variance 0 for a single
        sample, as the reference); first sighting sets the statistics, afterwards
        ``stat = decay * batch + (1 - decay) * stat``. With a process group the sums are
        taken over all processes, so every process must call this each step (``M = 0``
        is fine).
        """
        if embeddings.dim() != 2 or embeddings.shape[1] != self.feat_dim or labels.shape != embeddings.shape[:1]:
            raise ValueError(
                f"update: expected embeddings (M, {self.feat_dim}) and labels (M,), "
                f"got {tuple(embeddings.shape)} and {tuple(labels.shape)}"
            )
        if labels.numel() == 0 and not is_dist():
            return
        dev = self.mean.device
        labels = labels.to(dev)
        x = embeddings.detach().to(dev, torch.float64)
        counts = all_reduce_sum_(torch.bincount(labels, minlength=self.num_classes).to(torch.float64))
        present = counts.nonzero().squeeze(1)
        if present.numel() == 0:
            return
        # sums over the (globally) present classes only: a small all_reduce
        slot = torch.full((self.num_classes,), -1, dtype=torch.long, device=dev)
        slot[present] = torch.arange(present.numel(), device=dev)
        sums = x.new_zeros(present.numel(), 2 * self.feat_dim)
        sums.index_add_(0, slot[labels], torch.cat([x, x * x], dim=1))
        all_reduce_sum_(sums)
        n = counts[present, None]
        s, ss = sums[:, : self.feat_dim], sums[:, self.feat_dim :]
        batch_mean = s / n
        sq_dev = (ss - s * batch_mean).clamp(min=0)
        batch_var = torch.where(n > 1, sq_dev / (n - 1).clamp(min=1), torch.zeros_like(sq_dev))

        was_seen = self.seen[present, None]
        old_mean = self.mean[present].double()
        old_var = self.var[present].double()
        d = self.decay
        self.mean[present] = torch.where(was_seen, d * batch_mean + (1 - d) * old_mean, batch_mean).to(self.mean.dtype)
        self.var[present] = torch.where(was_seen, d * batch_var + (1 - d) * old_var, batch_var).to(self.var.dtype)
        self.seen[present] = True

    # -- sampling ------------------------------------------------------------------------
    def draw_weights(self, class_accuracy: torch.Tensor) -> torch.Tensor:
        """Unnormalised class-draw weights ``(C,)`` float64 on the CPU: ``1 - accuracy``
        (clamped at 0) for the classes seen so far, 0 for the others. :meth:`sample`
        draws classes with these weights.

        Args: ``class_accuracy (C,)`` in ``[0, 1]`` (FCBL's ``class_accuracy``).
        """
        if class_accuracy.shape != (self.num_classes,):
            raise ValueError(f"draw_weights: class_accuracy must be ({self.num_classes},), "
                             f"got {tuple(class_accuracy.shape)}")
        weights = (1.0 - class_accuracy.detach().to("cpu", torch.float64)).clamp(min=0)
        return weights * self.seen.cpu()

    def draw_probabilities(self, class_accuracy: torch.Tensor) -> torch.Tensor:
        """Probability ``(C,)`` float64 that one class draw of :meth:`sample` picks each
        class: :meth:`draw_weights` divided by their sum; all zeros when no seen class has
        accuracy below 1 (then :meth:`sample` draws nothing)."""
        weights = self.draw_weights(class_accuracy)
        total = weights.sum()
        return weights / total if bool(total > 0) else weights

    @torch.no_grad()
    def draw(self, labels: torch.Tensor, *, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """One embedding per entry of ``labels (K,)`` in ``[0, C)``: ``mean[c] + sqrt(var[c]) *
        N(0, I)`` with the noise from ``generator`` (default: the module's own, which then
        advances). Returns ``(K, D)`` of the statistics' dtype on their device.
        """
        source = self.generator if generator is None else generator
        noise = torch.randn(labels.numel(), self.feat_dim, generator=source, dtype=self.mean.dtype)
        labels = labels.to(self.mean.device)
        return self.mean[labels] + self.var[labels].clamp(min=0).sqrt() * noise.to(self.mean.device)

    @torch.no_grad()
    def sample(self, class_accuracy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Hallucinate embeddings for classes drawn with probability ``∝ 1 - accuracy``.

        Args: ``class_accuracy (C,)`` in ``[0, 1]`` (FCBL's ``class_accuracy``).
        Returns ``embeddings (K, D)`` and ``labels (K,)`` int64 with
        ``K = num_sampled_classes * num_samples_per_class``, draw-major; ``K = 0`` when
        no class has been seen or every seen class has accuracy 1. Classes are drawn by
        :meth:`draw_weights` (probabilities: :meth:`draw_probabilities`), embeddings by
        :meth:`draw`.
        """
        if class_accuracy.shape != (self.num_classes,):
            raise ValueError(f"sample: class_accuracy must be ({self.num_classes},), got {tuple(class_accuracy.shape)}")
        dev = self.mean.device
        weights = self.draw_weights(class_accuracy)
        if self.num_sampled_classes == 0 or not bool((weights > 0).any()):
            return self.mean.new_zeros(0, self.feat_dim), torch.zeros(0, dtype=torch.long, device=dev)
        classes = torch.multinomial(weights, self.num_sampled_classes, replacement=True, generator=self.generator)
        labels = classes.repeat_interleave(self.num_samples_per_class)
        return self.draw(labels), labels.to(dev)

    # -- the RoI-heads hook --------------------------------------------------------------
    def forward(
        self,
        *,
        roi_heads: nn.Module,
        features: dict[str, torch.Tensor],
        proposals: Sequence[torch.Tensor],
        targets: Sequence[dict[str, torch.Tensor]],
        image_shapes: Sequence[tuple[int, int]],
        class_accuracy: Optional[torch.Tensor] = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One training step of FHM against torchvision's ``RoIHeads``.

        Jitters every ground-truth box (``targets[i]["boxes"]``, labels ``1..C``), runs
        the jittered boxes through ``roi_heads.box_roi_pool`` and ``roi_heads.box_head``
        without gradient, folds the embeddings into the statistics, then samples with
        ``class_accuracy`` (default: ``accuracy_source()``). ``proposals`` is unused (the
        statistics come from ground truth only). Returns ``(embeddings (K, D), labels
        (K,))`` with labels in ``0..C-1``, to be classified and appended to the real RoIs.
        """
        del proposals
        if class_accuracy is None:
            if self.accuracy_source is None or isinstance(self.accuracy_source, nn.Module):
                raise RuntimeError(
                    "FeatureHallucination: set accuracy_source (e.g. lambda: fcbl.class_accuracy) "
                    "or pass class_accuracy"
                )
            class_accuracy = self.accuracy_source()
        boxes, labels = [], []
        for target, size in zip(targets, image_shapes):
            boxes.append(self.jitter_boxes(target["boxes"], size))
            labels.append((target["labels"] - 1).repeat_interleave(self.num_jitter))
        labels_all = torch.cat(labels) if labels else torch.zeros(0, dtype=torch.long, device=self.mean.device)
        if labels_all.numel() > 0:
            with torch.no_grad():
                embeddings = roi_heads.box_head(roi_heads.box_roi_pool(features, boxes, image_shapes))
        else:
            embeddings = self.mean.new_zeros(0, self.feat_dim)
        self.update(embeddings.flatten(1), labels_all)
        return self.sample(class_accuracy)
