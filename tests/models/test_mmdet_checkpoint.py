import zipfile

import numpy as np
import pytest
import torch

from bacl.checkpoint import load_checkpoint
from bacl.errors import BaclError, MissingFileError
from bacl.models.mmdet_checkpoint import (TRAINING_ONLY_KEYS, MMDetCheckpointError, checkpoint_depth,
                                          convert_mmdet_checkpoint, convert_mmdet_state_dict, load_mmdet_checkpoint)
from bacl.params import load_params

from .mmdet_reference import C, mmdet_faster_rcnn_shapes, random_state, reference_model, save_mmdet_checkpoint


# ---------------------------------------------------------------- the state dict


def test_mmdet_layout_converts_completely_and_loads_strictly():
    shapes = mmdet_faster_rcnn_shapes(fcbl=True, fhm=True)
    state = random_state(shapes)
    converted = convert_mmdet_state_dict(state, num_classes=C, class_agnostic_bbox=False)
    model = reference_model("fcbl")
    target = model.state_dict()
    assert set(converted) == set(target)
    assert all(converted[k].shape == target[k].shape for k in target)
    # Every source tensor except FHM's statistics lands in exactly one target key, unchanged.
    used = {id(v) for v in converted.values()}
    assert {k for k, v in state.items() if id(v) not in used} == set(TRAINING_ONLY_KEYS)
    assert len(used) == len(converted)
    pairs = {
        "backbone.conv1.weight": "backbone.body.conv1.weight",
        "backbone.layer3.5.conv2.weight": "backbone.body.layer3.5.conv2.weight",
        "backbone.layer4.0.downsample.1.running_var": "backbone.body.layer4.0.downsample.1.running_var",
        "neck.lateral_convs.2.conv.weight": "backbone.fpn.inner_blocks.2.0.weight",
        "neck.fpn_convs.3.conv.bias": "backbone.fpn.layer_blocks.3.0.bias",
        "rpn_head.rpn_conv.weight": "rpn.head.conv.0.0.weight",
        "rpn_head.rpn_cls.weight": "rpn.head.cls_logits.weight",
        "rpn_head.rpn_reg.bias": "rpn.head.bbox_pred.bias",
        "roi_head.bbox_head.shared_fcs.0.weight": "roi_heads.box_head.fc6.weight",
        "roi_head.bbox_head.shared_fcs.1.bias": "roi_heads.box_head.fc7.bias",
        "roi_head.bbox_head.fc_cls.weight": "roi_heads.box_predictor.cls_score.weight",
        "roi_head.bbox_head.fc_reg.weight": "roi_heads.box_predictor.bbox_pred.weight",
        "roi_head.bbox_head.loss_cls.cm_numerator": "roi_heads.classification_loss.cm_num",
        "roi_head.bbox_head.loss_cls.num_gt": "roi_heads.classification_loss.num_gt",
    }
    for src, dst in pairs.items():
        assert converted[dst] is state[src], (src, dst)
    model.load_state_dict({k: converted[k].to(target[k].dtype) for k in target}, strict=True)
    torch.testing.assert_close(model.roi_heads.classification_loss.cm_num,
                               state["roi_head.bbox_head.loss_cls.cm_numerator"].double())


def test_class_agnostic_regression_and_no_loss_statistics():
    state = random_state(mmdet_faster_rcnn_shapes(agnostic=True))
    converted = convert_mmdet_state_dict(state, num_classes=C, class_agnostic_bbox=True)
    assert converted["roi_heads.box_predictor.bbox_pred.weight"].shape == (4, 1024)
    assert not any(k.startswith("roi_heads.classification_loss.") for k in converted)
    model = reference_model("softmax_ce", class_agnostic_bbox=True)
    assert set(converted) == set(model.state_dict())


def test_frozen_batchnorm_target_drops_counters():
    state = random_state(mmdet_faster_rcnn_shapes())
    converted = convert_mmdet_state_dict(state, num_classes=C, class_agnostic_bbox=False, batchnorm_counters=False)
    assert not any(k.endswith("num_batches_tracked") for k in converted)
    model = reference_model("bce", backbone_norm="frozen")
    assert set(converted) == set(model.state_dict())


def test_unknown_and_missing_keys_are_named():
    state = random_state(mmdet_faster_rcnn_shapes())
    state["roi_head.mask_head.conv_logits.weight"] = torch.zeros(1)
    with pytest.raises(MMDetCheckpointError, match="roi_head.mask_head.conv_logits.weight"):
        convert_mmdet_state_dict(state, num_classes=C, class_agnostic_bbox=False, source="x.pth")
    state = random_state(mmdet_faster_rcnn_shapes())
    del state["neck.fpn_convs.1.conv.weight"]
    with pytest.raises(MMDetCheckpointError, match=r"x\.pth.*missing.*neck\.fpn_convs\.1\.conv\.weight"):
        convert_mmdet_state_dict(state, num_classes=C, class_agnostic_bbox=False, source="x.pth")
    state = random_state(mmdet_faster_rcnn_shapes(fcbl=True))
    del state["roi_head.bbox_head.loss_cls.num_gt"]
    with pytest.raises(MMDetCheckpointError, match="FCBL statistics incomplete"):
        convert_mmdet_state_dict(state, num_classes=C, class_agnostic_bbox=False)


def test_classifier_shapes_must_fit_the_class_count():
    state = random_state(mmdet_faster_rcnn_shapes(num_classes=C))
    with pytest.raises(MMDetCheckpointError, match=r"fc_cls.weight has 6 rows, expected 8"):
        convert_mmdet_state_dict(state, num_classes=7, class_agnostic_bbox=False)
    with pytest.raises(MMDetCheckpointError, match=r"fc_reg.weight has 20 rows, expected 4"):
        convert_mmdet_state_dict(state, num_classes=C, class_agnostic_bbox=True)


def test_depth_is_read_from_layer3():
    tiny = {k: torch.zeros(0) for k in mmdet_faster_rcnn_shapes(blocks=(3, 4, 23, 3))}
    assert checkpoint_depth(tiny) == 101
    assert checkpoint_depth({k: torch.zeros(0) for k in mmdet_faster_rcnn_shapes()}) == 50
    with pytest.raises(MMDetCheckpointError, match="layer3 has 2 blocks"):
        checkpoint_depth({k: torch.zeros(0) for k in mmdet_faster_rcnn_shapes(blocks=(1, 1, 2, 1))}, source="f")


# ---------------------------------------------------------------- reading files safely


def test_load_reads_meta_config_and_numpy_values(tmp_path):
    state = random_state(mmdet_faster_rcnn_shapes())
    path = save_mmdet_checkpoint(tmp_path / "m.pth", state,
                                 extra_meta={"hook_msgs": {"best_score": np.float64(0.261), "arr": np.arange(3)}})
    ckpt = load_mmdet_checkpoint(path)
    assert set(ckpt.state_dict) == set(state)
    assert ckpt.config["model"]["roi_head"]["bbox_head"]["num_classes"] == C
    assert ckpt.config["img_norm_cfg"]["to_rgb"] is True
    assert float(ckpt.meta["hook_msgs"]["best_score"]) == 0.261


def _rename_pickle_globals(path, old: bytes, new: bytes):
    """Rewrite the pickle inside a torch zip file (protocol 2 names globals as text lines)."""
    with zipfile.ZipFile(path) as z:
        members = {info.filename: z.read(info.filename) for info in z.infolist()}
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as z:
        for name, data in members.items():
            z.writestr(name, data.replace(old, new) if name.endswith("data.pkl") else data)


def test_numpy1_spelling_of_numpy_globals_is_accepted(tmp_path):
    state = random_state(mmdet_faster_rcnn_shapes())
    path = save_mmdet_checkpoint(tmp_path / "m.pth", state, extra_meta={"best": np.float64(0.5)})
    _rename_pickle_globals(path, b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert b"numpy.core.multiarray" in zipfile.ZipFile(path).read(
        next(n for n in zipfile.ZipFile(path).namelist() if n.endswith("data.pkl")))
    assert float(load_mmdet_checkpoint(path).meta["best"]) == 0.5


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pickled_code_is_refused_and_never_run(tmp_path):
    marker = tmp_path / "ran"
    state = random_state(mmdet_faster_rcnn_shapes())
    path = save_mmdet_checkpoint(tmp_path / "evil.pth", state, extra_meta={"x": _Payload(marker)})
    assert not marker.exists()
    with pytest.raises(MMDetCheckpointError, match=r"evil\.pth: refused"):
        load_mmdet_checkpoint(path)
    assert not marker.exists()


def test_unreadable_files_give_clear_errors(tmp_path):
    with pytest.raises(MissingFileError, match="missing.pth"):
        load_mmdet_checkpoint(tmp_path / "missing.pth")
    broken = tmp_path / "broken.pth"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(MMDetCheckpointError, match="broken.pth: cannot read"):
        load_mmdet_checkpoint(broken)
    listed = tmp_path / "list.pth"
    torch.save([1, 2], listed)
    with pytest.raises(MMDetCheckpointError, match="not a checkpoint"):
        load_mmdet_checkpoint(listed)
    assert issubclass(MMDetCheckpointError, BaclError) and issubclass(MMDetCheckpointError, ValueError)


def test_bare_state_dict_with_ddp_prefix(tmp_path):
    state = random_state(mmdet_faster_rcnn_shapes())
    path = tmp_path / "bare.pth"
    torch.save({f"module.{k}": v for k, v in state.items()}, path)
    ckpt = load_mmdet_checkpoint(path)
    assert set(ckpt.state_dict) == set(state) and ckpt.config is None and ckpt.meta == {}


# ---------------------------------------------------------------- whole checkpoints


def lvis_like_params(loss="fcbl"):
    return load_params(None, ["model.preset=r50_fpn", "model.pretrained_backbone=null",
                              "classifier.min_sizes=[64]", "classifier.max_size=96", "evaluate.min_size=64",
                              "evaluate.max_size=96", f"classifier.loss={loss}",
                              f"classifier.fhm.enabled={loss == 'fcbl'}"]).to_dict()


def test_convert_checkpoint_end_to_end(tmp_path):
    state = random_state(mmdet_faster_rcnn_shapes(fcbl=True, fhm=True))
    src = save_mmdet_checkpoint(tmp_path / "bacl_r50.pth", state)
    out = tmp_path / "converted.pt"
    summary = convert_mmdet_checkpoint(src, out, build_model=lambda c: reference_model("fcbl", num_classes=c),
                                       params=lvis_like_params(), stage="classifier",
                                       category_names=[f"cat{i}" for i in range(C)])
    assert summary.num_classes == C and summary.depth == 50 and not summary.class_agnostic_bbox
    assert summary.config_checked and summary.dropped == TRAINING_ONLY_KEYS
    assert summary.warnings == ()  # the reference model's test settings are the config's
    saved = load_checkpoint(out)
    assert saved["num_classes"] == C and saved["stage"] == "classifier"
    assert saved["converted_from"]["mmdet_version"] == "2.8.0abcdef"
    assert saved["model"]["roi_heads.classification_loss.cm_num"].dtype == torch.float64
    torch.testing.assert_close(saved["model"]["rpn.head.cls_logits.weight"], state["rpn_head.rpn_cls.weight"])
    assert "dropped (training-only)" in summary.describe()

    # bacl evaluate's loader rebuilds the model from the saved parameters and loads every tensor.
    from bacl.evaluation.inference import load_trained_model

    model, _, num_classes = load_trained_model(out, device=torch.device("cpu"))
    assert num_classes == C
    torch.testing.assert_close(model.roi_heads.box_predictor.cls_score.bias, state["roi_head.bbox_head.fc_cls.bias"])


def test_convert_checks_the_model_against_the_config(tmp_path):
    state = random_state(mmdet_faster_rcnn_shapes(fcbl=True))
    src = save_mmdet_checkpoint(tmp_path / "bacl.pth", state)
    params = lvis_like_params()
    with pytest.raises(MMDetCheckpointError, match=r"(?s)bacl\.pth.*roi_layer\.aligned") as info:
        convert_mmdet_checkpoint(src, tmp_path / "o.pt", params=params, stage="classifier",
                                 build_model=lambda c: reference_model(num_classes=c, roi_align_aligned=False,
                                                                       anchors="torchvision"))
    assert "torchvision's anchors" in str(info.value)
    assert not (tmp_path / "o.pt").exists()
    # A softmax baseline model cannot take a sigmoid checkpoint (its scores would be wrong).
    with pytest.raises(MMDetCheckpointError, match="use_sigmoid"):
        convert_mmdet_checkpoint(src, tmp_path / "o.pt", params=params, stage="representation",
                                 build_model=lambda c: reference_model("softmax_ce", num_classes=c))


def test_convert_without_config_checks_mmdetection_defaults(tmp_path):
    state = random_state(mmdet_faster_rcnn_shapes())
    src = save_mmdet_checkpoint(tmp_path / "baseline.pth", state, config=None)
    summary = convert_mmdet_checkpoint(src, tmp_path / "o.pt", params=lvis_like_params("bce"), stage="representation",
                                       build_model=lambda c: reference_model("softmax_ce", num_classes=c))
    assert not summary.config_checked and "no readable configuration" in summary.warnings[0]
    with pytest.raises(MMDetCheckpointError, match="anchors"):
        convert_mmdet_checkpoint(src, tmp_path / "o2.pt", params=lvis_like_params("bce"), stage="representation",
                                 build_model=lambda c: reference_model("softmax_ce", num_classes=c,
                                                                       anchors="torchvision"))


def test_convert_rejects_mismatched_loss_statistics_classes_and_names(tmp_path):
    fcbl_src = save_mmdet_checkpoint(tmp_path / "bacl.pth", random_state(mmdet_faster_rcnn_shapes(fcbl=True)))
    with pytest.raises(MMDetCheckpointError, match="carries FCBL statistics"):
        convert_mmdet_checkpoint(fcbl_src, tmp_path / "o.pt", params=lvis_like_params("bce"), stage="classifier",
                                 build_model=lambda c: reference_model("bce", num_classes=c))
    plain = save_mmdet_checkpoint(tmp_path / "plain.pth", random_state(mmdet_faster_rcnn_shapes()))
    with pytest.raises(MMDetCheckpointError, match="statistics the checkpoint does not have"):
        convert_mmdet_checkpoint(plain, tmp_path / "o.pt", params=lvis_like_params(), stage="classifier",
                                 build_model=lambda c: reference_model("fcbl", num_classes=c))
    params = lvis_like_params()
    params["data"]["dataset"] = "lvis_v1"
    with pytest.raises(MMDetCheckpointError, match="5 classes, data.dataset 'lvis_v1' has 1203"):
        convert_mmdet_checkpoint(fcbl_src, tmp_path / "o.pt", params=params, stage="classifier",
                                 build_model=lambda c: reference_model(num_classes=c))
    with pytest.raises(MMDetCheckpointError, match="class 2 is 'cat2' in the checkpoint and 'dog'"):
        convert_mmdet_checkpoint(fcbl_src, tmp_path / "o.pt", params=lvis_like_params(), stage="classifier",
                                 build_model=lambda c: reference_model(num_classes=c),
                                 category_names=["cat0", "cat1", "dog", "cat3", "cat4"])
    assert not (tmp_path / "o.pt").exists()


def test_convert_rejects_a_backbone_of_another_depth(tmp_path):
    # Key names of a ResNet-101 checkpoint are enough: the depth is checked before any tensor is used.
    state = {k: torch.zeros(1) for k in mmdet_faster_rcnn_shapes(blocks=(3, 4, 23, 3))}
    state["roi_head.bbox_head.fc_cls.weight"] = torch.zeros(C + 1, 1)
    state["roi_head.bbox_head.fc_reg.weight"] = torch.zeros(4 * C, 1)
    src = save_mmdet_checkpoint(tmp_path / "r101.pth", state)
    with pytest.raises(MMDetCheckpointError, match="ResNet-101; the parameters build ResNet-50"):
        convert_mmdet_checkpoint(src, tmp_path / "o.pt", params=lvis_like_params(), stage="classifier",
                                 build_model=lambda c: reference_model(num_classes=c))
