"""What each stage is: where it starts, what it trains, when a checkpoint may be continued."""

from pathlib import Path

import pytest
import torch

from bacl.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from bacl.engine.stages import (CLASSIFIER_STAGE_TRAINABLE, STAGES, init_checkpoint, load_initial_weights,
                                stale_reason)
from bacl.engine.train import train
from bacl.losses import build_loss
from bacl.models.detector import build_detector
from bacl.params import load_params

from .conftest import stage_params


def test_the_stages():
    assert list(STAGES) == ["representation", "classifier", "baseline"]
    assert STAGES["classifier"].trainable == CLASSIFIER_STAGE_TRAINABLE
    assert STAGES["representation"].trainable is None and STAGES["baseline"].trainable is None
    assert [s.name for s in STAGES.values() if s.hallucinates] == ["classifier"]


def test_where_each_stage_starts():
    params = load_params(None, ["representation.output_dir=runs/s1"])
    assert init_checkpoint(params, "representation") is None
    assert init_checkpoint(params, "classifier") == init_checkpoint(params, "baseline") == Path("runs/s1/model_final.pt")
    assert init_checkpoint(load_params(None, ["baseline.init_from=w.pt"]), "baseline") == Path("w.pt")
    assert init_checkpoint(load_params(None, ["baseline.init_from=model"]), "baseline") is None
    with pytest.raises(ValueError, match="unknown stage"):
        init_checkpoint(params, "detector")


def test_stale_reason():
    params = load_params(None, ["representation.epochs=4"])
    state = {"stage": "representation", "epoch": 2, "params": params.to_dict(), "init_sha256": None}
    assert stale_reason(state, params, stage="representation", init_sha256=None) is None
    longer = load_params(None, ["representation.epochs=6"])
    assert stale_reason(state, longer, stage="representation", init_sha256=None) is None  # epochs may grow
    assert "finished" in stale_reason({**state, "epoch": 4}, params, stage="representation", init_sha256=None)
    other = load_params(None, ["representation.epochs=4", "solver.base_lr=0.01"])
    assert stale_reason(state, other, stage="representation", init_sha256=None) == "its settings differ (solver)"
    other = load_params(None, ["representation.epochs=4", "representation.weight_decay=0.001"])
    assert "(representation)" in stale_reason(state, other, stage="representation", init_sha256=None)
    for unrelated in (["losses.fcbl.alpha=0.5"], ["evaluate.detections_per_img=300"], ["classifier.epochs=9"]):
        changed = load_params(None, ["representation.epochs=4", *unrelated])
        assert stale_reason(state, changed, stage="representation", init_sha256=None) is None, unrelated
    stage2 = {"stage": "classifier", "epoch": 1, "params": params.to_dict(), "init_sha256": "abc"}
    assert stale_reason(stage2, params, stage="classifier", init_sha256="abc") is None
    assert "other weights" in stale_reason(stage2, params, stage="classifier", init_sha256="def")
    assert "(losses.fcbl)" in stale_reason(stage2, load_params(None, ["losses.fcbl.alpha=0.1"]), stage="classifier",
                                           init_sha256="abc")
    assert "classifier stage" in stale_reason(stage2, params, stage="baseline", init_sha256="abc")


@pytest.mark.parametrize("loss, kept", [("bce", True), ("eqlv2", True), ("seesaw", False), ("bags", False)])
def test_the_classification_layer_is_kept_only_between_plain_linear_classifiers(stage1, loss, kept):
    """A stage whose loss lays the classifier out differently (or a stage 1 that did) keeps
    the new loss's own initialisation of cls_score; everything else comes from stage 1."""
    from bacl.engine.build import build_classification_loss, build_model
    from bacl.params import load_params as load

    params = load(None)
    start = load_checkpoint(stage1["final"])["model"]

    def fresh():
        torch.manual_seed(0)
        return build_model(params.model, num_classes=3,
                           loss=build_classification_loss(loss, losses=params.losses, num_classes=3))

    model, untouched = fresh(), fresh().state_dict()
    load_initial_weights(model, stage1["final"], preset="synthetic_small", stage="classifier")
    got = model.state_dict()
    layer = [k for k in got if k.startswith("roi_heads.box_predictor.cls_score.")]
    source = start if kept else untouched
    assert layer and all(torch.equal(got[k], source[k]) for k in layer)
    assert torch.equal(got["roi_heads.box_head.fc6.weight"], start["roi_heads.box_head.fc6.weight"])
    assert torch.equal(got["roi_heads.box_predictor.bbox_pred.weight"], start["roi_heads.box_predictor.bbox_pred.weight"])


def test_missing_initial_checkpoint_is_named(stage1, tmp_path):
    missing = tmp_path / "nowhere" / "model_final.pt"
    params = stage_params(stage1, tmp_path / "s2", **{"classifier.init_from": str(missing)})
    with pytest.raises(CheckpointError, match="nowhere/model_final.pt: no checkpoint to start the classifier"):
        train(params, stage="classifier", device="cpu")


def test_initial_checkpoint_that_does_not_fit_is_named(stage1, tmp_path):
    state = load_checkpoint(stage1["final"])
    del state["model"]["roi_heads.box_head.fc6.weight"]
    state["model"]["roi_heads.classification_loss.cm_num"] = torch.zeros(3, 3)  # a stage's own state: ignored
    broken = tmp_path / "broken.pt"
    save_checkpoint(broken, state)
    params = stage_params(stage1, tmp_path / "s2", **{"classifier.init_from": str(broken)})
    with pytest.raises(CheckpointError, match=r"broken\.pt: does not fit the model: 1 missing "
                                              r"\['roi_heads\.box_head\.fc6\.weight'\], 0 unexpected"):
        train(params, stage="classifier", device="cpu")


def test_a_checkpoint_of_another_preset_is_refused(stage1, tmp_path):
    state = load_checkpoint(stage1["final"])
    state["params"]["model"]["preset"] = "r50_fpn"
    other = tmp_path / "r50.pt"
    save_checkpoint(other, state)
    params = stage_params(stage1, tmp_path / "s2", **{"classifier.init_from": str(other)})
    with pytest.raises(CheckpointError, match="r50.pt: was trained with model.preset 'r50_fpn'"):
        train(params, stage="classifier", device="cpu")
