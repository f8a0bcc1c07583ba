from pathlib import Path

import pytest

from bacl.params import (BaselineParams, ClassifierParams, ParamError, TrainParams, load_params,
                         parse_overrides)

ROOT = Path(__file__).resolve().parents[1]


def test_params_yaml_equals_builtin_defaults():
    assert load_params(ROOT / "params.yaml") == load_params(None)


@pytest.mark.parametrize("config", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_config_loads(config):
    params = load_params(config)
    assert params.train.epochs >= 1


def test_overrides_are_typed():
    params = load_params(None, ["train.epochs=3", "model.min_size_train=[128, 160]", "train.weight_decay=5e-5",
                                "train.repeat_factor_threshold=0.001"])
    assert params.train.epochs == 3
    assert params.model.min_size_train == [128, 160]
    assert params.train.weight_decay == pytest.approx(5e-5)
    assert params.train.repeat_factor_threshold == pytest.approx(0.001)


def test_unknown_key_is_named_with_a_suggestion():
    with pytest.raises(ParamError, match=r"train\.epoch: unknown key \(did you mean 'epochs'\?\)"):
        load_params(None, ["train.epoch=3"])


def test_unknown_section_is_named():
    with pytest.raises(ParamError, match=r"trian: unknown key"):
        load_params(None, ["trian.epochs=3"])


@pytest.mark.parametrize(
    "override, key",
    [
        ("train.epochs=0", "train.epochs"),
        ("train.base_lr=-1", "train.base_lr"),
        ("train.momentum=1.5", "train.momentum"),
        ("train.loss=focal", "train.loss"),
        ("train.lr_steps=[11, 8]", "train.lr_steps"),
        ("model.preset=vgg", "model.preset"),
        ("model.nms_thresh=0", "model.nms_thresh"),
        ("data.dataset=coco", "data.dataset"),
        ("data.synthetic.image_size=8", "data.synthetic.image_size"),
        ("train.epochs=three", "train.epochs"),
        ("train.amp=maybe", "train.amp"),
        ("model.min_size_train=160", "model.min_size_train"),
        ("evaluate.max_dets=0", "evaluate.max_dets"),
        ("classifier.epochs=0", "classifier.epochs"),
        ("classifier.loss=focal", "classifier.loss"),
        ("classifier.freeze=maybe", "classifier.freeze"),
        ("classifier.init_from=[a]", "classifier.init_from"),
        ("classifier.fcbl.alpha=-0.1", "classifier.fcbl.alpha"),
        ("classifier.fcbl.prob_thr=0", "classifier.fcbl.prob_thr"),
        ("classifier.fhm.decay=0", "classifier.fhm.decay"),
        ("classifier.fhm.num_jitter=24", "classifier.fhm.num_jitter"),
        ("classifier.fhm.num_sampled_classes=-1", "classifier.fhm.num_sampled_classes"),
        ("classifier.loss=bce", "classifier.fhm.enabled"),
        ("baseline.epochs=0", "baseline.epochs"),
        ("baseline.fhm.enabled=true", "baseline.fhm.enabled"),
        ("baseline.fcbl.alpha=-1", "baseline.fcbl.alpha"),
    ],
)
def test_bad_values_name_the_key(override, key):
    with pytest.raises(ParamError, match=rf"^params: {key.replace('.', r'[.]')}(\[\d+\])?: "):
        load_params(None, [override])


def test_errors_name_the_file(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("train:\n  epochs: -2\n")
    with pytest.raises(ParamError, match=rf"{path.name}: train.epochs: must be >= 1"):
        load_params(path)
    path.write_text("train: [unclosed\n")
    with pytest.raises(ParamError, match="not valid YAML"):
        load_params(path)
    with pytest.raises(ParamError, match="not found"):
        load_params(tmp_path / "missing.yaml")


def test_override_syntax_error():
    with pytest.raises(ParamError, match="expected key=value"):
        parse_overrides(["train.epochs"])


def test_classifier_stage_defaults_are_the_papers():
    c = load_params(None).classifier
    assert isinstance(c, TrainParams)  # the optimiser keys and their checks are shared
    assert (c.loss, c.freeze, c.init_from, c.output_dir) == ("fcbl", True, None, "runs/bacl")
    assert (c.fcbl.alpha, c.fcbl.prob_thr, c.fcbl.reweight) == (0.85, 0.7, True)
    assert (c.fhm.enabled, c.fhm.decay, c.fhm.num_sampled_classes, c.fhm.num_samples_per_class,
            c.fhm.num_jitter) == (True, 0.1, 8, 12, 16)
    # The paper keeps stage 1's learning rate in stage 2; the synthetic default of both is 0.04
    # (a small model from scratch), the LVIS configs' 0.02.
    assert (c.base_lr, c.base_batch_size, c.weight_decay) == (load_params(None).train.base_lr, 16, 1e-4)
    assert {f for f in TrainParams.__dataclass_fields__} < set(ClassifierParams.__dataclass_fields__)


def test_classifier_starts_from_stage_one_unless_told():
    params = load_params(None, ["train.output_dir=runs/s1"])
    assert params.classifier_init_from == Path("runs/s1/model_final.pt")
    assert params.stage("classifier") is params.classifier and params.stage("representation") is params.train
    assert load_params(None, ["classifier.init_from=w.pt"]).classifier_init_from == Path("w.pt")
    with pytest.raises(ValueError, match="unknown stage"):
        params.stage("detector")


def test_unknown_classifier_key_is_named_with_a_suggestion():
    with pytest.raises(ParamError, match=r"classifier\.fhm\.enable: unknown key \(did you mean 'enabled'\?\)"):
        load_params(None, ["classifier.fhm.enable=false"])


def test_baseline_is_stage_one_continued_for_the_classifier_stages_epochs():
    params = load_params(None)
    b, c = params.baseline, params.classifier
    assert isinstance(b, ClassifierParams) and type(b) is BaselineParams
    assert set(BaselineParams.__dataclass_fields__) == set(ClassifierParams.__dataclass_fields__)  # same keys
    assert (b.freeze, b.loss, b.fhm.enabled, b.init_from, b.output_dir) == (False, "bce", False, None, "runs/baseline")
    assert (b.epochs, b.lr_steps, b.base_lr, b.batch_size) == (c.epochs, c.lr_steps, c.base_lr, c.batch_size)
    assert params.stage("baseline") is b


def test_the_three_runs_have_their_own_folders():
    params = load_params(None)
    assert (params.train.output_dir, params.classifier.output_dir, params.baseline.output_dir) == (
        "runs/representation", "runs/bacl", "runs/baseline")
    for config in sorted((ROOT / "configs").glob("*.yaml")):
        p = load_params(config)
        assert len({p.train.output_dir, p.classifier.output_dir, p.baseline.output_dir}) == 3, config.name


def test_both_classifier_like_stages_start_from_stage_one():
    params = load_params(None, ["train.output_dir=runs/s1"])
    assert params.init_from("baseline") == params.init_from("classifier") == Path("runs/s1/model_final.pt")
    assert load_params(None, ["baseline.init_from=w.pt"]).init_from("baseline") == Path("w.pt")
    with pytest.raises(ValueError, match="does not start from a checkpoint"):
        params.init_from("representation")


def test_a_partial_nested_section_keeps_the_sections_defaults(tmp_path):
    assert load_params(None, ["baseline.fhm.decay=0.2"]).baseline.fhm == load_params(None).baseline.fhm.__class__(
        enabled=False, decay=0.2)
    path = tmp_path / "p.yaml"
    path.write_text("baseline:\n  fhm:\n    num_jitter: 32\nclassifier:\n  fcbl:\n    alpha: 0.5\n")
    params = load_params(path)
    assert (params.baseline.fhm.enabled, params.baseline.fhm.num_jitter) == (False, 32)
    assert (params.classifier.fcbl.alpha, params.classifier.fcbl.reweight) == (0.5, True)
