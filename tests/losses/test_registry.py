"""Every registered loss honours the ClassificationLoss contract."""

import importlib
import pkgutil

import pytest
import torch

import bacl.losses
from bacl.losses import LOSSES, ClassificationLoss, build_loss, register_loss

# Import every module of the package so each loss registers, listed in __init__ or not.
for _module in pkgutil.iter_modules(bacl.losses.__path__):
    importlib.import_module(f"bacl.losses.{_module.name}")

NUM_CLASSES = 6


def test_baselines_registered():
    assert {"bce", "softmax_ce"} <= set(LOSSES)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_builds(name):
    loss = build_loss(name, num_classes=NUM_CLASSES)
    assert isinstance(loss, ClassificationLoss)
    assert loss.num_classes == NUM_CLASSES


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_forward_random_batch(name):
    torch.manual_seed(0)
    loss = build_loss(name, num_classes=NUM_CLASSES)
    logits = torch.randn(32, NUM_CLASSES + 1, requires_grad=True)
    labels = torch.randint(0, NUM_CLASSES + 1, (32,))
    terms = loss(logits, labels)
    assert "loss_cls" in terms
    for value in terms.values():
        assert value.dim() == 0 and torch.isfinite(value)
    sum(terms.values()).backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_empty_batch(name):
    loss = build_loss(name, num_classes=NUM_CLASSES)
    logits = torch.zeros(0, NUM_CLASSES + 1, requires_grad=True)
    terms = loss(logits, torch.zeros(0, dtype=torch.int64))
    total = sum(terms.values())
    assert total.item() == 0.0
    total.backward()
    assert logits.grad is not None


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_scores_shape_and_range(name):
    torch.manual_seed(0)
    loss = build_loss(name, num_classes=NUM_CLASSES)
    scores = loss.scores(torch.randn(10, NUM_CLASSES + 1))
    assert scores.shape == (10, NUM_CLASSES)
    assert bool(((scores >= 0) & (scores <= 1)).all())


def test_unknown_name_lists_known():
    with pytest.raises(KeyError, match="bce"):
        build_loss("no_such_loss", num_classes=3)


def test_duplicate_name_rejected():
    with pytest.raises(KeyError):
        register_loss("bce")(ClassificationLoss)
    assert LOSSES["bce"] is not ClassificationLoss
