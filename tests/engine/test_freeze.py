"""Freezing for the classifier stage: nothing outside cls_score, bbox_pred and the RPN changes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bacl.checkpoint import load_checkpoint
from bacl.engine.freeze import freeze_except, train_mode
from bacl.engine.stages import STAGE_STATE, STAGES
from bacl.engine.train import train
from bacl.losses import build_loss
from bacl.models.detector import build_detector

from .conftest import random_batch, stage_params

TRAINABLE_PREFIXES = ("roi_heads.box_predictor.cls_score.", "roi_heads.box_predictor.bbox_pred.", "rpn.")


def test_the_classifier_stage_trains_the_classification_and_box_layers_and_the_rpn():
    assert STAGES["classifier"].trainable == TRAINABLE_PREFIXES


def test_freeze_except_sets_requires_grad_and_returns_frozen_norms():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1), nn.BatchNorm2d(2))
    norms = freeze_except(model, ["2.weight", "2.bias", "3.weight", "3.bias"])
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["2.weight", "2.bias", "3.weight", "3.bias"]
    assert norms == [model[1]]  # the trainable BatchNorm keeps training mode
    train_mode(model, norms)
    assert model.training and model[0].training and not model[1].training and model[3].training
    with pytest.raises(ValueError, match="not parameters"):
        freeze_except(model, ["4.weight"])


def test_frozen_detector_step_changes_only_the_trainable_parameters():
    torch.manual_seed(0)
    model = build_detector(preset="synthetic_small", num_classes=3, loss=build_loss("bce", num_classes=3),
                           min_size=64, max_size=128)
    trainable = [n for n, _ in model.named_parameters() if n.startswith(TRAINABLE_PREFIXES)]
    norms = freeze_except(model, trainable)
    assert norms and all(isinstance(m, nn.BatchNorm2d) for m in norms)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train_mode(model, norms)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    images, targets = random_batch(2, size=64, num_classes=3, seed=1)
    sum(model(images, targets).values()).backward()
    optimizer.step()

    for name, param in model.named_parameters():
        if name in trainable:
            assert param.grad is not None, name
        else:
            assert param.grad is None and not param.requires_grad, name
    after = model.state_dict()
    for key, value in before.items():  # BatchNorm running statistics included
        if key.startswith(TRAINABLE_PREFIXES):
            continue
        assert torch.equal(after[key], value), key
    assert not torch.equal(after["roi_heads.box_predictor.cls_score.weight"],
                           before["roi_heads.box_predictor.cls_score.weight"])


def test_classifier_stage_run_leaves_frozen_state_bit_identical(stage1, tmp_path):
    params = stage_params(stage1, tmp_path / "s2", epochs=1)
    final = train(params, stage="classifier", device="cpu")
    start = load_checkpoint(stage1["final"])["model"]
    end = load_checkpoint(final)["model"]
    last = load_checkpoint(tmp_path / "s2" / "checkpoints" / "last.pt")

    changed = set()
    for key, value in end.items():
        if key.startswith(STAGE_STATE):
            continue
        if key.startswith(TRAINABLE_PREFIXES):
            if not torch.equal(value, start[key]):
                changed.add(key)
        else:
            assert torch.equal(value, start[key]), key  # parameters and buffers (BatchNorm statistics)
    assert {k for k in end if k.startswith(TRAINABLE_PREFIXES) and k.endswith("weight")} <= changed
    assert any(k.endswith("running_mean") for k in end)  # the small preset has BatchNorm to protect
    # the optimiser only holds the trainable parameters
    num_trainable = sum(1 for k in end if k.startswith(TRAINABLE_PREFIXES))
    assert sum(len(g["params"]) for g in last["optimizer"]["param_groups"]) == num_trainable
