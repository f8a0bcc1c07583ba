import pytest
import torch
from torch import nn

from bacl.losses import build_loss
from bacl.losses.normed_linear import NormedLinear
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


def test_for_loss_default_equals_the_plain_predictor_under_one_seed():
    for name, use_sigmoid in [("bce", True), ("softmax_ce", False)]:
        torch.manual_seed(3)
        plain = BoxPredictor(in_channels=8, num_classes=3, use_sigmoid=use_sigmoid)
        torch.manual_seed(3)
        built = BoxPredictor.for_loss(build_loss(name, num_classes=3), in_channels=8)
        assert list(plain.state_dict()) == list(built.state_dict())
        for key, value in plain.state_dict().items():
            assert torch.equal(value, built.state_dict()[key]), (name, key)


def test_for_loss_uses_the_loss_layout_and_layer():
    loss = build_loss("seesaw", num_classes=5)
    predictor = BoxPredictor.for_loss(loss, in_channels=12, class_agnostic_bbox=True)
    assert isinstance(predictor.cls_score, NormedLinear) and predictor.cls_score.out_features == 7
    assert predictor.bbox_pred.out_features == 4
    logits, _ = predictor(torch.randn(2, 12))
    assert logits.shape == (2, 7)
    eql = build_loss("eql", num_classes=5, image_counts=torch.ones(5, dtype=torch.long), num_images=10)
    predictor = BoxPredictor.for_loss(eql, in_channels=12)
    assert type(predictor.cls_score) is nn.Linear and predictor.cls_score.out_features == 5
    torch.testing.assert_close(torch.sigmoid(predictor.cls_score.bias), torch.full((5,), 0.001))


def test_rejects_a_classifier_of_the_wrong_size():
    with pytest.raises(ValueError, match="cls_score"):
        BoxPredictor(in_channels=8, num_classes=3, cls_score=nn.Linear(8, 5))
    with pytest.raises(ValueError, match="cls_score"):
        BoxPredictor(in_channels=8, num_classes=3, num_logits=5, cls_score=nn.Linear(6, 5))
    with pytest.raises(ValueError, match="num_logits"):
        BoxPredictor(in_channels=8, num_classes=3, num_logits=0)
