"""Federated loss: the class subset, and the loss over it against a slow reference."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from bacl.losses import LossArgumentError, build_loss
from bacl.losses.federated import FederatedLoss

C = 8
IMAGE_COUNTS = torch.tensor([400, 100, 25, 9, 4, 1, 0, 64])


def reference(logits, labels, kept):
    """sum over rows and kept foreground classes of BCE(z_ij, [y_i == j]) / N; background
    logit unused."""
    n = logits.shape[0]
    c = logits.shape[1] - 1
    total = logits.new_zeros(())
    for i in range(n):
        for j in sorted(set(kept)):
            if j >= c:
                continue
            t = 1.0 if int(labels[i]) == j else 0.0
            z = logits[i, j]
            total = total + F.softplus(z) - z * t
    return total / n


def make_batch(gen, n, *, pos_frac, classes=None):
    logits = (torch.randn(n, C + 1, generator=gen, dtype=torch.float64) * 3).requires_grad_()
    pool = torch.arange(C) if classes is None else torch.tensor(classes)
    labels = pool[torch.randint(0, pool.numel(), (n,), generator=gen)]
    labels[torch.rand(n, generator=gen) >= pos_frac] = C
    return logits, labels


def test_without_sampling_matches_reference_over_steps():
    """With at most as many kept classes as the batch has labels, the subset is the labels."""
    gen = torch.Generator().manual_seed(0)
    loss_fn = FederatedLoss(num_classes=C, image_counts=IMAGE_COUNTS, num_classes_kept=1)
    for n, pos_frac in [(20, 0.5), (10, 0.0), (16, 1.0)]:  # the second has no positives: loss 0
        logits, labels = make_batch(gen, n, pos_frac=pos_frac)
        ours = loss_fn(logits, labels)["loss_cls"]
        ref = reference(logits, labels, labels.unique().tolist())
        torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
        (g,) = torch.autograd.grad(ours, logits)
        (g_ref,) = torch.autograd.grad(ref, logits, allow_unused=True) if pos_frac else (None,)
        torch.testing.assert_close(g, torch.zeros_like(g) if g_ref is None else g_ref, rtol=1e-12, atol=1e-12)
        assert (g[:, C] == 0).all()  # the background logit never trains


def test_with_sampling_matches_reference_on_the_drawn_subset():
    gen = torch.Generator().manual_seed(1)
    loss_fn = FederatedLoss(num_classes=C, image_counts=IMAGE_COUNTS, num_classes_kept=5, seed=3)
    replay = FederatedLoss(num_classes=C, image_counts=IMAGE_COUNTS, num_classes_kept=5, seed=3)
    for n, pos_frac in [(12, 0.5), (10, 0.0), (9, 1.0)]:
        logits, labels = make_batch(gen, n, pos_frac=pos_frac, classes=[0, 2])
        kept = replay.sample_classes(labels).tolist()
        present = set(labels.tolist())
        assert present <= set(kept) and len(kept) == len(set(kept)) == 5
        assert 6 not in kept  # never-seen class: weight 0
        torch.testing.assert_close(loss_fn(logits, labels)["loss_cls"], reference(logits, labels, kept),
                                   rtol=1e-12, atol=1e-12)


def test_draws_follow_sqrt_image_counts():
    """One negative drawn per call: its frequency is proportional to image_count ** 0.5."""
    loss_fn = FederatedLoss(num_classes=C, image_counts=IMAGE_COUNTS, num_classes_kept=2, seed=0)
    labels = torch.tensor([C, C])  # background only: the subset is background + one draw
    draws = torch.stack([loss_fn.sample_classes(labels)[-1] for _ in range(6000)])
    freq = torch.bincount(draws, minlength=C).double() / draws.numel()
    expected = IMAGE_COUNTS.double().sqrt()
    expected = expected / expected.sum()
    assert freq[6] == 0
    torch.testing.assert_close(freq, expected, atol=0.02, rtol=0.0)


def test_subset_size_when_few_classes_can_be_drawn():
    loss_fn = FederatedLoss(num_classes=C, image_counts=IMAGE_COUNTS)  # 50 kept > C
    kept = loss_fn.sample_classes(torch.tensor([0, 0, C]))
    assert sorted(kept.tolist()) == [0, 1, 2, 3, 4, 5, 7, C]  # every class with an image, plus background
    only_unseen = FederatedLoss(num_classes=2, image_counts=torch.tensor([5, 0]))
    assert sorted(only_unseen.sample_classes(torch.tensor([0])).tolist()) == [0]


def test_defaults_scores_and_state():
    loss_fn = build_loss("federated", num_classes=C, statistics={"image_counts": IMAGE_COUNTS, "num_images": 7})
    assert loss_fn.freq_weight_power == 0.5 and loss_fn.num_classes_kept == 50
    torch.testing.assert_close(loss_fn.class_weight, IMAGE_COUNTS.double().sqrt())
    z = torch.randn(3, C + 1)
    torch.testing.assert_close(loss_fn.scores(z), torch.sigmoid(z[:, :C]))
    assert set(loss_fn.state_dict()) == {"class_weight", "_extra_state"}
    assert loss_fn.uses_standard_classifier


@pytest.mark.parametrize("kwargs, match", [({"freq_weight_power": -0.5}, "freq_weight_power"),
                                           ({"num_classes_kept": 0}, "num_classes_kept")])
def test_rejects_bad_arguments(kwargs, match):
    with pytest.raises(LossArgumentError, match=match):
        FederatedLoss(num_classes=C, image_counts=IMAGE_COUNTS, **kwargs)
