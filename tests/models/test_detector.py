import dataclasses

import pytest
import torch
import torchvision

from bacl.losses import build_loss
from bacl.models.backbones import SmallResNetFPN, build_backbone
from bacl.models.detector import PRESETS, build_detector
from bacl.models.roi_heads import BACLRoIHeads

C = 5


def random_batch(num_images=2, size=160, boxes_per_image=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = [torch.rand(3, size, size, generator=g) for _ in range(num_images)]
    targets = []
    for _ in range(num_images):
        xy = torch.rand(boxes_per_image, 2, generator=g) * (size * 0.6)
        wh = torch.rand(boxes_per_image, 2, generator=g) * (size * 0.3) + 14
        boxes = torch.cat([xy, (xy + wh).clamp(max=size)], dim=1)
        labels = torch.randint(1, C + 1, (boxes_per_image,), generator=g)
        targets.append({"boxes": boxes, "labels": labels})
    return images, targets


def small_detector(loss_name="bce", **kwargs):
    torch.manual_seed(0)
    return build_detector(
        preset="synthetic_small", num_classes=C, loss=build_loss(loss_name, num_classes=C), **kwargs
    )


def check_detections(outputs, num_images, size):
    assert len(outputs) == num_images
    for out in outputs:
        assert set(out) == {"boxes", "labels", "scores"}
        n = len(out["scores"])
        assert out["boxes"].shape == (n, 4) and out["labels"].shape == (n,)
        assert out["labels"].dtype == torch.int64
        if n:
            assert out["labels"].min() >= 1 and out["labels"].max() <= C
            assert out["boxes"].min() >= 0 and out["boxes"].max() <= size
            assert out["scores"].min() > 0 and out["scores"].max() <= 1


@pytest.mark.parametrize("loss_name", ["bce", "softmax_ce"])
def test_small_preset_trains_and_predicts(loss_name):
    model = small_detector(loss_name)
    assert isinstance(model.roi_heads, BACLRoIHeads)
    images, targets = random_batch()
    targets[1] = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}  # no objects
    model.train()
    losses = model(images, targets)
    assert set(losses) == {"loss_objectness", "loss_rpn_box_reg", "loss_cls", "loss_box_reg"}
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert model.roi_heads.box_predictor.cls_score.weight.grad is not None
    assert model.backbone.stages[0][0].conv1.weight.grad is not None

    model.eval()
    with torch.no_grad():
        outputs = model(images)
    check_detections(outputs, 2, 160)
    assert len(outputs[0]["scores"]) <= 300


def test_batch_of_images_without_boxes_trains():
    model = small_detector().train()
    images, _ = random_batch()
    empty = [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)} for _ in images]
    losses = model(images, empty)
    assert losses["loss_box_reg"].item() == 0.0
    sum(losses.values()).backward()


def test_no_detections_when_threshold_unreachable():
    model = small_detector(score_thresh=1.0).eval()
    images, _ = random_batch(num_images=1)
    with torch.no_grad():
        (out,) = model(images)
    assert out["boxes"].shape == (0, 4) and out["labels"].shape == (0,)


def test_small_backbone_levels():
    backbone = SmallResNetFPN()
    features = backbone(torch.rand(1, 3, 160, 192))
    assert list(features) == ["0", "1", "2", "3"]
    assert [tuple(f.shape[-2:]) for f in features.values()] == [(40, 48), (20, 24), (10, 12), (5, 6)]
    assert all(f.shape[1] == backbone.out_channels for f in features.values())


def test_small_backbone_options(tmp_path):
    with pytest.raises(ValueError):
        build_backbone(name="small_fpn", pretrained="imagenet")
    with pytest.raises(ValueError):
        build_backbone(name="no_such_backbone")
    source = build_backbone(name="small_fpn")
    path = tmp_path / "small.pt"
    torch.save(source.state_dict(), path)
    loaded = build_backbone(name="small_fpn", pretrained=str(path))
    torch.testing.assert_close(loaded.fpn.layer_blocks[0][0].weight, source.fpn.layer_blocks[0][0].weight)


def test_resnet_backbone_from_local_weights_freezes_stem_and_layer1(tmp_path):
    torch.manual_seed(0)
    resnet = torchvision.models.resnet50(weights=None)
    path = tmp_path / "r50.pt"
    torch.save(resnet.state_dict(), path)
    backbone = build_backbone(name="resnet50_fpn", pretrained=str(path))
    torch.testing.assert_close(backbone.body.layer3[0].conv1.weight, resnet.layer3[0].conv1.weight)
    assert not backbone.body.conv1.weight.requires_grad
    assert not backbone.body.layer1[0].conv1.weight.requires_grad
    assert backbone.body.layer2[0].conv1.weight.requires_grad
    assert isinstance(backbone.body.bn1, torchvision.ops.misc.FrozenBatchNorm2d)
    torch.save({"fc.weight": torch.zeros(1)}, path)
    with pytest.raises(KeyError):
        build_backbone(name="resnet50_fpn", pretrained=str(path))
    with pytest.raises(FileNotFoundError):
        build_backbone(name="resnet50_fpn", pretrained=str(tmp_path / "missing.pt"))


def test_imagenet_weights_go_through_torchvision_weights_api(monkeypatch):
    # No download in tests: serve the "ImageNet" state dict from a local random ResNet-50.
    torch.manual_seed(0)
    resnet = torchvision.models.resnet50(weights=None)
    requested = []

    def fake_get_state_dict(self, *args, **kwargs):
        requested.append(self)
        return resnet.state_dict()

    monkeypatch.setattr(torchvision.models.WeightsEnum, "get_state_dict", fake_get_state_dict)
    backbone = build_backbone(name="resnet50_fpn", pretrained="imagenet")
    assert requested == [torchvision.models.ResNet50_Weights.IMAGENET1K_V1]
    torch.testing.assert_close(backbone.body.layer4[0].conv2.weight, resnet.layer4[0].conv2.weight)
    assert not backbone.body.layer1[0].conv1.weight.requires_grad
    assert backbone.body.layer2[0].conv1.weight.requires_grad


def test_lvis_settings_of_r50_preset():
    model = build_detector(preset="r50_fpn", num_classes=C, loss=build_loss("bce", num_classes=C))
    assert model.transform.min_size == (640, 672, 704, 736, 768, 800)
    assert model.transform.max_size == 1333
    assert model.roi_heads.detections_per_img == 300
    assert model.roi_heads.score_thresh == 1e-4
    assert model.roi_heads.nms_thresh == 0.5
    assert model.roi_heads.fg_bg_sampler.batch_size_per_image == 512
    assert model.roi_heads.box_head.fc7.out_features == 1024
    assert model.rpn._post_nms_top_n == {"training": 2000, "testing": 1000}
    assert model.backbone.out_channels == 256
    # Random init trains everything, with ordinary BatchNorm.
    assert all(p.requires_grad for p in model.backbone.parameters())
    # At test time the transform resizes the shorter side to 800.
    model.eval()
    image_list, _ = model.transform([torch.rand(3, 60, 90)])
    assert min(image_list.image_sizes[0]) == 800


def test_r101_preset_is_r50_with_deeper_backbone():
    # Building ResNet-101 costs seconds; the r50 tests cover every other part.
    assert PRESETS["r101_fpn"].backbone == "resnet101_fpn"
    assert dataclasses.replace(PRESETS["r101_fpn"], backbone="resnet50_fpn") == PRESETS["r50_fpn"]


def test_r50_preset_train_step_at_tiny_size():
    torch.manual_seed(0)
    model = build_detector(
        preset="r50_fpn", num_classes=C, loss=build_loss("bce", num_classes=C), min_size=64, max_size=64
    )
    images, targets = random_batch(num_images=1, size=64, boxes_per_image=1)
    model.train()
    losses = model(images, targets)
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    model.eval()
    with torch.no_grad():
        check_detections(model(images), 1, 64)


def test_argument_checks():
    with pytest.raises(ValueError):
        build_detector(preset="nope", num_classes=C, loss=build_loss("bce", num_classes=C))
    with pytest.raises(ValueError):
        build_detector(preset="synthetic_small", num_classes=C, loss=build_loss("bce", num_classes=C + 1))
    assert set(PRESETS) == {"synthetic_small", "r50_fpn", "r101_fpn"}


def test_overrides_reach_the_parts():
    model = small_detector(
        min_size=(128, 160), max_size=200, box_batch_size_per_image=64, rpn_post_nms_top_n_train=300
    )
    assert model.transform.min_size == (128, 160) and model.transform.max_size == 200
    assert model.roi_heads.fg_bg_sampler.batch_size_per_image == 64
    assert model.rpn._post_nms_top_n["training"] == 300
    softmax_model = small_detector("softmax_ce")
    assert softmax_model.roi_heads.box_predictor.cls_score.bias.abs().max() == 0


# ---------------------------------------------------------------- the reference's settings


def test_defaults_keep_torchvisions_parts():
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.backbone_utils import BackboneWithFPN
    from torchvision.models.detection.rpn import RegionProposalNetwork
    from torchvision.ops import MultiScaleRoIAlign

    for model in (small_detector(), build_detector(preset="r50_fpn", num_classes=C,
                                                   loss=build_loss("bce", num_classes=C))):
        assert type(model.roi_heads.box_roi_pool) is MultiScaleRoIAlign
        assert type(model.rpn.anchor_generator) is AnchorGenerator
        assert type(model.rpn) is RegionProposalNetwork
    assert type(model.backbone) is BackboneWithFPN


def test_todays_settings_spelled_out_build_the_same_model():
    default = small_detector()
    explicit = small_detector(roi_align_aligned=False, backbone_norm=None, rpn_box_loss="smooth_l1",
                              box_head_init="torchvision", fpn_init="torchvision", anchors="torchvision")
    assert default.state_dict().keys() == explicit.state_dict().keys()
    assert all(torch.equal(v, explicit.state_dict()[k]) for k, v in default.state_dict().items())


def test_reference_settings_build_the_reference_parts():
    import inspect
    import math

    from bacl.models.anchors import FixedStrideAnchorGenerator
    from bacl.models.backbones import NormEvalBackboneWithFPN, norm_eval_layers
    from bacl.models.detector import REFERENCE_SETTINGS
    from bacl.models.roi_align import AlignedMultiScaleRoIAlign
    from bacl.models.rpn import BoxLossRegionProposalNetwork

    assert set(REFERENCE_SETTINGS) <= set(inspect.signature(build_detector).parameters)
    torch.manual_seed(0)
    model = build_detector(preset="r50_fpn", num_classes=C, loss=build_loss("bce", num_classes=C),
                           min_size=64, max_size=64, **REFERENCE_SETTINGS)
    pool = model.roi_heads.box_roi_pool
    assert isinstance(pool, AlignedMultiScaleRoIAlign) and pool.aligned and pool.sampling_ratio == 0
    assert isinstance(model.rpn.anchor_generator, FixedStrideAnchorGenerator)
    assert model.rpn.anchor_generator.strides == (4, 8, 16, 32, 64)
    assert isinstance(model.rpn, BoxLossRegionProposalNetwork) and model.rpn.box_loss == "l1"
    assert isinstance(model.backbone, NormEvalBackboneWithFPN)
    fc6 = model.roi_heads.box_head.fc6  # 12544 -> 1024
    assert not fc6.bias.any() and not model.roi_heads.box_head.fc7.bias.any()
    assert fc6.weight.abs().max() <= math.sqrt(6 / (12544 + 1024))
    assert fc6.weight.abs().max() > 1.5 / math.sqrt(12544)  # beyond nn.Linear's default bound
    assert not any(m.bias.any() for m in model.backbone.fpn.modules() if isinstance(m, torch.nn.Conv2d))

    images, targets = random_batch(num_images=1, size=64, boxes_per_image=1)
    model.train()
    assert not any(m.training for m in norm_eval_layers(model))
    before = {k: v.clone() for k, v in model.backbone.body.state_dict().items()}
    losses = model(images, targets)
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert all(torch.equal(v, before[k]) for k, v in model.backbone.body.state_dict().items())
    assert model.backbone.body.layer3[0].bn1.weight.grad is not None
    model.eval()
    with torch.no_grad():
        check_detections(model(images), 1, 64)


@pytest.mark.parametrize("argument", ["backbone_norm", "rpn_box_loss", "box_head_init", "fpn_init", "anchors"])
def test_unknown_setting_values(argument):
    with pytest.raises(ValueError, match=argument):
        small_detector(**{argument: "nonsense"})
