import pytest
import torch

from bacl.losses import build_loss
from bacl.losses.softmax_ce import SoftmaxCrossEntropyLoss


def reference_ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Row by row: -log(exp(z_y) / sum_j exp(z_j)), averaged."""
    total = logits.new_zeros(())
    for i in range(logits.shape[0]):
        row = logits[i]
        total = total - (row[int(labels[i])] - torch.log(torch.exp(row).sum()))
    return total / logits.shape[0]


def test_matches_reference_value_and_gradient():
    torch.manual_seed(0)
    num_classes = 4
    logits = torch.randn(9, num_classes + 1, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([4, 0, 1, 4, 2, 3, 4, 0, 1])  # 4 = background
    loss = SoftmaxCrossEntropyLoss(num_classes=num_classes)(logits, labels)["loss_cls"]
    expected = reference_ce(logits, labels)
    torch.testing.assert_close(loss, expected)
    (grad,) = torch.autograd.grad(loss, logits)
    (expected_grad,) = torch.autograd.grad(expected, logits)
    torch.testing.assert_close(grad, expected_grad)


def test_empty_batch_is_zero_and_keeps_graph():
    logits = torch.zeros(0, 3, requires_grad=True)
    loss = SoftmaxCrossEntropyLoss(num_classes=2)(logits, torch.zeros(0, dtype=torch.int64))["loss_cls"]
    assert loss.item() == 0.0
    loss.backward()
    assert logits.grad is not None and logits.grad.shape == (0, 3)


def test_scores_drop_background_column():
    torch.manual_seed(2)
    logits = torch.randn(5, 4)
    loss = build_loss("softmax_ce", num_classes=3)
    assert loss.use_sigmoid is False
    scores = loss.scores(logits)
    probs = torch.exp(logits) / torch.exp(logits).sum(dim=1, keepdim=True)
    torch.testing.assert_close(scores, probs[:, :3])
    assert bool((scores.sum(dim=1) < 1).all())


def test_rejects_wrong_shapes():
    with pytest.raises(ValueError):
        SoftmaxCrossEntropyLoss(num_classes=3)(torch.zeros(2, 5), torch.zeros(2, dtype=torch.int64))
