"""A stage's FCBL and FHM rebuilt from a checkpoint, and its settings in either params layout."""

import pytest
import torch

from bacl.analysis import trained_stage
from bacl.analysis.errors import AnalysisInputError, MissingStatisticsError
from bacl.checkpoint import load_checkpoint
from bacl.errors import BaclError
from bacl.losses.fcbl import FCBL
from bacl.models.feature_hallucination import FeatureHallucination


def prefixed(module: torch.nn.Module, prefix: str) -> dict:
    return {prefix + k: v for k, v in module.state_dict().items()}


def trained_fcbl(num_classes: int, seed: int, **kwargs) -> FCBL:
    g = torch.Generator().manual_seed(seed)
    fcbl = FCBL(num_classes=num_classes, **kwargs)
    labels = torch.randint(0, num_classes + 1, (64,), generator=g)
    fcbl(torch.randn(64, num_classes + 1, generator=g), labels)
    return fcbl


def trained_fhm(num_classes: int, feat_dim: int, seed: int, **kwargs) -> FeatureHallucination:
    g = torch.Generator().manual_seed(seed)
    fhm = FeatureHallucination(num_classes=num_classes, feat_dim=feat_dim, seed=seed, **kwargs)
    fhm.update(torch.randn(40, feat_dim, generator=g), torch.randint(0, num_classes - 1, (40,), generator=g))
    fhm.sample(torch.rand(num_classes, generator=g))  # moves the generator off its seed
    return fhm


def test_stage_settings_reads_both_layouts():
    from bacl.params import load_params

    params = load_params(None, ["representation.epochs=3", "losses.fcbl.alpha=0.5"])
    new = trained_stage.stage_settings(params.to_dict(), "representation")
    assert (new["loss"], new["epochs"], new["bce"]) == ("bce", 3, {})
    classifier = trained_stage.stage_settings(params.to_dict(), "classifier")
    assert classifier["fcbl"]["alpha"] == 0.5 and classifier["fhm"]["enabled"]
    old = {"train": {"loss": "bce", "epochs": 7}, "classifier": {"loss": "fcbl", "fcbl": {"alpha": 0.3}}}
    assert trained_stage.stage_settings(old, "representation")["epochs"] == 7  # the first layout's `train`
    assert trained_stage.stage_settings(old, "classifier")["fcbl"]["alpha"] == 0.3


def test_stage_settings_errors_name_the_file():
    with pytest.raises(AnalysisInputError, match=r"run/last\.pt \(saved params\): representation\.epochs") as err:
        trained_stage.stage_settings({"representation": {"epochs": 0}}, "classifier", source="run/last.pt")
    assert isinstance(err.value, BaclError) and isinstance(err.value, ValueError)
    with pytest.raises(AnalysisInputError, match="unknown training stage"):
        trained_stage.stage_settings({"train": {}}, "train")


def test_checkpoint_stage_defaults_to_representation():
    assert trained_stage.checkpoint_stage({"model": {}}) == "representation"
    assert trained_stage.checkpoint_stage({"model": {}, "stage": "baseline"}) == "baseline"


def test_fcbl_from_weights_restores_statistics_and_settings():
    original = trained_fcbl(5, seed=0, alpha=0.5, prob_thr=0.6)
    weights = prefixed(original, trained_stage.LOSS_PREFIX)
    rebuilt = trained_stage.fcbl_from_weights(weights, {"fcbl": {"alpha": 0.5, "prob_thr": 0.6, "reweight": True}})
    assert rebuilt.alpha == 0.5 and rebuilt.prob_thr == 0.6 and rebuilt.reweight
    assert torch.equal(rebuilt.cm_num, original.cm_num) and torch.equal(rebuilt.num_gt, original.num_gt)
    labels = torch.arange(5)
    assert torch.equal(rebuilt.margins(labels), original.margins(labels))
    assert trained_stage.fcbl_from_weights({}, {}) is None
    defaults = trained_stage.fcbl_from_weights(weights, {})  # no fcbl section: FCBL's defaults
    assert defaults.alpha == FCBL(num_classes=1).alpha


def test_fhm_from_weights_draws_what_the_original_draws_next():
    original = trained_fhm(6, 4, seed=3, num_sampled_classes=5, num_samples_per_class=2)
    weights = prefixed(original, trained_stage.FHM_PREFIX)
    rebuilt = trained_stage.fhm_from_weights(
        weights, {"fhm": {"enabled": True, "num_sampled_classes": 5, "num_samples_per_class": 2, "decay": 0.1}})
    assert (rebuilt.num_classes, rebuilt.feat_dim, rebuilt.num_sampled_classes) == (6, 4, 5)
    accuracy = torch.linspace(0, 0.9, 6, dtype=torch.float64)
    emb_a, lab_a = original.sample(accuracy)
    emb_b, lab_b = rebuilt.sample(accuracy)
    assert torch.equal(lab_a, lab_b) and torch.equal(emb_a, emb_b)  # the generator state came along
    assert trained_stage.fhm_from_weights({}, {}) is None
    no_generator = {k: v for k, v in weights.items() if not k.endswith("_extra_state")}
    assert torch.equal(trained_stage.fhm_from_weights(no_generator, {}).mean, original.mean)
    bad = dict(weights, **{trained_stage.FHM_PREFIX + "var": torch.zeros(6, 5)})
    with pytest.raises(AnalysisInputError, match="FHM"):
        trained_stage.fhm_from_weights(bad, {}, source="x.pt")


def test_trained_stage_of_a_state_and_its_errors():
    fcbl, fhm = trained_fcbl(4, seed=1), trained_fhm(4, 3, seed=1)
    weights = {**prefixed(fcbl, trained_stage.LOSS_PREFIX), **prefixed(fhm, trained_stage.FHM_PREFIX),
               "roi_heads.box_predictor.cls_score.weight": torch.zeros(5, 3)}
    state = {"model": weights, "stage": "classifier", "params": {"classifier": {"loss": "fcbl"}}}
    stage = trained_stage.trained_stage(state, source="c.pt")
    assert stage.num_classes == 4 and stage.has_fcbl and stage.has_fhm and stage.stage == "classifier"
    assert stage.require_fcbl() is stage.fcbl and stage.require_fhm() is stage.fhm

    plain = trained_stage.trained_stage({"model": {"roi_heads.box_predictor.cls_score.weight": torch.zeros(5, 3)},
                                         "stage": "baseline", "params": {"baseline": {"loss": "bce"}}},
                                        source="b.pt")
    with pytest.raises(MissingStatisticsError, match=r"^b\.pt: no FCBL statistics .*loss 'bce'") as err:
        plain.require_fcbl()
    assert isinstance(err.value, KeyError) and isinstance(err.value, BaclError)
    with pytest.raises(MissingStatisticsError, match="without FHM"):
        plain.require_fhm()

    wrong = dict(weights, **{"roi_heads.box_predictor.cls_score.weight": torch.zeros(7, 3)})
    with pytest.raises(AnalysisInputError, match="FCBL has 4 classes"):
        trained_stage.trained_stage(dict(state, model=wrong))
    with pytest.raises(AnalysisInputError, match="cls_score"):
        trained_stage.trained_stage(dict(state, model={}))


def test_checkpoints_of_a_trained_study(tiny_study):
    bacl = trained_stage.load_trained_stage(tiny_study["bacl"]["final"])
    assert bacl.stage == "classifier" and bacl.num_classes == 3 and bacl.has_fcbl and bacl.has_fhm
    assert bacl.fcbl.alpha == pytest.approx(tiny_study["params"].losses.fcbl.alpha)
    assert bacl.fcbl.num_gt.sum() > 0 and bool(bacl.fhm.seen.any())
    weights = load_checkpoint(tiny_study["bacl"]["final"])["model"]
    assert torch.equal(bacl.fcbl.cm_num, weights[trained_stage.LOSS_PREFIX + "cm_num"])
    assert torch.equal(bacl.fhm.mean, weights[trained_stage.FHM_PREFIX + "mean"])

    baseline = trained_stage.load_trained_stage(tiny_study["baseline"]["final"])
    assert baseline.stage == "baseline" and not baseline.has_fcbl and not baseline.has_fhm
    with pytest.raises(MissingStatisticsError, match="model_final.pt"):
        baseline.require_fcbl()

    state = load_checkpoint(tiny_study["representation"])
    stage1 = trained_stage.load_trained_stage(tiny_study["representation"])
    assert stage1.stage == "representation"
    assert {k: v for k, v in stage1.settings.items() if k != "bce"} == state["params"]["representation"]
