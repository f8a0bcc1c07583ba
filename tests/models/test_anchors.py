import pytest
import torch
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.rpn import concat_box_prediction_layers

from bacl.losses import build_loss
from bacl.models.anchors import FixedStrideAnchorGenerator
from bacl.models.detector import PRESETS, build_detector

STRIDES = (4, 8, 16, 32, 64)


# ---------------------------------------------------------------- mmdetection 2.x, written out
# AnchorGenerator(strides=[4, 8, 16, 32, 64], ratios=[0.5, 1.0, 2.0], scales=[8]) with its
# defaults: base_sizes = strides, scale_major=True, center_offset=0; float32 throughout.


def mmdet_base_anchors(base_size, ratios=(0.5, 1.0, 2.0), scales=(8.0,)):
    ratios, scales = torch.tensor(ratios), torch.tensor(scales)
    h_ratios = torch.sqrt(ratios)
    w_ratios = 1 / h_ratios
    ws = (base_size * w_ratios[:, None] * scales[None, :]).view(-1)
    hs = (base_size * h_ratios[:, None] * scales[None, :]).view(-1)
    x_center = y_center = 0.0 * base_size
    return torch.stack([x_center - 0.5 * ws, y_center - 0.5 * hs, x_center + 0.5 * ws, y_center + 0.5 * hs], dim=-1)


def mmdet_grid_anchors(featmap_sizes, strides=STRIDES):
    levels = []
    for (feat_h, feat_w), stride in zip(featmap_sizes, strides):
        base = mmdet_base_anchors(stride)
        shift_x = torch.arange(0, feat_w) * stride
        shift_y = torch.arange(0, feat_h) * stride
        xx = shift_x.repeat(len(shift_y))
        yy = shift_y.view(-1, 1).repeat(1, len(shift_x)).view(-1)
        shifts = torch.stack([xx, yy, xx, yy], dim=-1).type_as(base)
        levels.append((base[None, :, :] + shifts[:, None, :]).view(-1, 4))
    return levels


def featmap_sizes_of(padded_h, padded_w):
    """P2-P5 of a /32-padded image, and P6 = max_pool2d(P5, 1, stride=2)."""
    sizes = [(padded_h // s, padded_w // s) for s in STRIDES[:4]]
    sizes.append(((sizes[-1][0] - 1) // 2 + 1, (sizes[-1][1] - 1) // 2 + 1))
    return sizes


def run_generator(generator, padded_h, padded_w, image_size):
    sizes = featmap_sizes_of(padded_h, padded_w)
    images = ImageList(torch.zeros(1, 3, padded_h, padded_w), [image_size])
    features = [torch.zeros(1, 1, h, w) for h, w in sizes]
    (anchors,) = generator(images, features)
    return anchors, sizes


# ---------------------------------------------------------------- tests


def test_r50_preset_anchors_equal_mmdetection():
    torch.manual_seed(0)
    model = build_detector(preset="r50_fpn", num_classes=3, loss=build_loss("bce", num_classes=3), anchors="mmdet")
    generator = model.rpn.anchor_generator
    assert isinstance(generator, FixedStrideAnchorGenerator) and generator.strides == STRIDES
    # LVIS test size: 800 x 1199 padded to 800 x 1216; P5 has 25 rows, so P6 has 13.
    anchors, sizes = run_generator(generator, 800, 1216, (800, 1199))
    assert sizes[-1] == (13, 38 // 2)
    expected = torch.cat(mmdet_grid_anchors(sizes))
    assert anchors.dtype == torch.float32 and anchors.shape == expected.shape
    assert torch.equal(anchors, expected)


def test_torchvision_anchors_differ_where_documented():
    torch.manual_seed(0)
    model = build_detector(preset="r50_fpn", num_classes=3, loss=build_loss("bce", num_classes=3))
    anchors, sizes = run_generator(model.rpn.anchor_generator, 800, 1216, (800, 1199))
    expected = mmdet_grid_anchors(sizes)
    levels = anchors.split([len(e) for e in expected])
    # Rounded base anchors: size 32 at ratio 0.5 is 45.25 x 22.63 in mmdetection.
    assert levels[0][0].tolist() == [-23.0, -11.0, 23.0, 11.0]
    assert not torch.equal(levels[0], expected[0])
    # P6 rows are 800 // 13 = 61 px apart instead of 64.
    per_row = sizes[-1][1] * 3
    assert float(levels[-1][per_row, 1] - levels[-1][0, 1]) == 61.0
    assert float(expected[-1][per_row, 1] - expected[-1][0, 1]) == 64.0


def test_order_is_cell_major_with_ratios_inside_a_cell():
    generator = FixedStrideAnchorGenerator(sizes=((32,),), aspect_ratios=((0.5, 1.0, 2.0),), strides=(4,))
    images = ImageList(torch.zeros(1, 3, 12, 16), [(12, 16)])
    (anchors,) = generator(images, [torch.zeros(1, 1, 3, 4)])
    base = mmdet_base_anchors(4)
    row = 0
    for y in range(3):  # rows outer, columns inner, the three ratios innermost
        for x in range(4):
            for a in range(3):
                shift = torch.tensor([4.0 * x, 4.0 * y, 4.0 * x, 4.0 * y])
                assert torch.equal(anchors[row], base[a] + shift)
                row += 1
    aspect = (anchors[:3, 3] - anchors[:3, 1]) / (anchors[:3, 2] - anchors[:3, 0])
    torch.testing.assert_close(aspect, torch.tensor([0.5, 1.0, 2.0]))  # h / w follows the ratio order


def test_rpn_outputs_flatten_in_the_anchor_order_of_mmdetection():
    # mmdetection flattens rpn_cls (A, H, W) and rpn_reg (4A, H, W) per level with
    # permute(1, 2, 0); torchvision's concat_box_prediction_layers must give the same rows.
    g = torch.Generator().manual_seed(0)
    sizes = [(5, 7), (3, 4), (2, 2)]
    objectness = [torch.randn(1, 3, h, w, generator=g) for h, w in sizes]
    deltas = [torch.randn(1, 12, h, w, generator=g) for h, w in sizes]
    ours_obj, ours_deltas = concat_box_prediction_layers(objectness, deltas)
    theirs_obj = torch.cat([o[0].permute(1, 2, 0).reshape(-1) for o in objectness])
    theirs_deltas = torch.cat([d[0].permute(1, 2, 0).reshape(-1, 4) for d in deltas])
    assert torch.equal(ours_obj.flatten(), theirs_obj)
    assert torch.equal(ours_deltas, theirs_deltas)


def test_one_anchor_set_per_image_and_argument_checks():
    preset = PRESETS["synthetic_small"]
    generator = FixedStrideAnchorGenerator(sizes=preset.anchor_sizes, aspect_ratios=((0.5, 1.0, 2.0),) * 4,
                                           strides=preset.anchor_strides)
    images = ImageList(torch.zeros(2, 3, 64, 96), [(64, 90), (60, 96)])
    features = [torch.zeros(2, 1, 64 // s, 96 // s) for s in preset.anchor_strides]
    first, second = generator(images, features)
    assert torch.equal(first, second) and first.shape == (3 * sum(64 // s * 96 // s for s in (4, 8, 16, 32)), 4)
    with pytest.raises(ValueError, match="feature maps"):
        generator(images, features[:3])
    with pytest.raises(ValueError):
        FixedStrideAnchorGenerator(sizes=((32,),), aspect_ratios=((1.0,),), strides=(4, 8))
    with pytest.raises(ValueError):
        FixedStrideAnchorGenerator(sizes=((32,),), aspect_ratios=((1.0,),), strides=(0,))
    with pytest.raises(ValueError):
        FixedStrideAnchorGenerator(sizes=((0,),), aspect_ratios=((1.0,),), strides=(4,))
