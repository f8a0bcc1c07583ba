import copy

import pytest
import torch

from bacl.errors import BaclError
from bacl.models.mmdet_config import MMDetConfigError, check_detector_against_config, parse_config_text, resnet_depth

from .mmdet_reference import BACL_CONFIG, C, reference_model


@pytest.fixture(scope="module")
def model():
    return reference_model("fcbl")


@pytest.fixture(scope="module")
def config():
    return parse_config_text(BACL_CONFIG, source="bacl.py")


def test_parses_mmcv_pretty_text(config):
    head = config["model"]["roi_head"]["bbox_head"]
    assert head["num_classes"] == C and head["loss_cls"]["type"] == "FCBL"
    assert config["model"]["backbone"]["out_indices"] == (0, 1, 2, 3)
    assert config["model"]["rpn_head"]["anchor_generator"]["ratios"] == [0.5, 1.0, 2.0]
    assert config["img_norm_cfg"]["mean"] == [123.675, 116.28, 103.53]
    assert config["custom_hooks"] == [{"type": "ReweightHook", "step": 1}] and config["selectp"] == 1


def test_never_runs_anything(tmp_path):
    marker = tmp_path / "ran"
    text = "\n".join([
        "import os",
        f"a = open({str(marker)!r}, 'w')",
        f"b = __import__('os').system('touch {marker}')",
        "c = [1, len('x')]",
        "d = dict(x=1, **{'y': 2})",
        "e = {'k': -2.5, 'n': None, 't': (1, 'two')}",
        "f, g = 1, 2",
        "h = dict(depth=50)",
    ])
    values = parse_config_text(text, source="evil.py")
    assert values == {"e": {"k": -2.5, "n": None, "t": (1, "two")}, "h": {"depth": 50}}
    assert not marker.exists()
    with pytest.raises(MMDetConfigError, match="broken.py"):
        parse_config_text("model = dict(", source="broken.py")
    assert issubclass(MMDetConfigError, BaclError) and issubclass(MMDetConfigError, ValueError)


def test_reference_model_matches_the_reference_config(model, config):
    assert resnet_depth(model) == 50
    assert check_detector_against_config(model, config, source="bacl.pth") == []


def changed(config, dotted, value):
    config = copy.deepcopy(config)
    node = config
    *parents, last = dotted.split(".")
    for part in parents:
        node = node[part]
    node[last] = value
    return config


@pytest.mark.parametrize("dotted, value, named", [
    ("model.roi_head.bbox_roi_extractor.roi_layer.aligned", False, "roi_layer.aligned"),
    ("model.roi_head.bbox_roi_extractor.roi_layer.sampling_ratio", 2, "roi_layer.sampling_ratio"),
    ("model.roi_head.bbox_roi_extractor.roi_layer.type", "RoIPool", "roi_layer.type"),
    ("model.roi_head.bbox_roi_extractor.finest_scale", 112, "finest_scale"),
    ("model.rpn_head.anchor_generator.ratios", [2.0, 1.0, 0.5], "ratios"),
    ("model.rpn_head.anchor_generator.strides", [8, 16, 32, 64, 128], "anchor"),
    ("model.rpn_head.anchor_generator.center_offset", 0.5, "centres"),
    ("model.rpn_head.bbox_coder.target_stds", [0.5, 0.5, 1.0, 1.0], "rpn_head.bbox_coder.target_stds"),
    ("model.roi_head.bbox_head.bbox_coder.target_stds", [0.05, 0.05, 0.1, 0.1], "bbox_head.bbox_coder.target_stds"),
    ("model.roi_head.bbox_head.bbox_coder.target_means", [0.1, 0, 0, 0], "target_means"),
    ("model.roi_head.bbox_head.num_classes", 1203, "num_classes"),
    ("model.roi_head.bbox_head.reg_class_agnostic", True, "reg_class_agnostic"),
    ("model.roi_head.bbox_head.loss_cls", {"type": "CrossEntropyLoss"}, "use_sigmoid"),
    ("model.backbone.depth", 101, "backbone.depth"),
    ("model.backbone.style", "caffe", "backbone.style"),
    ("model.neck.add_extra_convs", "on_input", "add_extra_convs"),
    ("model.neck.num_outs", 6, "num_outs"),
    ("img_norm_cfg.to_rgb", False, "img_norm_cfg"),
    ("model.type", "RetinaNet", "model.type"),
])
def test_each_mismatch_is_an_error_naming_the_setting(model, config, dotted, value, named):
    with pytest.raises(MMDetConfigError, match=named) as info:
        check_detector_against_config(model, changed(config, dotted, value), source="bacl.pth")
    assert str(info.value).startswith("bacl.pth: ")


def test_defaults_of_mmcv_apply_when_a_key_is_absent(model, config):
    # The reference's RoIAlign has no ``aligned`` key: mmcv's default, aligned=True.
    assert "aligned" not in config["model"]["roi_head"]["bbox_roi_extractor"]["roi_layer"]
    assert check_detector_against_config(model, config, source="x") == []
    torch.manual_seed(0)
    unaligned = reference_model("fcbl", roi_align_aligned=False)
    with pytest.raises(MMDetConfigError, match="aligned"):
        check_detector_against_config(unaligned, config, source="x")


def test_all_mismatches_are_listed_at_once(config):
    torchvision_like = reference_model("fcbl", roi_align_aligned=False, anchors="torchvision")
    with pytest.raises(MMDetConfigError) as info:
        check_detector_against_config(torchvision_like, config, source="x")
    assert "torchvision's anchors" in str(info.value) and "roi_layer.aligned" in str(info.value)


def test_test_time_settings_only_warn(model, config):
    config = changed(config, "model.test_cfg.rcnn.max_per_img", 100)
    config = changed(config, "model.test_cfg.rcnn.score_thr", 0.05)
    config["data"] = {"test": {"pipeline": [{"type": "LoadImageFromFile"},
                                            {"type": "MultiScaleFlipAug", "img_scale": (1333, 600)}]}}
    warnings = check_detector_against_config(model, config, source="x")
    assert len(warnings) == 4
    assert any("max_per_img" in w for w in warnings) and any("score_thr" in w for w in warnings)
    assert any("shorter side" in w and "600" in w for w in warnings)


def test_config_without_model(model):
    with pytest.raises(MMDetConfigError, match="no readable 'model'"):
        check_detector_against_config(model, {"optimizer": {}}, source="x")
