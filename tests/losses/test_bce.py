import math

import pytest
import torch

from bacl.losses import build_loss, sigmoid_detection_scores
from bacl.losses.bce import SigmoidBCELoss


def reference_bce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Row by row, channel by channel: sum of binary cross-entropies over N."""
    num_rows, num_channels = logits.shape
    total = logits.new_zeros(())
    for i in range(num_rows):
        for j in range(num_channels):
            p = torch.sigmoid(logits[i, j])
            target = 1.0 if j == int(labels[i]) else 0.0
            total = total - (target * torch.log(p) + (1.0 - target) * torch.log(1.0 - p))
    return total / num_rows


def test_matches_reference_value_and_gradient():
    torch.manual_seed(0)
    num_classes = 5
    logits = torch.randn(7, num_classes + 1, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 5, 3, 5, 4, 1, 2])  # 5 = background
    loss = SigmoidBCELoss(num_classes=num_classes)(logits, labels)["loss_cls"]
    expected = reference_bce(logits, labels)
    torch.testing.assert_close(loss, expected)
    (grad,) = torch.autograd.grad(loss, logits)
    (expected_grad,) = torch.autograd.grad(expected, logits)
    torch.testing.assert_close(grad, expected_grad)


def test_normalised_by_rows_not_elements():
    # All-zero logits: every channel contributes log 2, so the loss is (C + 1) * log 2.
    num_classes = 9
    logits = torch.zeros(4, num_classes + 1)
    loss = SigmoidBCELoss(num_classes=num_classes)(logits, torch.tensor([0, 1, 9, 9]))["loss_cls"]
    assert loss.item() == pytest.approx((num_classes + 1) * math.log(2.0), rel=1e-6)


def test_background_rows_target_last_channel():
    # A background row whose logits say "background, nothing else" costs almost nothing.
    logits = torch.tensor([[-20.0, -20.0, 20.0]])
    loss = SigmoidBCELoss(num_classes=2)(logits, torch.tensor([2]))["loss_cls"]
    assert loss.item() < 1e-6


def test_empty_batch_is_zero_and_keeps_graph():
    logits = torch.zeros(0, 4, requires_grad=True)
    loss = SigmoidBCELoss(num_classes=3)(logits, torch.zeros(0, dtype=torch.int64))["loss_cls"]
    assert loss.item() == 0.0
    loss.backward()
    assert logits.grad is not None and logits.grad.shape == (0, 4)


def test_scores_are_sigmoid_times_not_background():
    torch.manual_seed(1)
    logits = torch.randn(6, 4)
    loss = build_loss("bce", num_classes=3)
    scores = loss.scores(logits)
    expected = torch.empty(6, 3)
    for i in range(6):
        for j in range(3):
            expected[i, j] = torch.sigmoid(logits[i, j]) * (1 - torch.sigmoid(logits[i, 3]))
    torch.testing.assert_close(scores, expected)
    torch.testing.assert_close(sigmoid_detection_scores(logits), expected)


def test_rejects_wrong_shapes():
    loss = SigmoidBCELoss(num_classes=3)
    with pytest.raises(ValueError):
        loss(torch.zeros(2, 3), torch.zeros(2, dtype=torch.int64))
    with pytest.raises(ValueError):
        loss(torch.zeros(2, 4), torch.zeros(3, dtype=torch.int64))
