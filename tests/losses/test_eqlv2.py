"""EQLv2 against a slow, element-by-element reference (docs/method.md section 7).

The two-process test (gradient statistics summed over processes) is in
``tests/losses/test_statistics_distributed.py``.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from bacl.losses import LossArgumentError, build_loss
from bacl.losses.eqlv2 import EQLv2Loss

C = 5


def reference_step(stats, logits, labels, *, gamma, mu, alpha):
    """One call written the obvious way; ``stats = [pos_grad, neg_grad, started]`` (lists),
    updated in place after the loss as the official code does. Returns the loss."""
    pos_grad, neg_grad, started = stats
    n, c1 = logits.shape
    c = c1 - 1
    pos_w, neg_w = [1.0] * c1, [1.0] * c1
    if started[0]:
        for j in range(c):
            g = pos_grad[j] / (neg_grad[j] + 1e-10)
            neg_w[j] = 1.0 / (1.0 + math.exp(-gamma * (g - mu)))
            pos_w[j] = 1.0 + alpha * (1.0 - neg_w[j])
    total = logits.new_zeros(())
    for i in range(n):
        y = int(labels[i])
        for j in range(c1):
            t = 1.0 if j == y else 0.0
            w = pos_w[j] if t else neg_w[j]
            z = logits[i, j]
            total = total + w * (F.softplus(z) - z * t)
            if j < c:
                p = 1.0 / (1.0 + math.exp(-float(z.detach())))
                if t:
                    pos_grad[j] += w * (1.0 - p)
                else:
                    neg_grad[j] += w * p
    if n:
        started[0] = True
    return total / n if n else total


def make_batch(gen, n, *, pos_frac, scale=3.0):
    logits = (torch.randn(n, C + 1, generator=gen, dtype=torch.float64) * scale).requires_grad_()
    labels = torch.randint(0, C, (n,), generator=gen)
    labels[torch.rand(n, generator=gen) >= pos_frac] = C
    return logits, labels


@pytest.mark.parametrize("hyper", [{"gamma": 12.0, "mu": 0.8, "alpha": 4.0}, {"gamma": 3.0, "mu": 0.1, "alpha": 1.5}])
def test_matches_reference_over_steps(hyper):
    gen = torch.Generator().manual_seed(0)
    loss_fn = EQLv2Loss(num_classes=C, **hyper)
    stats = [[0.0] * C, [0.0] * C, [False]]
    batches = [
        make_batch(gen, 20, pos_frac=0.5),
        make_batch(gen, 0, pos_frac=0.5),  # empty
        make_batch(gen, 14, pos_frac=0.0),  # no positives
        make_batch(gen, 18, pos_frac=1.0),
        make_batch(gen, 24, pos_frac=0.4, scale=1.0),
        make_batch(gen, 24, pos_frac=0.4),
    ]
    for logits, labels in batches:
        ours = loss_fn(logits, labels)["loss_cls"]
        ref = reference_step(stats, logits, labels, **hyper)
        if logits.shape[0]:
            (g_ours,) = torch.autograd.grad(ours, logits)
            (g_ref,) = torch.autograd.grad(ref, logits)
            torch.testing.assert_close(g_ours, g_ref, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(ours, ref, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(loss_fn.pos_grad, torch.tensor(stats[0], dtype=torch.float64), rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(loss_fn.neg_grad, torch.tensor(stats[1], dtype=torch.float64), rtol=1e-10, atol=1e-12)
    pos_w, neg_w = loss_fn.channel_weights()
    assert (neg_w[:C] < 1).all() and (pos_w[:C] > 1).all()  # the reweighting is active
    assert pos_w[C] == 1 and neg_w[C] == 1


def test_first_step_is_plain_bce_and_empty_batch_keeps_stats():
    loss_fn = EQLv2Loss(num_classes=C)
    logits = torch.zeros(0, C + 1, requires_grad=True)
    loss = loss_fn(logits, torch.zeros(0, dtype=torch.long))["loss_cls"]
    loss.backward()
    assert loss.item() == 0.0 and logits.grad.shape == (0, C + 1)
    assert not loss_fn.pos_grad.any() and not loss_fn.neg_grad.any()
    gen = torch.Generator().manual_seed(2)
    logits, labels = make_batch(gen, 12, pos_frac=0.5)
    bce = F.binary_cross_entropy_with_logits(logits, F.one_hot(labels, C + 1).double(), reduction="sum") / 12
    torch.testing.assert_close(loss_fn(logits, labels)["loss_cls"], bce)


def test_statistics_ignore_the_loss_scale_and_half_precision():
    """AMP scales the loss (so the gradients) and feeds half-precision logits: the statistics
    come from the logits, so they equal an unscaled float32 run's."""
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(16, C + 1, generator=gen).half()
    labels = torch.randint(0, C + 1, (16,), generator=gen)
    scaled, plain = EQLv2Loss(num_classes=C), EQLv2Loss(num_classes=C)
    for _ in range(2):
        z = logits.clone().requires_grad_()
        loss = scaled(z, labels)["loss_cls"]
        assert loss.dtype == torch.float32
        (loss * 65536.0).backward()
        plain(logits.float(), labels)
    assert torch.equal(scaled.pos_grad, plain.pos_grad) and torch.equal(scaled.neg_grad, plain.neg_grad)


def test_state_dict_and_registry():
    loss_fn = build_loss("eqlv2", num_classes=C, gamma=10.0)
    assert isinstance(loss_fn, EQLv2Loss) and loss_fn.gamma == 10.0 and loss_fn.mu == 0.8 and loss_fn.alpha == 4.0
    assert set(loss_fn.state_dict()) == {"pos_grad", "neg_grad"}
    assert loss_fn.uses_standard_classifier


@pytest.mark.parametrize("kwargs, match", [({"gamma": 0.0}, "gamma"), ({"mu": -1.0}, "mu"), ({"alpha": -0.5}, "alpha")])
def test_rejects_bad_arguments(kwargs, match):
    with pytest.raises(LossArgumentError, match=match):
        EQLv2Loss(num_classes=C, **kwargs)
