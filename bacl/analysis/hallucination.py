"""What FHM learned and drew: per-class embedding statistics, draw probabilities, FCBL's
margins, and real against hallucinated embeddings in a 2-D projection.

Everything about the method comes from the method's own modules, rebuilt from the
classifier stage's checkpoint by :func:`.trained_stage.load_trained_stage`: FCBL's
``class_accuracy`` and ``margins``, FHM's ``draw_probabilities`` (what ``sample`` draws
classes by) and ``draw`` (its Gaussian draw). This module chooses what to show and
projects it. Inference drops FHM's buffers when it loads a model; the checkpoint keeps
them. Classes are indexed ``0..C-1`` in category-id order throughout.

Figures with a row or column per class show a bounded set of classes (the most confused
pairs' classes, the rarest classes drawn most), so they stay readable at LVIS's 1,203.
"""

from __future__ import annotations

from collections import Counter
from typing import Sequence

import torch

from ..losses.fcbl import FCBL
from ..models.feature_hallucination import FeatureHallucination
from .confusion import confused_pair_indices, pair_classes


def draw_probabilities(fcbl: FCBL, fhm: FeatureHallucination) -> torch.Tensor:
    """``(C,)`` float64: the probability that one of FHM's class draws picks each class,
    given FCBL's current per-class accuracy (FHM's own :meth:`draw_probabilities`)."""
    return fhm.draw_probabilities(fcbl.class_accuracy)


def top_classes(values: torch.Tensor, k: int) -> list[int]:
    """Indices of the ``k`` largest ``values (C,)``, largest first, ties by index."""
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    order = torch.argsort(-values.double(), stable=True)[:k]
    return [int(c) for c in order.tolist()]


def rarest_first(classes: Sequence[int], image_count: Sequence[int]) -> list[int]:
    """``classes`` ordered by training images (fewest first), ties by index."""
    return sorted((int(c) for c in classes), key=lambda c: (int(image_count[c]), c))


def margin_classes(fcbl: FCBL, image_count: Sequence[int], *, num_pairs: int = 30) -> tuple[list[int], int]:
    """The rows and columns of the margin figure: the classes of the ``num_pairs`` most
    confused pairs of FCBL's training confusion matrix (largest off-diagonal ``cm[y, j]``),
    rarest first, and how many pairs there were (fewer than ``num_pairs`` when fewer
    entries are positive). At most ``2 * num_pairs`` classes, whatever ``C``."""
    cm = fcbl.cm.numpy()
    pairs = confused_pair_indices(cm, cm.shape[0], num_pairs)
    return rarest_first(pair_classes(pairs), image_count), len(pairs)


def margin_submatrix(fcbl: FCBL, classes: Sequence[int]) -> torch.Tensor:
    """``(K, K)`` float64 for ``K = len(classes)``: FCBL's margin (:meth:`FCBL.margins`) added
    to logit ``classes[j]`` of a RoI of class ``classes[i]``,
    ``alpha * log(max(cm[y, j], 1e-3) / max(cm[j, y], 1e-3))``. Only these ``K`` rows are
    computed (``K x C``), never the ``C x C`` matrix."""
    index = torch.as_tensor([int(c) for c in classes], dtype=torch.long)
    if index.numel() == 0:
        return torch.zeros(0, 0, dtype=torch.float64)
    return fcbl.margins(index)[:, index]


def per_class_variance(var: torch.Tensor) -> torch.Tensor:
    """``(C,)`` mean per-dimension variance of each class's embeddings (``var (C, D)``)."""
    return var.double().mean(dim=1)


def nearest_classes(mean: torch.Tensor, query: int, candidates: Sequence[int], k: int = 3) -> list[int]:
    """The ``k`` classes of ``candidates`` whose mean embedding (``mean (C, D)``) is closest
    (Euclidean) to class ``query``'s, closest first (``query`` itself excluded)."""
    pool = [int(c) for c in candidates if int(c) != int(query)]
    if not pool or k <= 0:
        return []
    dist = torch.cdist(mean[[int(query)]].double(), mean[pool].double())[0]
    order = torch.argsort(dist, stable=True)[:k]
    return [pool[i] for i in order.tolist()]


def choose_classes(priority: torch.Tensor, frequency: Sequence[str], seen: torch.Tensor, *, bin: str = "r",
                   num: int = 3) -> list[int]:
    """Up to ``num`` classes of frequency bin ``bin`` that FHM has seen, highest ``priority``
    (e.g. :func:`draw_probabilities`) first, ties by index."""
    candidates = [c for c, f in enumerate(frequency) if f == bin and bool(seen[c])]
    return sorted(candidates, key=lambda c: (-float(priority[c]), c))[: max(num, 0)]


def pca_classes(fhm: FeatureHallucination, priority: torch.Tensor, frequency: Sequence[str], *, num_rare: int = 3,
                num_neighbours: int = 2) -> list[int]:
    """The classes of the real-against-hallucinated projection: the ``num_rare`` rare classes
    FHM has seen with the highest ``priority`` (its draw probability), each followed by its
    ``num_neighbours`` nearest frequent classes (by FHM's class means), without repeats.
    At most ``num_rare * (1 + num_neighbours)`` classes, whatever ``C``."""
    frequent = [k for k, f in enumerate(frequency) if f == "f" and bool(fhm.seen[k])]
    chosen: list[int] = []
    for rare in choose_classes(priority, frequency, fhm.seen, bin="r", num=num_rare):
        for k in [rare, *nearest_classes(fhm.mean, rare, frequent, k=num_neighbours)]:
            if k not in chosen:
                chosen.append(k)
    return chosen


def hallucinate(fhm: FeatureHallucination, classes: Sequence[int], num_per_class: int, *,
                seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """FHM's own draw (:meth:`FeatureHallucination.draw`) of ``num_per_class`` embeddings for
    each of ``classes``, with noise from a generator seeded by ``seed`` (FHM's own generator
    is left as it is): ``(embeddings (K, D) float64, labels (K,))``, ``K = len(classes) *
    num_per_class``, class-major."""
    if num_per_class < 0:
        raise ValueError(f"num_per_class must be >= 0, got {num_per_class}")
    labels = torch.tensor([int(c) for c in classes], dtype=torch.long).repeat_interleave(int(num_per_class))
    generator = torch.Generator().manual_seed(int(seed))
    return fhm.draw(labels, generator=generator).double().cpu(), labels


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
