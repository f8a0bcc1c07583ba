"""What FHM learned and drew: per-class embedding statistics, sampling probabilities,
FCBL's margins, and real against hallucinated embeddings in a 2-D projection.

A classifier-stage checkpoint (``model_final.pt`` or ``checkpoints/last.pt`` of the BACL
run) holds everything: FHM's running moments as ``roi_heads.hallucinator.mean``/``var``
``(C, D)`` and ``seen (C,)``, FCBL's confusion statistics, and the parameters (alpha).
Inference drops FHM's buffers when it loads a model; this module reads them directly.
Classes are indexed ``0..C-1`` in category-id order throughout.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import torch

from ..engine.checkpoint import load_checkpoint
from ..losses.fcbl import FCBL
from .confusion import CM_NUM_KEY, NUM_GT_KEY

FHM_PREFIX = "roi_heads.hallucinator."


@dataclass(frozen=True)
class StageStatistics:
    """FHM's and FCBL's statistics at the end of a classifier stage (float64 tensors).

    A run trained without FHM (``classifier.fhm.enabled: false``) has no FHM statistics
    (``mean``, ``var`` and ``seen`` are ``None``); one trained with another loss than FCBL
    has no confusion statistics either (``cm_num`` and ``num_gt`` are ``None``).
    """

    mean: Optional[torch.Tensor]    # (C, D) running class means of the classification embedding
    var: Optional[torch.Tensor]     # (C, D) running per-dimension variances
    seen: Optional[torch.Tensor]    # (C,) bool: classes FHM has statistics for
    cm_num: Optional[torch.Tensor]  # (C, C) FCBL's summed foreground probabilities
    num_gt: Optional[torch.Tensor]  # (C,) positive RoIs per class
    alpha: float                    # FCBL's margin scale in that run
    num_classes: int

    @property
    def has_fhm(self) -> bool:
        return self.mean is not None

    @property
    def has_fcbl(self) -> bool:
        return self.cm_num is not None

    @property
    def accuracy(self) -> torch.Tensor:
        """``(C,)`` FCBL's per-class accuracy (0 for a class never seen), what FHM draws by."""
        if not self.has_fcbl:
            raise KeyError("this run kept no FCBL statistics (its loss was not fcbl)")
        return class_accuracy(self.cm_num, self.num_gt)


def load_stage_statistics(checkpoint: str | Path) -> StageStatistics:
    """Read FHM's and FCBL's statistics from a classifier-stage checkpoint; either may be
    absent (see :class:`StageStatistics`)."""
    state = load_checkpoint(checkpoint)
    weights = state["model"]
    stage = state.get("stage", "classifier")
    params = state.get("params", {})
    fhm_keys = [FHM_PREFIX + "mean", FHM_PREFIX + "var", FHM_PREFIX + "seen"]
    has_fhm = all(k in weights for k in fhm_keys)
    has_fcbl = CM_NUM_KEY in weights and NUM_GT_KEY in weights
    cls_key = next((k for k in weights if k.endswith("cls_score.weight")), None)
    if cls_key is None:
        raise KeyError(f"{checkpoint}: no classification layer (cls_score) in the weights")
    options = params.get("losses", {}).get("fcbl") or params.get(stage, {}).get("fcbl", {})  # older checkpoints
    alpha = float(options.get("alpha", 0.0)) if has_fcbl else 0.0
    return StageStatistics(
        mean=weights[FHM_PREFIX + "mean"].double() if has_fhm else None,
        var=weights[FHM_PREFIX + "var"].double() if has_fhm else None,
        seen=weights[FHM_PREFIX + "seen"].bool() if has_fhm else None,
        cm_num=weights[CM_NUM_KEY].double() if has_fcbl else None,
        num_gt=weights[NUM_GT_KEY].double() if has_fcbl else None,
        alpha=alpha, num_classes=int(weights[cls_key].shape[0]) - 1,
    )


def class_accuracy(cm_num: torch.Tensor, num_gt: torch.Tensor) -> torch.Tensor:
    """``(C,)``: the confusion matrix's diagonal, as :attr:`bacl.losses.fcbl.FCBL.class_accuracy`."""
    return torch.diagonal(cm_num.double()) / num_gt.double().clamp(min=1.0)


def sampling_probability(accuracy: torch.Tensor, seen: torch.Tensor) -> torch.Tensor:
    """``(C,)`` probability that one FHM draw picks each class: ``∝ 1 - accuracy`` over the
    classes seen (FHM's rule); all zeros when no seen class has accuracy below 1."""
    weights = (1.0 - accuracy.double()).clamp(min=0) * seen.double()
    total = weights.sum()
    return weights / total if total > 0 else weights


def margin_matrix(cm_num: torch.Tensor, num_gt: torch.Tensor, alpha: float) -> torch.Tensor:
    """``(C, C)``: FCBL's margin added to logit ``j`` of a RoI of class ``y``,
    ``alpha * log(max(cm[y, j], 1e-3) / max(cm[j, y], 1e-3))`` (computed by FCBL itself)."""
    num_classes = int(num_gt.numel())
    fcbl = FCBL(num_classes=num_classes, alpha=alpha)
    fcbl.cm_num.copy_(cm_num.double())
    fcbl.num_gt.copy_(num_gt.double())
    return fcbl.margins(torch.arange(num_classes))[:, :num_classes]


def per_class_variance(var: torch.Tensor) -> torch.Tensor:
    """``(C,)`` mean per-dimension variance of each class's embeddings."""
    return var.double().mean(dim=1)


def nearest_classes(mean: torch.Tensor, query: int, candidates: Sequence[int], k: int = 3) -> list[int]:
    """The ``k`` classes of ``candidates`` whose mean embedding is closest (Euclidean) to
    class ``query``'s, closest first (``query`` itself excluded)."""
    pool = [int(c) for c in candidates if int(c) != int(query)]
    if not pool or k <= 0:
        return []
    dist = torch.cdist(mean[[int(query)]].double(), mean[pool].double())[0]
    order = torch.argsort(dist, stable=True)[:k]
    return [pool[i] for i in order.tolist()]


def choose_classes(priority: torch.Tensor, frequency: Sequence[str], seen: torch.Tensor, *, bin: str = "r",
                   num: int = 3) -> list[int]:
    """Up to ``num`` classes of frequency bin ``bin`` that FHM has seen, highest ``priority``
    (e.g. :func:`sampling_probability`) first, ties by index."""
    candidates = [c for c, f in enumerate(frequency) if f == bin and bool(seen[c])]
    return sorted(candidates, key=lambda c: (-float(priority[c]), c))[: max(num, 0)]


def hallucinate(mean: torch.Tensor, var: torch.Tensor, classes: Sequence[int], num_per_class: int, *,
                seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw as FHM does, ``mean + sqrt(var) * N(0, 1)``, ``num_per_class`` embeddings for each
    of ``classes``: ``(embeddings (K, D), labels (K,))`` with ``K = len(classes) * num_per_class``."""
    labels = torch.tensor([int(c) for c in classes], dtype=torch.long).repeat_interleave(int(num_per_class))
    generator = torch.Generator().manual_seed(int(seed))
    noise = torch.randn(labels.numel(), mean.shape[1], generator=generator, dtype=torch.float64)
    return mean.double()[labels] + var.double()[labels].clamp(min=0).sqrt() * noise, labels


@torch.no_grad()
def real_embeddings(model: torch.nn.Module, dataset, classes: Sequence[int], *, max_per_class: int = 32,
                    device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Classification embeddings of ground-truth boxes of ``classes`` (``0..C-1``): the
    detector's own transform, backbone, RoI pooling and box head on each box, at most
    ``max_per_class`` boxes per class, images in dataset order.

    Args:
        model: a detector built by :func:`bacl.engine.build.build_model` (e.g. from
            :func:`bacl.engine.inference.load_trained_model`); put in eval mode.
        dataset: a :class:`bacl.data.lvis_dataset.LVISDetection` (labels ``1..C``).

    Returns ``(embeddings (M, D) float64, labels (M,))``.
    """
    model.eval()
    wanted = {int(c) for c in classes}
    taken: Counter[int] = Counter()
    out_emb, out_lab = [], []
    for index, present in enumerate(dataset.image_category_sets):
        if all(taken[c] >= max_per_class for c in wanted):
            break
        if not any(int(c) - 1 in wanted and taken[int(c) - 1] < max_per_class for c in present):
            continue
        image, target = dataset[index]
        keep = []
        for k, label in enumerate((target["labels"] - 1).tolist()):
            if label in wanted and taken[label] < max_per_class:
                keep.append(k)
                taken[label] += 1
        boxes, labels = target["boxes"][keep], target["labels"][keep] - 1
        images, targets = model.transform([image.to(device)], [{"boxes": boxes.to(device), "labels": labels}])
        features = model.backbone(images.tensors)
        pooled = model.roi_heads.box_roi_pool(features, [targets[0]["boxes"]], images.image_sizes)
        out_emb.append(model.roi_heads.box_head(pooled).double().cpu())
        out_lab.append(labels)
    if not out_emb:
        dim = model.roi_heads.box_predictor.cls_score.in_features
        return torch.zeros(0, dim, dtype=torch.float64), torch.zeros(0, dtype=torch.long)
    return torch.cat(out_emb), torch.cat(out_lab)


def fit_pca(x: torch.Tensor, k: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Principal axes of the rows of ``x (N, D)``: ``(mean (D,), components (k, D))``.
    Each component's sign makes its largest-magnitude entry positive, so pictures do not
    flip between runs."""
    x = x.double()
    if x.shape[0] < 1 or not 1 <= k <= min(x.shape):
        raise ValueError(f"need 1 <= k <= min(N, D) for x of shape {tuple(x.shape)}, got k={k}")
    centre = x.mean(dim=0)
    _, _, vh = torch.linalg.svd(x - centre, full_matrices=False)
    components = vh[:k]
    signs = torch.sign(components.gather(1, components.abs().argmax(dim=1, keepdim=True)))
    return centre, components * torch.where(signs == 0, torch.ones_like(signs), signs)


def project(x: torch.Tensor, centre: torch.Tensor, components: torch.Tensor) -> torch.Tensor:
    """Coordinates ``(N, k)`` of ``x (N, D)`` on the axes from :func:`fit_pca`."""
    return (x.double() - centre) @ components.T
