"""``onehot_bce_sum`` against torch's dense-target BCE, values and gradients."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from bacl.losses.onehot_bce import onehot_bce_sum


def dense_reference(logits, labels):
    target = torch.zeros_like(logits)
    for i, y in enumerate(labels.tolist()):
        target[i, y] = 1.0
    return F.binary_cross_entropy_with_logits(logits, target, reduction="sum")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_matches_dense_bce_value_and_gradient(dtype):
    gen = torch.Generator().manual_seed(0)
    logits = (torch.randn(37, 11, generator=gen, dtype=dtype) * 8).requires_grad_()
    labels = torch.randint(0, 11, (37,), generator=gen)
    ours = onehot_bce_sum(logits, labels)
    (g_ours,) = torch.autograd.grad(ours, logits)
    ref = dense_reference(logits, labels)
    (g_ref,) = torch.autograd.grad(ref, logits)
    tol = 1e-10 if dtype == torch.float64 else 1e-4
    assert torch.allclose(ours, ref, rtol=tol, atol=tol)
    assert torch.allclose(g_ours, g_ref, rtol=tol, atol=tol)


def test_confident_rows_keep_precision():
    # Large correct logits: the loss is tiny, and summing per element keeps it exact.
    logits = torch.full((4, 3), -30.0).requires_grad_()
    labels = torch.tensor([0, 1, 2, 0])
    with torch.no_grad():
        logits[torch.arange(4), labels] = 30.0
    ours = onehot_bce_sum(logits, labels)
    ref = dense_reference(logits.double(), labels)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-5)
    assert ours.item() > 0


def test_replaced_rows_take_value_and_gradient_at_replacement():
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(6, 5, generator=gen, dtype=torch.float64).requires_grad_()
    labels = torch.tensor([4, 0, 4, 2, 1, 4])
    rows = torch.tensor([1, 3, 4])
    shift = torch.randn(3, 5, generator=gen, dtype=torch.float64)
    values = logits.detach()[rows] + shift
    values[0, 3] = -1e4  # a dropped channel: no loss, no gradient
    ours = onehot_bce_sum(logits, labels, rows=rows, row_values=values)
    (g_ours,) = torch.autograd.grad(ours, logits)

    # Reference: the replaced logits as a function of `logits` with constant offsets.
    offset = torch.zeros(6, 5, dtype=torch.float64)
    offset[rows] = values - logits.detach()[rows]
    ref = dense_reference(logits + offset, labels)
    (g_ref,) = torch.autograd.grad(ref, logits)
    assert torch.allclose(ours, ref, atol=1e-9)
    assert torch.allclose(g_ours, g_ref, atol=1e-12)
    assert g_ours[1, 3] == 0.0


def test_half_precision_is_computed_in_float32():
    gen = torch.Generator().manual_seed(2)
    logits = (torch.randn(8, 4, generator=gen) * 3).half().requires_grad_()
    labels = torch.randint(0, 4, (8,), generator=gen)
    ours = onehot_bce_sum(logits, labels)
    assert ours.dtype == torch.float32
    (g,) = torch.autograd.grad(ours, logits)
    assert g.dtype == torch.float16
    ref = dense_reference(logits.detach().float(), labels)
    assert ours.item() == pytest.approx(ref.item(), rel=1e-5)


def test_rows_and_values_go_together():
    with pytest.raises(ValueError, match="rows and row_values"):
        onehot_bce_sum(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), rows=torch.tensor([0]))
