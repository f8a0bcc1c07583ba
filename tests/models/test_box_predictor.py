import pytest
import torch

from bacl.models.box_predictor import BoxPredictor


def test_shapes():
    predictor = BoxPredictor(in_channels=16, num_classes=5)
    logits, deltas = predictor(torch.randn(3, 16))
    assert logits.shape == (3, 6)
    assert deltas.shape == (3, 20)
    logits, deltas = predictor(torch.randn(3, 16, 1, 1))
    assert logits.shape == (3, 6)


def test_class_agnostic_regression():
    _, deltas = BoxPredictor(in_channels=8, num_classes=5, class_agnostic_bbox=True)(torch.randn(2, 8))
    assert deltas.shape == (2, 4)


def test_sigmoid_init_prior_on_every_logit():
    torch.manual_seed(0)
    predictor = BoxPredictor(in_channels=1024, num_classes=50)
    torch.testing.assert_close(torch.sigmoid(predictor.cls_score.bias), torch.full((51,), 0.001))
    assert predictor.cls_score.weight.std().item() == pytest.approx(0.01, rel=0.05)
    assert predictor.bbox_pred.weight.std().item() == pytest.approx(0.001, rel=0.05)
    assert predictor.bbox_pred.bias.abs().max().item() == 0.0


def test_softmax_init_zero_bias():
    predictor = BoxPredictor(in_channels=8, num_classes=3, use_sigmoid=False)
    assert predictor.cls_score.bias.abs().max().item() == 0.0


def test_rejects_bad_arguments():
    with pytest.raises(ValueError):
        BoxPredictor(in_channels=8, num_classes=0)
    with pytest.raises(ValueError):
        BoxPredictor(in_channels=8, num_classes=3, prior_prob=1.0)
