"""The parameter tree: one section per stage, losses by name, FHM's requirement."""

from pathlib import Path

import pytest

from bacl.losses import LOSSES
from bacl.params import (LossesParams, ParamError, Params, StageParams, load_params)
from bacl.params.losses import LOSSES_WITH_CLASS_ACCURACY

ROOT = Path(__file__).resolve().parents[2]


def test_each_stage_reads_its_own_section():
    params = load_params(None)
    for name in ("representation", "classifier", "baseline"):
        assert params.stage(name) is getattr(params, name)
        assert isinstance(params.stage(name), StageParams)
    with pytest.raises(ValueError, match="unknown stage 'detector'"):
        params.stage("detector")


def test_sections_carry_only_what_their_stage_reads():
    params = load_params(None)
    assert "fhm" in type(params.classifier).model_fields
    assert "fhm" not in type(params.baseline).model_fields and "fhm" not in type(params.representation).model_fields
    assert "init_from" not in type(params.representation).model_fields
    for section in ("model", "representation", "classifier", "baseline"):  # test-time settings are evaluate's
        fields = type(getattr(params, section)).model_fields
        assert not {"detections_per_img", "score_thresh", "nms_thresh"} & set(fields), section


def test_the_classifier_stage_defaults_are_bacls():
    params = load_params(None)
    c, fcbl = params.classifier, params.losses.fcbl
    assert (c.loss, c.init_from, c.output_dir) == ("fcbl", None, "runs/bacl")
    assert (fcbl.alpha, fcbl.prob_thr, fcbl.reweight) == (0.85, 0.7, True)
    assert (c.fhm.enabled, c.fhm.decay, c.fhm.num_sampled_classes, c.fhm.num_samples_per_class,
            c.fhm.num_jitter) == (True, 0.1, 8, 12, 16)
    assert (params.baseline.loss, params.baseline.epochs, params.baseline.lr_steps) == ("bce", c.epochs, c.lr_steps)


def test_a_stage_loss_must_be_a_section_of_losses():
    with pytest.raises(ParamError, match=r"^params: baseline\.loss: unknown loss 'focal'; known: \['bce'"):
        load_params(None, ["baseline.loss=focal"])
    assert set(LossesParams.model_fields) <= set(LOSSES)


def test_fhm_needs_a_loss_with_class_accuracy():
    with pytest.raises(ParamError, match=r"classifier\.fhm\.enabled: .*'bce'"):
        load_params(None, ["classifier.loss=bce"])
    assert load_params(None, ["classifier.loss=bce", "classifier.fhm.enabled=false"]).classifier.loss == "bce"
    assert set(LOSSES_WITH_CLASS_ACCURACY) == {n for n, cls in LOSSES.items() if hasattr(cls, "class_accuracy")}


def test_the_runs_have_their_own_folders_in_every_preset():
    for config in [None, *sorted((ROOT / "configs").glob("*.yaml"))]:
        p = load_params(config)
        dirs = {p.representation.output_dir, p.classifier.output_dir, p.baseline.output_dir}
        assert len(dirs) == 3, config


def test_to_dict_round_trips():
    params = load_params(None, ["seed=3", "classifier.fhm.decay=0.2"])
    assert Params.model_validate(params.to_dict()) == params
