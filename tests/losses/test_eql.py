"""EQL against a slow, element-by-element reference (docs/method.md section 7)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from bacl.losses import LossArgumentError, build_loss
from bacl.losses.eql import EQLLoss

C = 6
IMAGE_COUNTS = torch.tensor([900, 40, 1, 0, 300, 2])
NUM_IMAGES = 1000


def reference(logits, labels, *, image_counts, num_images, lambda_):
    """sum_ij (1 - E_i T_j (1 - y_ij)) BCE(z_ij, y_ij) / N over C channels, no background channel."""
    n, c = logits.shape
    total = logits.new_zeros(())
    for i in range(n):
        y = int(labels[i])
        e = 1.0 if y < c else 0.0
        for j in range(c):
            t = 1.0 if j == y else 0.0
            tail = 1.0 if int(image_counts[j]) / num_images < lambda_ else 0.0
            w = 1.0 - e * tail * (1.0 - t)
            z = logits[i, j]
            total = total + w * (F.softplus(z) - z * t)
    return total / n


def make_batch(gen, n, *, pos_frac):
    logits = (torch.randn(n, C, generator=gen, dtype=torch.float64) * 3).requires_grad_()
    labels = torch.randint(0, C, (n,), generator=gen)
    labels[torch.rand(n, generator=gen) >= pos_frac] = C
    return logits, labels


@pytest.mark.parametrize("lambda_", [0.00177, 0.05, 0.0])
def test_matches_reference_over_steps(lambda_):
    gen = torch.Generator().manual_seed(0)
    loss_fn = EQLLoss(num_classes=C, image_counts=IMAGE_COUNTS, num_images=NUM_IMAGES, lambda_=lambda_)
    for n, pos_frac in [(20, 0.5), (12, 0.0), (16, 1.0), (25, 0.3)]:  # the second has no positives
        logits, labels = make_batch(gen, n, pos_frac=pos_frac)
        ours = loss_fn(logits, labels)["loss_cls"]
        ref = reference(logits, labels, image_counts=IMAGE_COUNTS, num_images=NUM_IMAGES, lambda_=lambda_)
        (g_ours,) = torch.autograd.grad(ours, logits)
        (g_ref,) = torch.autograd.grad(ref, logits)
        torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(g_ours, g_ref, rtol=1e-12, atol=1e-12)


def test_tail_classes_and_their_dropped_negatives():
    loss_fn = EQLLoss(num_classes=C, image_counts=IMAGE_COUNTS, num_images=NUM_IMAGES)
    # frequency < 0.00177: 1/1000, 0/1000 (never seen) and 2/1000 is not (0.002)
    assert loss_fn.tail.tolist() == [False, False, True, True, False, False]
    logits = torch.zeros(2, C, requires_grad=True)
    loss_fn(logits, torch.tensor([0, C]))["loss_cls"].backward()
    # a foreground row sends no gradient to the tail channels; a background row does
    assert logits.grad[0, 2] == 0 and logits.grad[0, 3] == 0 and logits.grad[0, 1] > 0
    assert (logits.grad[1] > 0).all()


def test_no_tail_is_plain_bce_without_background_channel():
    gen = torch.Generator().manual_seed(1)
    logits, labels = make_batch(gen, 10, pos_frac=0.5)
    loss = EQLLoss(num_classes=C, image_counts=IMAGE_COUNTS, num_images=NUM_IMAGES, lambda_=0.0)(logits, labels)
    target = F.one_hot(labels, C + 1)[:, :C].double()
    torch.testing.assert_close(loss["loss_cls"], F.binary_cross_entropy_with_logits(logits, target, reduction="sum") / 10)


def test_layout_scores_and_half_precision():
    loss_fn = build_loss("eql", num_classes=C, statistics={"image_counts": IMAGE_COUNTS, "num_images": NUM_IMAGES})
    assert loss_fn.num_logits == C and not loss_fn.uses_standard_classifier
    z = torch.randn(4, C)
    torch.testing.assert_close(loss_fn.scores(z), torch.sigmoid(z))
    half = loss_fn(z.half(), torch.tensor([0, 1, C, 3]))["loss_cls"]
    full = loss_fn(z.half().float(), torch.tensor([0, 1, C, 3]))["loss_cls"]
    assert half.dtype == torch.float32 and torch.equal(half, full)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"lambda_": -0.1}, "lambda_"),
        ({"lambda_": 1.5}, "lambda_"),
        ({"num_images": 0}, "num_images"),
        ({"image_counts": torch.ones(C + 1, dtype=torch.long)}, "image_counts"),
    ],
)
def test_rejects_bad_arguments(kwargs, match):
    with pytest.raises(LossArgumentError, match=match):
        EQLLoss(**{"num_classes": C, "image_counts": IMAGE_COUNTS, "num_images": NUM_IMAGES, **kwargs})
