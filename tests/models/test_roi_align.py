import math
from collections import OrderedDict

import pytest
import torch
from torchvision.ops import MultiScaleRoIAlign

from bacl.models.roi_align import AlignedMultiScaleRoIAlign, level_scale

STRIDES = (4, 8, 16, 32)


# ---------------------------------------------------------------- slow references (mmcv 1.2.x semantics)


def bilinear(feature, y, x):
    """mmcv's / detectron2's bilinear sample of ``feature (K, H, W)`` at continuous (y, x)."""
    _, height, width = feature.shape
    if y < -1.0 or y > height or x < -1.0 or x > width:
        return torch.zeros(feature.shape[0], dtype=feature.dtype)
    y, x = max(y, 0.0), max(x, 0.0)
    y_low, x_low = int(y), int(x)
    if y_low >= height - 1:
        y_low = y_high = height - 1
        y = float(y_low)
    else:
        y_high = y_low + 1
    if x_low >= width - 1:
        x_low = x_high = width - 1
        x = float(x_low)
    else:
        x_high = x_low + 1
    ly, lx = y - y_low, x - x_low
    hy, hx = 1.0 - ly, 1.0 - lx
    return (hy * hx * feature[:, y_low, x_low] + hy * lx * feature[:, y_low, x_high]
            + ly * hx * feature[:, y_high, x_low] + ly * lx * feature[:, y_high, x_high])


def reference_roi_align(feature, box, *, scale, out=7, sampling_ratio=0, aligned=True):
    """One RoI, computed point by point: ``feature (K, H, W)``, ``box`` xyxy in image pixels."""
    offset = 0.5 if aligned else 0.0
    x1, y1, x2, y2 = (float(v) * scale - offset for v in box)
    w, h = x2 - x1, y2 - y1
    if not aligned:
        w, h = max(w, 1.0), max(h, 1.0)
    bin_w, bin_h = w / out, h / out
    grid_h = sampling_ratio if sampling_ratio > 0 else math.ceil(h / out)
    grid_w = sampling_ratio if sampling_ratio > 0 else math.ceil(w / out)
    count = max(grid_h * grid_w, 1)
    result = torch.zeros(feature.shape[0], out, out, dtype=feature.dtype)
    for ph in range(out):
        for pw in range(out):
            acc = torch.zeros(feature.shape[0], dtype=feature.dtype)
            for iy in range(grid_h):
                y = y1 + ph * bin_h + (iy + 0.5) * bin_h / grid_h
                for ix in range(grid_w):
                    x = x1 + pw * bin_w + (ix + 0.5) * bin_w / grid_w
                    acc += bilinear(feature, y, x)
            result[:, ph, pw] = acc / count
    return result


def mmdet_level(box, finest_scale=56, num_levels=4):
    """mmdetection 2.8's SingleRoIExtractor.map_roi_levels for one box."""
    scale = math.sqrt((box[2] - box[0]) * (box[3] - box[1]))
    return int(min(max(math.floor(math.log2(scale / finest_scale + 1e-6)), 0), num_levels - 1))


def pyramid(size=256, channels=3, batch=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    return OrderedDict((str(i), torch.randn(batch, channels, size // s, size // s, generator=g, dtype=torch.float64))
                       for i, s in enumerate(STRIDES))


def random_boxes(n, size, g, min_side=6.0):
    xy = torch.rand(n, 2, generator=g, dtype=torch.float64) * (size - min_side)
    wh = torch.rand(n, 2, generator=g, dtype=torch.float64) * (size - xy) * 0.9 + min_side * 0.5
    return torch.cat([xy, (xy + wh).clamp(max=size)], dim=1)


# ---------------------------------------------------------------- tests


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("sampling_ratio", [0, 2])
def test_matches_point_by_point_reference(aligned, sampling_ratio):
    size = 256
    features = pyramid(size)
    g = torch.Generator().manual_seed(1)
    boxes = [random_boxes(6, size, g), random_boxes(4, size, g)]
    boxes[0][0] = torch.tensor([10.3, 20.7, 11.1, 22.0], dtype=torch.float64)  # smaller than a cell
    boxes[1][0] = torch.tensor([-3.0, 200.0, 260.0, 256.0], dtype=torch.float64)  # past the image border
    pool = AlignedMultiScaleRoIAlign(featmap_names=list(features), output_size=7, sampling_ratio=sampling_ratio,
                                     aligned=aligned)
    result = pool(features, boxes, [(size, size)] * 2)
    assert result.shape == (10, 3, 7, 7)
    row = 0
    for image, image_boxes in enumerate(boxes):
        for box in image_boxes.tolist():
            level = mmdet_level(box)
            expected = reference_roi_align(features[str(level)][image], box, scale=1 / STRIDES[level],
                                           sampling_ratio=sampling_ratio, aligned=aligned)
            torch.testing.assert_close(result[row], expected, rtol=1e-9, atol=1e-9)
            row += 1


def test_unaligned_equals_torchvision():
    size = 192
    features = {k: v.float() for k, v in pyramid(size, channels=4).items()}
    g = torch.Generator().manual_seed(2)
    boxes = [random_boxes(20, size, g).float(), random_boxes(7, size, g).float()]
    ours = AlignedMultiScaleRoIAlign(featmap_names=list(features), output_size=7, sampling_ratio=0, aligned=False)
    stock = MultiScaleRoIAlign(list(features), 7, 0)
    assert torch.equal(ours(features, boxes, [(size, size)] * 2), stock(features, boxes, [(size, size)] * 2))
    aligned = AlignedMultiScaleRoIAlign(featmap_names=list(features), output_size=7, sampling_ratio=0)
    assert not torch.allclose(aligned(features, boxes, [(size, size)] * 2), stock(features, boxes, [(size, size)] * 2))


def test_level_rule_equals_mmdetection_finest_scale_56():
    # torchvision's LevelMapper (canonical 224 at level 4, P2..P5) against mmdetection's
    # floor(log2(scale / 56 + 1e-6)): random boxes from 4 to 1400 px and the exact boundaries.
    size = 1408
    pool = AlignedMultiScaleRoIAlign(featmap_names=["0", "1", "2", "3"], output_size=7, sampling_ratio=0)
    features = [torch.zeros(1, 1, size // s, size // s) for s in STRIDES]
    _, mapper = pool.level_mapper(features, [(size, size)])
    g = torch.Generator().manual_seed(3)
    sides = torch.exp(torch.empty(4000).uniform_(math.log(4), math.log(1400), generator=g))
    aspect = torch.exp(torch.empty(4000).uniform_(-1.5, 1.5, generator=g))
    w, h = sides * aspect.sqrt(), sides / aspect.sqrt()
    boxes = torch.stack([torch.zeros_like(w), torch.zeros_like(h), w, h], dim=1)
    edges = torch.tensor([[0.0, 0.0, s, s] for s in (56.0, 112.0, 224.0, 448.0, 896.0)])
    boxes = torch.cat([boxes, edges])
    ours = mapper([boxes]).tolist()
    theirs = [mmdet_level(b) for b in boxes.tolist()]
    assert ours == theirs
    assert set(theirs) == {0, 1, 2, 3}


def test_scales_inferred_from_the_largest_image():
    assert level_scale((200, 304), (800, 1199)) == 0.25
    assert level_scale((13, 19), (800, 1199)) == 2.0 ** -6
    pool = AlignedMultiScaleRoIAlign(featmap_names=["0", "1", "2", "3"], output_size=7, sampling_ratio=0)
    features = [torch.zeros(1, 1, 224 // s, 320 // s) for s in STRIDES]
    scales, mapper = pool.level_mapper(features, [(200, 300), (224, 310)])
    assert scales == [1 / s for s in STRIDES] and (mapper.k_min, mapper.k_max) == (2, 5)


def test_empty_boxes_and_images_without_boxes():
    features = {k: v.float() for k, v in pyramid(128).items()}
    pool = AlignedMultiScaleRoIAlign(featmap_names=list(features), output_size=7, sampling_ratio=0)
    out = pool(features, [torch.zeros(0, 4), torch.zeros(0, 4)], [(128, 128)] * 2)
    assert out.shape == (0, 3, 7, 7)
    box = torch.tensor([[8.0, 8.0, 60.0, 40.0]])
    out = pool(features, [torch.zeros(0, 4), box], [(128, 128)] * 2)
    expected = pool({k: v[1:] for k, v in features.items()}, [box], [(128, 128)])
    torch.testing.assert_close(out, expected)


def test_gradient_reaches_the_features():
    features = {k: v.float().requires_grad_() for k, v in pyramid(128, batch=1).items()}
    pool = AlignedMultiScaleRoIAlign(featmap_names=list(features), output_size=7, sampling_ratio=0)
    boxes = [torch.tensor([[4.0, 4.0, 40.0, 36.0], [0.0, 0.0, 127.0, 127.0]])]  # P2 and P3
    pool(features, boxes, [(128, 128)]).sum().backward()
    assert features["0"].grad.abs().sum() > 0 and features["1"].grad.abs().sum() > 0


def test_argument_checks():
    with pytest.raises(ValueError):
        AlignedMultiScaleRoIAlign(featmap_names=[], output_size=7, sampling_ratio=0)
    with pytest.raises(ValueError):
        AlignedMultiScaleRoIAlign(featmap_names=["0"], output_size=7, sampling_ratio=-1)
    pool = AlignedMultiScaleRoIAlign(featmap_names=["0", "9"], output_size=7, sampling_ratio=0)
    with pytest.raises(KeyError, match="9"):
        pool({"0": torch.zeros(1, 1, 8, 8)}, [torch.zeros(0, 4)], [(32, 32)])
    with pytest.raises(ValueError):
        pool.level_mapper([torch.zeros(1, 1, 8, 8)], [])
