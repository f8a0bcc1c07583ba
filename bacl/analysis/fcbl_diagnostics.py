"""Measurements of what FCBL does in a classifier stage (docs/fcbl_on_synthetic.md).

Classes are ``0..C-1`` in category-id order and ``C`` is background, as the losses see
them (docs/method.md). ``frequency`` is one of ``'r'``, ``'c'``, ``'f'`` per class (the
dataset's ``class_frequency``). Every summary is per frequency bin, in :data:`BINS` order.

Pure functions on tensors (each tested against a slow reference):

- :func:`statistics_by_bin`, :func:`confusion_spread`: FCBL's running statistics
  (``num_gt``, ``cm``) after a stage;
- :func:`margin_matrix`, :func:`margin_summary`: the margins ``m[y, j]`` those statistics give;
- :func:`fcbl_row_terms`, :func:`channel_gradient_split`: where the gradient on each
  class's logit comes from in one step (its own positives, background rows, positives of
  other classes), under BCE or FCBL;
- :func:`dropped_negative_share`: what the auto-adjusted weights switch off;
- :func:`classifier_change`: how far a stage moved each class's classification weights;
- :func:`label_counts`, :func:`expected_hallucinated_counts`: what a step classifies;
- :func:`true_class_rank`, :func:`truth_detection_rank`, :func:`cap_outcomes`: at test
  time, where the true class ranks among classes and among an image's detections.

Two collectors run a detector (built by :func:`bacl.evaluation.inference.load_trained_model`):
:func:`sample_training_rois` (the RoIs a classifier-stage step classifies) and
:func:`val_truth_ranks` (the test-time ranks on the validation split).
"""

from __future__ import annotations

from typing import Any, Iterable, Optional, Sequence

import torch
from torch import nn
from torchvision.ops import box_iou

from ..losses.fcbl import FCBL
from ..models.roi_heads import to_loss_labels

BINS = ("r", "c", "f")


def bin_index(frequency: Sequence[str]) -> torch.Tensor:
    """``(C,)`` int64: the position in :data:`BINS` of each class's bin."""
    unknown = sorted({f for f in frequency if f not in BINS})
    if unknown:
        raise ValueError(f"frequency: unknown bins {unknown}; expected one of {BINS}")
    return torch.tensor([BINS.index(f) for f in frequency], dtype=torch.long)


def _check_square(name: str, matrix: torch.Tensor, num_classes: int) -> None:
    if matrix.shape != (num_classes, num_classes):
        raise ValueError(f"{name} must be ({num_classes}, {num_classes}), got {tuple(matrix.shape)}")


def _quantile(values: torch.Tensor, q: float) -> float:
    return float(torch.quantile(values.double(), q)) if values.numel() else float("nan")


def _mean(values: torch.Tensor) -> float:
    return float(values.double().mean()) if values.numel() else float("nan")


# -- FCBL's statistics -------------------------------------------------------------------

def statistics_by_bin(cm: torch.Tensor, num_gt: torch.Tensor, frequency: Sequence[str]) -> list[dict[str, Any]]:
    """Per bin, from FCBL's ``cm (C, C)`` and ``num_gt (C,)``: ``classes``, ``seen`` (classes
    with a positive RoI), ``positives`` (RoIs counted), ``share`` (of all positives),
    ``per_class`` (mean count per class of the bin), ``per_class_min`` and, over the seen
    classes, ``accuracy`` (mean of ``cm[y, y]``), ``accuracy_min``, ``accuracy_max``."""
    bins = bin_index(frequency)
    num_classes = len(frequency)
    _check_square("cm", cm, num_classes)
    num_gt = num_gt.double()
    accuracy = torch.diagonal(cm).double()
    total = float(num_gt.sum())
    rows = []
    for b, name in enumerate(BINS):
        members = bins == b
        seen = members & (num_gt > 0)
        counts = num_gt[members]
        rows.append({
            "bin": name, "classes": int(members.sum()), "seen": int(seen.sum()), "positives": float(counts.sum()),
            "share": float(counts.sum()) / total if total > 0 else float("nan"),
            "per_class": _mean(counts), "per_class_min": float(counts.min()) if counts.numel() else float("nan"),
            "accuracy": _mean(accuracy[seen]),
            "accuracy_min": float(accuracy[seen].min()) if bool(seen.any()) else float("nan"),
            "accuracy_max": float(accuracy[seen].max()) if bool(seen.any()) else float("nan"),
        })
    return rows


def confusion_spread(cm: torch.Tensor, num_gt: torch.Tensor, frequency: Sequence[str]) -> list[dict[str, Any]]:
    """Where the rows of each bin put their probability, over the bin's seen classes:
    mean mass on the class itself (``self``) and on the *other* classes of each bin
    (``to_r``, ``to_c``, ``to_f``); the mean mass of the most confused class
    (``top``: largest off-diagonal ``cm[y, j]``, ties to the lowest ``j``) and the share of
    rows whose most confused class lies in each bin (``top_in_r``, ...). With ``cm`` rows
    summing to 1, ``self + to_r + to_c + to_f = 1``."""
    bins = bin_index(frequency)
    num_classes = len(frequency)
    _check_square("cm", cm, num_classes)
    cm = cm.double()
    off = cm.clone()
    off.fill_diagonal_(float("-inf"))
    top_value, top_class = off.max(dim=1) if num_classes > 1 else (cm.new_zeros(num_classes),
                                                                   torch.zeros(num_classes, dtype=torch.long))
    no_self = cm.clone()
    no_self.fill_diagonal_(0.0)
    rows = []
    for b, name in enumerate(BINS):
        seen = (bins == b) & (num_gt > 0)
        row = {"bin": name, "rows": int(seen.sum()), "self": _mean(torch.diagonal(cm)[seen])}
        for k, other in enumerate(BINS):
            row[f"to_{other}"] = _mean(no_self[seen][:, bins == k].sum(dim=1))
        row["top"] = _mean(top_value[seen])
        for k, other in enumerate(BINS):
            row[f"top_in_{other}"] = _mean((bins[top_class[seen]] == k).double())
        rows.append(row)
    return rows


# -- margins -------------------------------------------------------------------------------

def margin_matrix(fcbl: FCBL) -> torch.Tensor:
    """``(C, C)`` float64: ``m[y, j]``, the margin FCBL adds to logit ``j`` of a positive RoI
    of class ``y`` (:meth:`FCBL.margins` for every class; the background column dropped)."""
    classes = torch.arange(fcbl.num_classes)
    return fcbl.margins(classes)[:, : fcbl.num_classes]


def margin_summary(margins: torch.Tensor, num_gt: torch.Tensor, cm: torch.Tensor,
                   frequency: Sequence[str]) -> list[dict[str, Any]]:
    """Per bin of the row class ``y`` (seen classes only), over the off-diagonal entries
    ``m[y, j]``, ``j != y`` of ``margins (C, C)``: ``mean``, ``q10``, ``median``, ``q90``,
    ``positive`` and ``negative`` (shares of entries above / below 0), ``to_r``, ``to_c``,
    ``to_f`` (mean over the columns of each bin), and ``top_confused``: mean of
    ``m[y, j*]`` where ``j*`` is the most confused class of ``y`` (largest off-diagonal
    ``cm[y, j]``, ties to the lowest ``j``)."""
    bins = bin_index(frequency)
    num_classes = len(frequency)
    _check_square("margins", margins, num_classes)
    _check_square("cm", cm, num_classes)
    margins = margins.double()
    off_diagonal = ~torch.eye(num_classes, dtype=torch.bool)
    confusion = cm.double().clone()
    confusion.fill_diagonal_(float("-inf"))
    top_class = confusion.argmax(dim=1)
    rows = []
    for b, name in enumerate(BINS):
        seen = (bins == b) & (num_gt > 0)
        entries = margins[seen][off_diagonal[seen]]
        row = {"bin": name, "rows": int(seen.sum()), "mean": _mean(entries), "q10": _quantile(entries, 0.1),
               "median": _quantile(entries, 0.5), "q90": _quantile(entries, 0.9),
               "positive": _mean((entries > 0).double()), "negative": _mean((entries < 0).double())}
        for k, other in enumerate(BINS):
            block = off_diagonal[seen][:, bins == k]
            row[f"to_{other}"] = _mean(margins[seen][:, bins == k][block])
        index = seen.nonzero().squeeze(1)
        row["top_confused"] = _mean(margins[index, top_class[index]]) if num_classes > 1 else float("nan")
        rows.append(row)
    return rows


# -- one step's gradient -------------------------------------------------------------------

def fcbl_row_terms(fcbl: FCBL, logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """What FCBL applies to a batch, as full-size tensors: ``margins (N, C+1)`` float64
    (:meth:`FCBL.margins` on positive rows, 0 on background rows and channel ``C``) and
    ``keep (N, C+1)`` bool (:meth:`FCBL.kept_channels` on positive rows when
    ``fcbl.reweight``, True elsewhere), for ``logits (N, C+1)`` and ``labels (N,)`` in
    ``[0, C]``. Uses the statistics as they are; changes nothing."""
    c = fcbl.num_classes
    margins = torch.zeros(logits.shape, dtype=torch.float64)
    keep = torch.ones(logits.shape, dtype=torch.bool)
    pos = (labels < c).nonzero().squeeze(1)
    if pos.numel():
        margins[pos] = fcbl.margins(labels[pos])
        if fcbl.reweight:
            keep[pos] = fcbl.kept_channels(logits.detach()[pos], labels[pos])
    return margins, keep


def channel_gradient_split(logits: torch.Tensor, labels: torch.Tensor, *, margins: Optional[torch.Tensor] = None,
                           keep: Optional[torch.Tensor] = None) -> dict[str, torch.Tensor]:
    """Where the gradient of the summed sigmoid BCE ``sum_ij w_ij BCE(z_ij + m_ij, [j == y_i])``
    on each logit column comes from, split by row kind.

    Args:
        logits: ``(N, C+1)``, background last. labels: ``(N,)`` in ``[0, C]``.
        margins: ``(N, C+1)`` added to the logits (``None``: 0, plain BCE).
        keep: ``(N, C+1)`` bool, the weights ``w`` (``None``: all 1).

    Returns ``(C+1,)`` float64 tensors, all ``>= 0``:
        ``pull_own``: ``sum_i w_ij (1 - sigmoid(z_ij + m_ij))`` over rows labelled ``j``
        (the push up from the class's own rows);
        ``push_background``: ``sum_i w_ij sigmoid(z_ij + m_ij)`` over background rows
        (label ``C``) for ``j < C`` (0 for ``j = C``);
        ``push_positive``: the same over positive rows with a label other than ``j``.
    ``push_background + push_positive - pull_own`` is the summed gradient of column ``j``.
    """
    if logits.dim() != 2 or labels.shape != logits.shape[:1]:
        raise ValueError(f"logits must be (N, C+1) and labels (N,), got {tuple(logits.shape)} and "
                         f"{tuple(labels.shape)}")
    n, width = logits.shape
    c = width - 1
    z = logits.detach().double()
    if margins is not None:
        z = z + margins.double()
    weight = torch.ones_like(z) if keep is None else keep.to(z.dtype)
    own = torch.nn.functional.one_hot(labels, width).bool() if n else torch.zeros(0, width, dtype=torch.bool)
    prob = torch.sigmoid(z) * weight
    background_row = (labels == c)[:, None]
    push = torch.where(own, torch.zeros_like(prob), prob)
    return {
        "pull_own": torch.where(own, (1.0 - torch.sigmoid(z)) * weight, torch.zeros_like(prob)).sum(dim=0),
        "push_background": torch.where(background_row, push, torch.zeros_like(push)).sum(dim=0),
        "push_positive": torch.where(background_row, torch.zeros_like(push), push).sum(dim=0),
    }


def dropped_negative_share(keep: torch.Tensor, labels: torch.Tensor, frequency: Sequence[str]) -> dict[str, float]:
    """What the auto-adjusted weights ``keep (N, C+1)`` switch off, for ``labels (N,)`` in
    ``[0, C]``: per bin (``r``, ``c``, ``f``), the mean over that bin's positive rows of
    the share of their ``C - 1`` negative foreground channels dropped (NaN for a bin
    without rows); ``all_negatives``: the share of every negative (row, channel) term of
    the batch that is dropped (background rows and the background channel included)."""
    bins = bin_index(frequency)
    c = len(frequency)
    if keep.shape != (labels.numel(), c + 1):
        raise ValueError(f"keep must be ({labels.numel()}, {c + 1}), got {tuple(keep.shape)}")
    out: dict[str, float] = {}
    pos = labels < c
    dropped_fg = (~keep[:, :c]).sum(dim=1).double()  # the true class is always kept
    for b, name in enumerate(BINS):
        rows = pos & (bins[labels.clamp(max=c - 1)] == b)
        out[name] = _mean(dropped_fg[rows] / max(c - 1, 1)) if c > 1 else float("nan")
    negatives = labels.numel() * c  # one positive channel per row
    out["all_negatives"] = float((~keep).sum()) / negatives if negatives else float("nan")
    return out


def classifier_change(before: nn.Linear, after: nn.Linear, frequency: Sequence[str]) -> list[dict[str, Any]]:
    """How far a stage moved each class's row of the classification layer (``weight (C+1, D)``,
    ``bias (C+1,)``, background last), per bin: ``weight_norm`` (mean over the bin's classes
    of ``||w_after - w_before||``), ``relative`` (the same divided by ``||w_before||``) and
    ``bias`` (mean signed change of the bias)."""
    c = len(frequency)
    if before.weight.shape != after.weight.shape or before.weight.shape[0] != c + 1:
        raise ValueError(f"both layers must have {c + 1} outputs of one width, got {tuple(before.weight.shape)} "
                         f"and {tuple(after.weight.shape)}")
    bins = bin_index(frequency)
    w0, w1 = before.weight.detach().double()[:c], after.weight.detach().double()[:c]
    b0, b1 = before.bias.detach().double()[:c], after.bias.detach().double()[:c]
    moved = (w1 - w0).norm(dim=1)
    relative = moved / w0.norm(dim=1).clamp(min=1e-12)
    return [{"bin": name, "weight_norm": _mean(moved[bins == b]), "relative": _mean(relative[bins == b]),
             "bias": _mean((b1 - b0)[bins == b])} for b, name in enumerate(BINS)]


# -- what a step classifies ----------------------------------------------------------------

def label_counts(labels: torch.Tensor, frequency: Sequence[str]) -> dict[str, int]:
    """Rows of a classified batch ``labels (N,)`` in ``[0, C]``: ``rows``, ``background``,
    ``positive`` and the positives of each bin (``r``, ``c``, ``f``)."""
    bins = bin_index(frequency)
    c = len(frequency)
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) > c):
        raise ValueError(f"labels must be in [0, {c}], got [{int(labels.min())}, {int(labels.max())}]")
    pos = labels[labels < c]
    per_bin = torch.bincount(bins[pos], minlength=len(BINS))
    return {"rows": int(labels.numel()), "background": int((labels == c).sum()), "positive": int(pos.numel()),
            **{name: int(per_bin[b]) for b, name in enumerate(BINS)}}


def expected_hallucinated_counts(draw_probabilities: torch.Tensor, frequency: Sequence[str], *,
                                 rows_per_step: int) -> dict[str, float]:
    """Expected hallucinated rows per step in each bin: ``rows_per_step`` times the summed
    probability (``(C,)``, FHM's :meth:`draw_probabilities`) of the bin's classes. All zero
    when the probabilities are (FHM then draws nothing)."""
    bins = bin_index(frequency)
    if draw_probabilities.shape != (len(frequency),):
        raise ValueError(f"draw_probabilities must be ({len(frequency)},), got {tuple(draw_probabilities.shape)}")
    if rows_per_step < 0:
        raise ValueError(f"rows_per_step must be >= 0, got {rows_per_step}")
    probs = draw_probabilities.double()
    return {name: rows_per_step * float(probs[bins == b].sum()) for b, name in enumerate(BINS)}


# -- test time ------------------------------------------------------------------------------

def true_class_rank(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``(G,)`` int64: 1 + the number of classes scoring strictly above the true class, for
    ``scores (G, C)`` and ``labels (G,)`` in ``[0, C)`` (ties count in the truth's favour)."""
    if scores.dim() != 2 or labels.shape != scores.shape[:1]:
        raise ValueError(f"scores must be (G, C) and labels (G,), got {tuple(scores.shape)} and {tuple(labels.shape)}")
    if labels.numel() == 0:
        return torch.zeros(0, dtype=torch.long)
    truth = scores.gather(1, labels[:, None])
    return 1 + (scores > truth).sum(dim=1)


def truth_detection_rank(gt_boxes: torch.Tensor, gt_labels: torch.Tensor, det_boxes: torch.Tensor,
                         det_scores: torch.Tensor, det_labels: torch.Tensor, *,
                         iou_threshold: float = 0.5) -> torch.Tensor:
    """Where the best detection of each ground truth stands in its image's list.

    Args: ``gt_boxes (G, 4)``, ``det_boxes (D, 4)`` xyxy in the same coordinates;
    ``gt_labels (G,)``, ``det_labels (D,)`` in one label space; ``det_scores (D,)``.

    Returns ``(G,)`` int64: for the best-scored detection with the ground truth's label and
    IoU ``>= iou_threshold``, 1 + the number of the image's detections scoring strictly
    above it (any class); 0 when there is no such detection. A per-image cap of ``K``
    keeps the ground truth's detection when its rank is in ``1..K``.
    """
    if not 0.0 < iou_threshold <= 1.0:
        raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
    num_gt = gt_labels.numel()
    if num_gt == 0 or det_scores.numel() == 0:
        return torch.zeros(num_gt, dtype=torch.long)
    match = (box_iou(gt_boxes.double(), det_boxes.double()) >= iou_threshold) & (gt_labels[:, None] == det_labels[None])
    ranked = torch.where(match, det_scores.double()[None], torch.full(match.shape, float("-inf"), dtype=torch.float64))
    best = ranked.max(dim=1).values
    rank = 1 + (det_scores.double()[None] > best[:, None]).sum(dim=1)
    return torch.where(match.any(dim=1), rank, torch.zeros_like(rank))


def cap_outcomes(ranks: torch.Tensor, *, cap: int) -> dict[str, float]:
    """Shares of ``ranks (G,)`` (:func:`truth_detection_rank`) that a per-image cap of
    ``cap`` keeps (rank ``1..cap``), cuts (rank ``> cap``) or that had no detection (0);
    NaN for no ground truth."""
    if cap < 1:
        raise ValueError(f"cap must be >= 1, got {cap}")
    total = ranks.numel()
    if total == 0:
        return {"kept": float("nan"), "cut": float("nan"), "missed": float("nan")}
    return {"kept": float(((ranks >= 1) & (ranks <= cap)).sum()) / total, "cut": float((ranks > cap).sum()) / total,
            "missed": float((ranks == 0).sum()) / total}


# -- collectors that run a detector ----------------------------------------------------------

def _frozen_norms(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def sample_training_rois(model: nn.Module, batches: Iterable[tuple[list, list]], *,
                         num_steps: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The rows a classifier-stage step classifies, for the first ``num_steps`` batches.

    ``model`` is put in training mode with every BatchNorm in eval mode (the classifier
    stage freezes them), then per batch of ``(images, targets)`` (torchvision labels
    ``1..C``): the transform, backbone, RPN proposals of training mode, the RoI sampler
    (``roi_heads.select_training_samples``, which adds the ground-truth boxes) and the box
    head. Returns per step ``(embeddings (N, D) float32, labels (N,))`` with loss labels
    (``C`` = background); the classification layer is left to the caller, so one sampled
    set serves every classifier trained on the same frozen representation.
    """
    if num_steps < 0:
        raise ValueError(f"num_steps must be >= 0, got {num_steps}")
    model.train()
    for module in _frozen_norms(model):
        module.eval()
    heads = model.roi_heads
    out = []
    try:
        for step, (images, targets) in enumerate(batches):
            if step >= num_steps:
                break
            targets = [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets]
            image_list, targets = model.transform(images, targets)
            features = model.backbone(image_list.tensors)
            proposals, _ = model.rpn(image_list, features, targets)
            proposals, _, labels, _ = heads.select_training_samples(proposals, targets)
            embeddings = heads.box_head(heads.box_roi_pool(features, proposals, image_list.image_sizes))
            out.append((embeddings.float().cpu(), to_loss_labels(torch.cat(labels), heads.num_classes).cpu()))
    finally:
        model.eval()
    return out


@torch.no_grad()
def val_truth_ranks(model: nn.Module, batches: Iterable[tuple[list, list]], *, max_detections: int = 300,
                    score_thresh: float = 1e-4, iou_threshold: float = 0.5) -> dict[str, torch.Tensor]:
    """Test-time ranks of every ground-truth box of ``batches`` (``(images, targets)``,
    labels ``1..C``), with ``model`` in eval mode keeping up to ``max_detections`` per image
    above ``score_thresh``.

    Returns ``labels (G,)`` (``0..C-1``), ``class_rank (G,)``: :func:`true_class_rank` of the
    classifier's scores (``loss.scores``) on the ground-truth box itself, ``truth_score
    (G,)``: the true class's score there, and ``detection_rank (G,)``:
    :func:`truth_detection_rank` among the image's detections.
    """
    model.eval()
    heads = model.roi_heads
    saved = heads.detections_per_img, heads.score_thresh
    heads.detections_per_img, heads.score_thresh = int(max_detections), float(score_thresh)
    labels_out, class_rank, truth_score, det_rank = [], [], [], []
    try:
        for images, targets in batches:
            targets = [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets]
            image_list, targets = model.transform(images, targets)
            features = model.backbone(image_list.tensors)
            proposals, _ = model.rpn(image_list, features)
            detections, _ = heads(features, proposals, image_list.image_sizes)
            gt_boxes = [t["boxes"] for t in targets]
            logits, _ = heads.box_predictor(heads.box_head(heads.box_roi_pool(features, gt_boxes,
                                                                               image_list.image_sizes)))
            scores = heads.classification_loss.scores(logits).cpu()
            labels = torch.cat([t["labels"] for t in targets]).cpu() - 1
            labels_out.append(labels)
            class_rank.append(true_class_rank(scores, labels))
            truth_score.append(scores.gather(1, labels[:, None]).squeeze(1).double())
            for target, det in zip(targets, detections):
                det_rank.append(truth_detection_rank(target["boxes"].cpu(), target["labels"].cpu(), det["boxes"].cpu(),
                                                     det["scores"].cpu(), det["labels"].cpu(),
                                                     iou_threshold=iou_threshold))
    finally:
        heads.detections_per_img, heads.score_thresh = saved

    def cat(parts: list[torch.Tensor], dtype: torch.dtype) -> torch.Tensor:
        return torch.cat(parts) if parts else torch.zeros(0, dtype=dtype)

    return {"labels": cat(labels_out, torch.long), "class_rank": cat(class_rank, torch.long),
            "truth_score": cat(truth_score, torch.float64), "detection_rank": cat(det_rank, torch.long)}
