"""Errors name the dotted key, with a suggestion for a misspelt one; types are strict."""

import pytest

from bacl.params import ParamError, load_params


def test_unknown_key_is_named_with_a_suggestion():
    with pytest.raises(ParamError, match=r"^params: representation\.epoch: unknown key \(did you mean 'epochs'\?\); "
                                         r"known keys here: \['output_dir', 'loss', 'epochs'"):
        load_params(None, ["representation.epoch=3"])
    with pytest.raises(ParamError, match=r"classifier\.fhm\.enable: unknown key \(did you mean 'enabled'\?\)"):
        load_params(None, ["classifier.fhm.enable=false"])


def test_unknown_section_is_named():
    with pytest.raises(ParamError, match=r"^params: trian: unknown key; known keys here: \['seed', 'data'"):
        load_params(None, ["trian.epochs=3"])


@pytest.mark.parametrize(
    "override, key, problem",
    [
        ("representation.epochs=0", "representation.epochs", "must be >= 1, got 0"),
        ("solver.base_lr=-1", "solver.base_lr", "must be > 0, got -1"),
        ("solver.momentum=1.5", "solver.momentum", "must be < 1, got 1.5"),
        ("representation.lr_steps=[11, 8]", "representation.lr_steps", "must be increasing positive epoch numbers"),
        ("model.preset=vgg", "model.preset", "must be one of 'synthetic_small', 'r50_fpn' or 'r101_fpn'"),
        ("evaluate.nms_thresh=0", "evaluate.nms_thresh", "must be > 0, got 0"),
        ("data.dataset=coco", "data.dataset", "must be one of"),
        ("data.synthetic.image_size=8", "data.synthetic.image_size", "must be >= 32"),
        ("representation.epochs=three", "representation.epochs", "must be an integer, got 'three'"),
        ("representation.epochs=2.5", "representation.epochs", "must be an integer, got 2.5"),
        ("seed=true", "seed", "must be an integer, got True"),
        ("solver.amp=maybe", "solver.amp", "must be true or false, got 'maybe'"),
        ("solver.base_lr=true", "solver.base_lr", "must be a number"),
        ("representation.min_sizes=160", "representation.min_sizes", "must be a list, got 160"),
        ("representation.min_sizes=[0]", "representation.min_sizes", "must be positive sizes"),
        ("representation.max_size=100", "representation.max_size", "must be >= every min size (160), got 100"),
        ("evaluate.detections_per_img=0", "evaluate.detections_per_img", "must be >= 1"),
        ("evaluate.max_size=100", "evaluate.max_size", "must be >= min_size (160), got 100"),
        ("classifier.init_from=[a]", "classifier.init_from", "must be a string"),
        ("losses.fcbl.alpha=-0.1", "losses.fcbl.alpha", "must be >= 0"),
        ("losses.fcbl.prob_thr=0", "losses.fcbl.prob_thr", "must be > 0"),
        ("classifier.fhm.decay=0", "classifier.fhm.decay", "must be > 0"),
        ("classifier.fhm.num_jitter=24", "classifier.fhm.num_jitter", "must be a positive multiple of 16"),
        ("classifier.fhm.num_sampled_classes=-1", "classifier.fhm.num_sampled_classes", "must be >= 0"),
        ("baseline.epochs=0", "baseline.epochs", "must be >= 1"),
        ("baseline.fhm.enabled=true", "baseline.fhm", "unknown key"),
        ("solver.clip_grad_norm=0", "solver.clip_grad_norm", "must be > 0"),
        ("model.backbone_norm=norm_eval", "model.backbone_norm", "trains its BatchNorm from scratch"),
        ("model.pretrained_backbone=imagenet", "model.pretrained_backbone", "no ImageNet weights"),
    ],
)
def test_bad_values_name_the_key(override, key, problem):
    with pytest.raises(ParamError) as err:
        load_params(None, [override])
    assert str(err.value).startswith(f"params: {key}: "), str(err.value)
    assert problem in str(err.value)


def test_floats_accept_integers_and_exponents_yaml_leaves_as_text():
    params = load_params(None, ["solver.base_lr=1", "representation.weight_decay=5e-5"])
    assert params.solver.base_lr == 1.0 and isinstance(params.solver.base_lr, float)
    assert params.representation.weight_decay == pytest.approx(5e-5)
