"""Logit-adjusted softmax CE (balanced softmax at tau 1) against a slow reference."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from bacl.losses import LossArgumentError, build_loss
from bacl.losses.logit_adjusted import LogitAdjustedLoss

C = 5
COUNTS = [3000, 200, 15, 1, 0]


def reference(logits, labels, *, counts, tau, background_prior):
    """mean_i -log softmax(z_i + tau * log(pi))_{y_i}, pi over C + 1 labels, counts floored at 1."""
    n, c1 = logits.shape
    floored = [max(v, 1) for v in counts]
    total_count = sum(floored)
    log_pi = [math.log((1.0 - background_prior) * v / total_count) for v in floored] + [math.log(background_prior)]
    total = logits.new_zeros(())
    for i in range(n):
        adjusted = torch.stack([logits[i, j] + tau * log_pi[j] for j in range(c1)])
        total = total + torch.logsumexp(adjusted, 0) - adjusted[int(labels[i])]
    return total / n


@pytest.mark.parametrize("tau, background_prior", [(1.0, 0.75), (0.5, 0.3), (2.0, 0.9)])
def test_matches_reference_over_steps(tau, background_prior):
    gen = torch.Generator().manual_seed(0)
    loss_fn = LogitAdjustedLoss(num_classes=C, instance_counts=torch.tensor(COUNTS), tau=tau,
                                background_prior=background_prior)
    for n, pos_frac in [(20, 0.5), (10, 0.0), (16, 1.0)]:  # the second has no positives
        logits = (torch.randn(n, C + 1, generator=gen, dtype=torch.float64) * 3).requires_grad_()
        labels = torch.randint(0, C, (n,), generator=gen)
        labels[torch.rand(n, generator=gen) >= pos_frac] = C
        ours = loss_fn(logits, labels)["loss_cls"]
        ref = reference(logits, labels, counts=COUNTS, tau=tau, background_prior=background_prior)
        torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(torch.autograd.grad(ours, logits)[0], torch.autograd.grad(ref, logits)[0],
                                   rtol=1e-12, atol=1e-12)


def test_prior_sums_to_one_and_tau_zero_is_softmax_ce():
    loss_fn = build_loss("logit_adjusted", num_classes=C, statistics={"instance_counts": torch.tensor(COUNTS)})
    assert loss_fn.tau == 1.0 and loss_fn.background_prior == 0.75
    prior = loss_fn.log_prior.exp()
    assert prior.sum().item() == pytest.approx(1.0)
    assert prior[-1].item() == pytest.approx(0.75)
    assert prior[3] == prior[4]  # a class never annotated gets the prior of a class annotated once
    logits = torch.randn(8, C + 1, dtype=torch.float64)
    labels = torch.tensor([0, 1, 2, 3, 4, 5, 5, 0])
    plain = LogitAdjustedLoss(num_classes=C, instance_counts=torch.tensor(COUNTS), tau=0.0)(logits, labels)
    torch.testing.assert_close(plain["loss_cls"], F.cross_entropy(logits, labels))


def test_scores_are_the_plain_softmax():
    loss_fn = LogitAdjustedLoss(num_classes=C, instance_counts=torch.tensor(COUNTS))
    z = torch.randn(3, C + 1)
    torch.testing.assert_close(loss_fn.scores(z), torch.softmax(z, 1)[:, :C])
    assert not loss_fn.use_sigmoid and loss_fn.uses_standard_classifier


@pytest.mark.parametrize(
    "kwargs, match", [({"tau": -1.0}, "tau"), ({"background_prior": 0.0}, "background_prior"),
                      ({"background_prior": 1.0}, "background_prior")]
)
def test_rejects_bad_arguments(kwargs, match):
    with pytest.raises(LossArgumentError, match=match):
        LogitAdjustedLoss(num_classes=C, instance_counts=torch.tensor(COUNTS), **kwargs)
