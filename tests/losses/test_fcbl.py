"""FCBL against a slow, element-by-element reference (docs/method.md section 2).

The two-process test (statistics summed over processes) lives in
``tests/engine/test_distributed.py`` so that one spawn covers FCBL and FHM.
"""

from __future__ import annotations

import math

import pytest
import torch

from bacl.losses.fcbl import FCBL
from bacl.losses.registry import LOSSES, build_loss


def reference_step(stats, logits, labels, *, alpha, prob_thr, reweight):
    """One FCBL call written the obvious way. ``stats`` = [cm_num (list of lists), num_gt (list)],
    updated in place after the loss, as the reference does. Returns the loss (autograd scalar)."""
    cm_num, num_gt = stats
    n, c1 = logits.shape
    c = c1 - 1

    def cm(a, b):
        return cm_num[a][b] / max(num_gt[a], 1.0)

    total = logits.new_zeros(())
    for i in range(n):
        y = int(labels[i])
        z = logits[i]
        zd = [float(v) for v in z.detach()]
        sig = [1.0 / (1.0 + math.exp(-v)) for v in zd]
        fg = [sig[j] * (1.0 - sig[c]) for j in range(c)]
        for j in range(c1):
            margin, weight = 0.0, 1.0
            if y < c and j < c:
                margin = alpha * math.log(max(cm(y, j), 1e-3) / max(cm(j, y), 1e-3))
                if reweight:
                    weight = 1.0 if (fg[j] >= fg[y] or fg[j] >= prob_thr) else 0.0
            target = 1.0 if j == y else 0.0
            x = z[j] + margin
            total = total + weight * (torch.nn.functional.softplus(x) - x * target)
    loss = total / n if n else total
    for i in range(n):
        y = int(labels[i])
        if y == c:
            continue
        zd = [float(v) for v in logits[i, :c].detach()]
        top = max(zd)
        e = [math.exp(v - top) for v in zd]
        for k in range(c):
            cm_num[y][k] += e[k] / sum(e)
        num_gt[y] += 1.0
    return loss


def make_batch(gen, n, c, *, pos_frac=0.5, scale=3.0):
    logits = (torch.randn(n, c + 1, generator=gen, dtype=torch.float64) * scale).requires_grad_()
    labels = torch.randint(0, c, (n,), generator=gen)
    labels[torch.rand(n, generator=gen) >= pos_frac] = c
    return logits, labels


def run_sequence(reweight, *, c=6, alpha=0.85, prob_thr=0.7):
    gen = torch.Generator().manual_seed(7)
    loss_fn = FCBL(num_classes=c, alpha=alpha, prob_thr=prob_thr, reweight=reweight)
    stats = [[[0.0] * c for _ in range(c)], [0.0] * c]
    batches = [
        make_batch(gen, 24, c),
        make_batch(gen, 16, c, pos_frac=0.0),  # no positives
        make_batch(gen, 20, c, pos_frac=1.0),  # only positives
        make_batch(gen, 0, c),  # empty
        make_batch(gen, 30, c, pos_frac=0.7),
        make_batch(gen, 30, c, pos_frac=0.4, scale=6.0),
    ]
    for logits, labels in batches:
        ours = loss_fn(logits, labels)["loss_cls"]
        (g_ours,) = torch.autograd.grad(ours, logits) if logits.shape[0] else (torch.zeros_like(logits),)
        ref = reference_step(stats, logits, labels, alpha=alpha, prob_thr=prob_thr, reweight=reweight)
        (g_ref,) = torch.autograd.grad(ref, logits, allow_unused=True) if logits.shape[0] else (None,)
        if g_ref is None:
            g_ref = torch.zeros_like(logits)
        torch.testing.assert_close(ours, ref, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(g_ours, g_ref, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(loss_fn.cm_num, torch.tensor(stats[0], dtype=torch.float64), rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(loss_fn.num_gt, torch.tensor(stats[1], dtype=torch.float64))
    return loss_fn


@pytest.mark.parametrize("reweight", [False, True])
def test_matches_reference_over_steps(reweight):
    loss_fn = run_sequence(reweight)
    assert loss_fn.num_gt.sum() > 0
    # the statistics evolved, so margins were exercised: some off-diagonal margin is non-zero
    assert loss_fn.margins(torch.arange(6)).abs().max() > 0.1


def test_reweight_drops_some_channels():
    c = 5
    loss_fn = FCBL(num_classes=c, reweight=True)
    logits = torch.tensor([[4.0, -3.0, 5.0, -6.0, -2.0, -4.0]])
    w = loss_fn.weights(logits, torch.tensor([0]))
    # ground truth kept, a channel above it kept, background kept, the easy ones dropped
    assert w.tolist() == [[1.0, 0.0, 1.0, 0.0, 0.0, 1.0]]


def test_first_step_is_plain_bce_and_stats_use_raw_logits():
    c = 4
    gen = torch.Generator().manual_seed(0)
    logits, labels = make_batch(gen, 12, c)
    loss = FCBL(num_classes=c, alpha=2.0)(logits, labels)["loss_cls"]
    target = torch.nn.functional.one_hot(labels, c + 1).double()
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="sum") / 12
    torch.testing.assert_close(loss, bce)


def test_empty_batch_keeps_graph_and_stats():
    loss_fn = FCBL(num_classes=3)
    logits = torch.zeros(0, 4, requires_grad=True)
    loss = loss_fn(logits, torch.zeros(0, dtype=torch.long))["loss_cls"]
    loss.backward()
    assert loss.item() == 0.0 and logits.grad.shape == (0, 4)
    assert loss_fn.num_gt.sum() == 0 and loss_fn.cm_num.sum() == 0


def test_cm_and_accuracy_properties():
    loss_fn = FCBL(num_classes=3)
    loss_fn.cm_num.copy_(torch.tensor([[2.0, 1.0, 1.0], [0.0, 0.0, 0.0], [0.5, 0.5, 1.0]], dtype=torch.float64))
    loss_fn.num_gt.copy_(torch.tensor([4.0, 0.0, 2.0], dtype=torch.float64))
    torch.testing.assert_close(loss_fn.cm[0], torch.tensor([0.5, 0.25, 0.25], dtype=torch.float64))
    torch.testing.assert_close(loss_fn.class_accuracy, torch.tensor([0.5, 0.0, 0.5], dtype=torch.float64))
    # m[y, j] = alpha * log(max(cm[y, j], 1e-3) / max(cm[j, y], 1e-3)); m[y, y] = 0
    m = loss_fn.margins(torch.tensor([0, 1]))
    assert m.shape == (2, 4) and m[0, 0] == 0 and m[1, 1] == 0 and (m[:, 3] == 0).all()
    torch.testing.assert_close(m[0, 1], torch.tensor(0.85 * math.log(0.25 / 1e-3), dtype=torch.float64))
    torch.testing.assert_close(m[1, 2], torch.tensor(0.85 * math.log(1e-3 / 0.25), dtype=torch.float64))


def test_state_dict_carries_statistics():
    a = run_sequence(False, c=6)
    b = FCBL(num_classes=6)
    b.load_state_dict(a.state_dict())
    assert set(a.state_dict()) == {"cm_num", "num_gt"}
    torch.testing.assert_close(b.cm, a.cm)


def test_float32_and_scores():
    loss_fn = FCBL(num_classes=5)
    logits = torch.randn(8, 6, requires_grad=True)
    labels = torch.tensor([0, 1, 5, 5, 2, 3, 4, 5])
    for _ in range(2):
        loss = loss_fn(logits, labels)["loss_cls"]
        assert loss.dtype == torch.float32 and torch.isfinite(loss)
        loss.backward()
    s = loss_fn.scores(logits.detach())
    assert s.shape == (8, 5)


@pytest.mark.parametrize(
    "kwargs, name",
    [({"alpha": -0.1}, "alpha"), ({"prob_thr": 0.0}, "prob_thr"), ({"prob_thr": 1.5}, "prob_thr"), ({"num_classes": 0}, "num_classes")],
)
def test_rejects_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        FCBL(**{"num_classes": 3, **kwargs})


def test_registered():
    assert LOSSES["fcbl"] is FCBL
    loss = build_loss("fcbl", num_classes=4, alpha=0.5, prob_thr=1.0)
    assert isinstance(loss, FCBL) and loss.alpha == 0.5 and not loss.reweight
