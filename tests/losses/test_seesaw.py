"""Seesaw loss against a slow, element-by-element reference (docs/method.md section 7).

The two-process test (label counts summed over processes) is in
``tests/losses/test_statistics_distributed.py``.
"""

from __future__ import annotations

import math

import pytest
import torch

from bacl.losses import LossArgumentError, build_loss
from bacl.losses.normed_linear import NormedLinear
from bacl.losses.seesaw import SeesawLoss

C = 5


def reference_step(cum, logits, labels, *, p, q, eps):
    """One call: counts first (``cum``, a list of C + 1, updated in place), then
    sum over positives of CE(z_j + log(M_ij C_ij)) / N and sum of objectness CE / N."""
    n = logits.shape[0]
    c = len(cum) - 1
    for y in labels.tolist():
        cum[y] += 1.0
    classes = logits.new_zeros(())
    objectness = logits.new_zeros(())
    for r in range(n):
        y = int(labels[r])
        fg_bg = logits[r, c:]
        objectness = objectness + torch.logsumexp(fg_bg, 0) - fg_bg[1 if y == c else 0]
        if y == c:
            continue
        z = logits[r, :c]
        zd = [float(v) for v in z.detach()]
        top = max(zd)
        e = [math.exp(v - top) for v in zd]
        s = [v / sum(e) for v in e]
        adjusted = []
        for j in range(c):
            if j == y:
                adjusted.append(z[j])
                continue
            m = 1.0
            ratio = max(cum[j], 1.0) / max(cum[y], 1.0)
            if p > 0 and ratio < 1.0:
                m = ratio**p
            comp = 1.0
            score_ratio = s[j] / max(s[y], eps)
            if q > 0 and score_ratio > 1.0:
                comp = score_ratio**q
            adjusted.append(z[j] + math.log(m * comp))
        adjusted = torch.stack(adjusted)
        classes = classes + torch.logsumexp(adjusted, 0) - adjusted[y]
    if n == 0:
        return classes, objectness
    return classes / n, objectness / n


def make_batch(gen, n, *, pos_frac, scale=3.0, classes=None):
    logits = (torch.randn(n, C + 2, generator=gen, dtype=torch.float64) * scale).requires_grad_()
    pool = torch.arange(C) if classes is None else torch.tensor(classes)
    labels = pool[torch.randint(0, pool.numel(), (n,), generator=gen)]
    labels[torch.rand(n, generator=gen) >= pos_frac] = C
    return logits, labels


@pytest.mark.parametrize("hyper", [{"p": 0.8, "q": 2.0, "eps": 1e-2}, {"p": 0.0, "q": 1.5, "eps": 0.3}, {"p": 1.2, "q": 0.0, "eps": 1e-2}])
def test_matches_reference_over_steps(hyper):
    gen = torch.Generator().manual_seed(0)
    loss_fn = SeesawLoss(num_classes=C, **hyper)
    cum = [0.0] * (C + 1)
    batches = [
        make_batch(gen, 24, pos_frac=0.6, classes=[0, 0, 0, 1, 2]),  # a skewed start: mitigation bites
        make_batch(gen, 12, pos_frac=0.0),  # no positives
        make_batch(gen, 0, pos_frac=0.5),  # empty
        make_batch(gen, 20, pos_frac=1.0),
        make_batch(gen, 30, pos_frac=0.4, scale=6.0),
    ]
    for logits, labels in batches:
        ours = loss_fn(logits, labels)
        ref_classes, ref_objectness = reference_step(cum, logits, labels, **hyper)
        torch.testing.assert_close(ours["loss_cls_classes"], ref_classes, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(ours["loss_cls_objectness"], ref_objectness, rtol=1e-10, atol=1e-12)
        if logits.shape[0]:
            (g_ours,) = torch.autograd.grad(sum(ours.values()), logits)
            (g_ref,) = torch.autograd.grad(ref_classes + ref_objectness, logits)
            torch.testing.assert_close(g_ours, g_ref, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(loss_fn.cum_samples, torch.tensor(cum, dtype=torch.float64))


def test_factors_by_hand():
    loss_fn = SeesawLoss(num_classes=3, p=1.0, q=1.0)
    loss_fn.cum_samples.copy_(torch.tensor([100.0, 10.0, 0.0, 5.0], dtype=torch.float64))
    z = torch.log(torch.tensor([[0.2, 0.5, 0.3]]))  # scores 0.2, 0.5, 0.3
    log_factors = loss_fn.log_factors(z, torch.tensor([0]))
    # mitigation: (10/100)^1 and (1/100)^1 (a count of 0 counts as 1); compensation: 0.5/0.2, 0.3/0.2
    expected = torch.log(torch.tensor([[1.0, 0.1 * 2.5, 0.01 * 1.5]]))
    torch.testing.assert_close(log_factors, expected)
    # the rarer ground truth is not mitigated against the frequent class
    assert loss_fn.log_factors(z, torch.tensor([1]))[0, 0] == 0


def test_scores_layout_and_classifier():
    loss_fn = build_loss("seesaw", num_classes=C)
    assert loss_fn.num_logits == C + 2 and not loss_fn.use_sigmoid and not loss_fn.uses_standard_classifier
    z = torch.randn(4, C + 2, dtype=torch.float64)
    expected = torch.softmax(z[:, :C], 1) * (torch.exp(z[:, C]) / torch.exp(z[:, C:]).sum(1))[:, None]
    torch.testing.assert_close(loss_fn.scores(z), expected)
    layer = loss_fn.make_classifier(16)
    assert isinstance(layer, NormedLinear) and layer.temperature == 20.0
    assert (layer.in_features, layer.out_features) == (16, C + 2)
    assert SeesawLoss(num_classes=C, normed_classifier=False).make_classifier(16) is None


def test_half_precision_and_state_dict():
    loss_fn = SeesawLoss(num_classes=C)
    z = torch.randn(6, C + 2).half()
    terms = loss_fn(z, torch.tensor([0, 1, 1, C, C, 4]))
    assert all(v.dtype == torch.float32 and torch.isfinite(v) for v in terms.values())
    assert set(loss_fn.state_dict()) == {"cum_samples"}
    assert loss_fn.cum_samples.tolist() == [1, 2, 0, 0, 1, 2]


@pytest.mark.parametrize(
    "kwargs, match",
    [({"p": -0.1}, "p"), ({"q": -1.0}, "q"), ({"eps": 0.0}, "eps"), ({"temperature": 0.0}, "temperature")],
)
def test_rejects_bad_arguments(kwargs, match):
    with pytest.raises(LossArgumentError, match=match):
        SeesawLoss(num_classes=C, **kwargs)
