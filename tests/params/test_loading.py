"""Files, overrides, presets as deltas over a base, and parameters of the first layout."""

from pathlib import Path

import pytest
import yaml

from bacl.params import ParamError, load_params, parse_overrides, upgrade_layout

ROOT = Path(__file__).resolve().parents[2]


def test_overrides_are_typed_and_nested():
    assert parse_overrides(["a.b=3", "a.c=[1, 2]", "d=x", "e="]) == {"a": {"b": 3, "c": [1, 2]}, "d": "x", "e": None}
    params = load_params(None, ["representation.epochs=3", "representation.min_sizes=[128, 160]",
                                "representation.repeat_factor_threshold=0.001", "seed=2"])
    assert (params.representation.epochs, params.representation.min_sizes, params.seed) == (3, [128, 160], 2)


def test_override_syntax_errors():
    with pytest.raises(ParamError, match="expected key=value"):
        parse_overrides(["representation.epochs"])
    with pytest.raises(ParamError, match="'seed' is not a section"):
        parse_overrides(["seed=1", "seed.x=2"])


def test_errors_name_the_file(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("representation:\n  epochs: -2\n")
    with pytest.raises(ParamError, match=rf"{path.name}: representation.epochs: must be >= 1"):
        load_params(path)
    path.write_text("representation: [unclosed\n")
    with pytest.raises(ParamError, match="not valid YAML"):
        load_params(path)
    path.write_text("- a list\n")
    with pytest.raises(ParamError, match="top level must be a mapping"):
        load_params(path)
    with pytest.raises(ParamError, match="not found"):
        load_params(tmp_path / "missing.yaml")


def test_a_preset_is_a_delta_over_its_base(tmp_path):
    (tmp_path / "base.yaml").write_text("solver:\n  base_lr: 0.02\n  workers: 4\nrepresentation:\n  epochs: 12\n")
    (tmp_path / "child.yaml").write_text("_base_: base.yaml\nsolver:\n  workers: 8\n")
    params = load_params(tmp_path / "child.yaml", ["representation.epochs=5"])
    assert (params.solver.base_lr, params.solver.workers, params.representation.epochs) == (0.02, 8, 5)
    assert params.solver.momentum == load_params(None).solver.momentum  # untouched keys: the defaults
    (tmp_path / "loop.yaml").write_text("_base_: loop.yaml\n")
    with pytest.raises(ParamError, match="loops back"):
        load_params(tmp_path / "loop.yaml")


def test_the_lvis_presets_chain_to_one_base():
    r50 = load_params(ROOT / "configs" / "lvis_v1_r50_fpn.yaml")
    r101 = load_params(ROOT / "configs" / "lvis_v1_r101_fpn.yaml")
    v05 = load_params(ROOT / "configs" / "lvis_v0.5_r101_fpn.yaml")
    assert (r50.model.preset, r101.model.preset, v05.model.preset) == ("r50_fpn", "r101_fpn", "r101_fpn")
    assert r101.solver == r50.solver and r101.classifier.epochs == r50.classifier.epochs == 12
    assert (v05.data.dataset, v05.data.lvis.train_annotations) == ("lvis_v0.5", "data/lvis/lvis_v0.5_train.json")
    assert r50.evaluate.detections_per_img == 300


def test_parameters_of_the_first_layout_are_upgraded():
    old = {"data": {"dataset": "synthetic", "root": "d"},
           "model": {"preset": "synthetic_small", "pretrained_backbone": None, "min_size_train": [128],
                     "min_size_test": 96, "max_size": 320, "detections_per_img": 15, "score_thresh": 0.001,
                     "nms_thresh": 0.4},
           "train": {"output_dir": "r1", "loss": "bce", "epochs": 3, "batch_size": 4, "base_lr": 0.02,
                     "lr_steps": [2], "weight_decay": 5e-5, "seed": 7, "freeze": None},
           "classifier": {"output_dir": "r2", "init_from": None, "freeze": True, "loss": "fcbl", "epochs": 1,
                          "lr_steps": [1], "fcbl": {"alpha": 0.5, "prob_thr": 0.7, "reweight": True},
                          "fhm": {"enabled": True, "decay": 0.2}},
           "baseline": {"output_dir": "r3", "freeze": False, "loss": "bce", "epochs": 1, "lr_steps": [1],
                        "fhm": {"enabled": False}},
           "evaluate": {"max_dets": 15, "batch_size": 2, "workers": 0}}
    from bacl.params import params_from_dict

    params = params_from_dict(old)
    assert (params.seed, params.solver.batch_size, params.solver.base_lr) == (7, 4, 0.02)
    assert (params.representation.output_dir, params.representation.weight_decay) == ("r1", 5e-5)
    assert params.representation.min_sizes == params.classifier.min_sizes == [128]
    assert (params.losses.fcbl.alpha, params.classifier.fhm.decay) == (0.5, 0.2)
    assert (params.evaluate.detections_per_img, params.evaluate.min_size, params.evaluate.max_size,
            params.evaluate.nms_thresh) == (15, 96, 320, 0.4)
    assert upgrade_layout(params.to_dict()) == params.to_dict()  # the current layout passes through
    assert yaml.safe_load(yaml.safe_dump(params.to_dict())) == params.to_dict()
