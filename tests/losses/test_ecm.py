"""ECM loss against a slow reference written from the official formulas (exponentials and
all), on logits small enough for them not to overflow."""

from __future__ import annotations

import math

import pytest
import torch

from bacl.losses import LossArgumentError, build_loss
from bacl.losses.ecm import ECMLoss
from bacl.losses.normed_linear import NormedLinear

C = 5
COUNTS = [800, 90, 12, 1, 0]


def official_terms(counts, fg_bg_ratio):
    """pos_w, neg_w, w per channel (C + 1), counts floored at 1."""
    n = [float(max(v, 1)) for v in counts]
    n.append(sum(n) * fg_bg_ratio)
    total = sum(n)
    pos_w, neg_w, w = [], [], []
    for n_pos in n:
        n_neg = total - n_pos
        pos_w.append(math.log(1.0 / (n_neg**0.25 / (n_pos**0.25 + n_neg**0.25))))
        neg_w.append(math.log(1.0 / (n_pos**0.25 / (n_pos**0.25 + n_neg**0.25))))
        a = n_neg / n_pos
        w.append(a * math.log((1.0 + a) / a))
    return pos_w, neg_w, w


def reference(logits, labels, *, counts, fg_bg_ratio):
    pos_w, neg_w, w = official_terms(counts, fg_bg_ratio)
    n, c1 = logits.shape
    total = logits.new_zeros(())
    for i in range(n):
        for j in range(c1):
            t = 1.0 if j == int(labels[i]) else 0.0
            e_pos = torch.exp(logits[i, j] + pos_w[j])
            e_neg = torch.exp(-logits[i, j] + neg_w[j])
            pred_pos, pred_neg = e_pos / (e_pos + e_neg), e_neg / (e_pos + e_neg)
            total = total - w[j] * (t * torch.log(pred_pos) + (1.0 - t) * torch.log(pred_neg))
    return total / n


@pytest.mark.parametrize("fg_bg_ratio", [6.3313, 1.0])
def test_matches_reference_over_steps(fg_bg_ratio):
    gen = torch.Generator().manual_seed(0)
    loss_fn = ECMLoss(num_classes=C, image_counts=torch.tensor(COUNTS), fg_bg_ratio=fg_bg_ratio)
    for n, pos_frac in [(16, 0.5), (10, 0.0), (12, 1.0)]:  # the second has no positives
        logits = (torch.randn(n, C + 1, generator=gen, dtype=torch.float64) * 4).requires_grad_()
        labels = torch.randint(0, C, (n,), generator=gen)
        labels[torch.rand(n, generator=gen) >= pos_frac] = C
        ours = loss_fn(logits, labels)["loss_cls"]
        ref = reference(logits, labels, counts=COUNTS, fg_bg_ratio=fg_bg_ratio)
        torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(torch.autograd.grad(ours, logits)[0], torch.autograd.grad(ref, logits)[0],
                                   rtol=1e-10, atol=1e-12)


def test_margins_favour_rare_positives_and_stay_finite_for_huge_logits():
    loss_fn = ECMLoss(num_classes=C, image_counts=torch.tensor(COUNTS))
    # margin = log(n_pos^(1/4) / n_neg^(1/4)): the rarer the class, the more negative
    assert (loss_fn.margin[:-2].diff() < 0).all()
    assert loss_fn.margin[3] == loss_fn.margin[4]  # a class with no image counts as one
    assert torch.isfinite(loss_fn.class_weight).all() and (loss_fn.class_weight > 0).all()
    logits = torch.tensor([[300.0, -300.0, 0.0, 80.0, -80.0, 500.0]], requires_grad=True)
    loss = loss_fn(logits, torch.tensor([1]))["loss_cls"]
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()


def test_classifier_and_scores():
    loss_fn = build_loss("ecm", num_classes=C, statistics={"image_counts": torch.tensor(COUNTS)})
    assert loss_fn.num_logits == C + 1 and loss_fn.use_sigmoid and not loss_fn.uses_standard_classifier
    layer = loss_fn.make_classifier(8)
    assert isinstance(layer, NormedLinear) and layer.out_features == C + 1 and layer.temperature == 20.0
    assert ECMLoss(num_classes=C, image_counts=torch.tensor(COUNTS), normed_classifier=False).make_classifier(8) is None
    z = torch.randn(4, C + 1)
    p = torch.sigmoid(z)
    torch.testing.assert_close(loss_fn.scores(z), p[:, :C] * (1 - p[:, C:]))


@pytest.mark.parametrize("kwargs, match", [({"fg_bg_ratio": 0.0}, "fg_bg_ratio"), ({"temperature": -1.0}, "temperature")])
def test_rejects_bad_arguments(kwargs, match):
    with pytest.raises(LossArgumentError, match=match):
        ECMLoss(num_classes=C, image_counts=torch.tensor(COUNTS), **kwargs)
