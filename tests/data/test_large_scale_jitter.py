"""Large-scale jitter: sizes, boxes and masks after each step, on hand-made images."""

from __future__ import annotations

import pytest
import torch

from bacl.data.large_scale_jitter import PadTo, RandomCrop, ScaleJitter, large_scale_jitter
from bacl.data.transforms import TransformInputError


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def coordinate_image(height: int, width: int) -> torch.Tensor:
    """Channel 0 holds the row, channel 1 the column: a crop's offsets can be read off it."""
    ys = torch.arange(height, dtype=torch.float32)[:, None].expand(height, width)
    xs = torch.arange(width, dtype=torch.float32)[None, :].expand(height, width)
    return torch.stack([ys, xs, torch.zeros(height, width)])


def rectangles(height: int, width: int, boxes: list[list[int]], labels: list[int] | None = None):
    """An image with value 1 inside each integer box, its masks and target."""
    image = torch.zeros(3, height, width)
    masks = torch.zeros(len(boxes), height, width, dtype=torch.bool)
    for k, (x1, y1, x2, y2) in enumerate(boxes):
        image[:, y1:y2, x1:x2] = 1.0
        masks[k, y1:y2, x1:x2] = True
    target = {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor(labels or list(range(1, len(boxes) + 1)), dtype=torch.int64),
        "image_id": 5,
        "orig_size": torch.tensor([height, width]),
        "masks": masks,
    }
    return image, target


def assert_masks_on_objects(image: torch.Tensor, masks: torch.Tensor) -> None:
    """Masks sit on the value-1 objects of a :func:`rectangles` image after resizing.

    Bilinear (``align_corners=False``) and centre-aligned nearest agree: the input
    pixel a mask pixel copies has weight >= 1/2 along each axis in the bilinear value,
    so >= 1/4 in all; the same holds for background pixels.
    """
    inside = masks.any(0)
    assert (image[0][inside] >= 0.25).all() and (image[0][~inside] <= 0.75).all()
    assert inside.any() == (image[0] > 0.75).any()


# ---------------------------------------------------------------- ScaleJitter

def test_scale_jitter_fixed_ratio_sizes_and_boxes():
    image = torch.rand(3, 50, 100)
    target = {"boxes": torch.tensor([[10.0, 5.0, 30.0, 45.0]]), "labels": torch.tensor([3])}
    out_image, out = ScaleJitter(target_size=200, scale_range=(1.0, 1.0))(image, target, gen())
    assert out_image.shape == (3, 100, 200)
    assert out["boxes"].tolist() == [[20.0, 10.0, 60.0, 90.0]]
    assert out["labels"].tolist() == [3]
    assert target["boxes"].tolist() == [[10.0, 5.0, 30.0, 45.0]]  # input left alone


def test_scale_jitter_draws_the_ratio_from_the_generator():
    image = torch.rand(3, 60, 40)  # portrait: the height is the longer side
    target = {"boxes": torch.tensor([[0.0, 0.0, 40.0, 60.0]]), "labels": torch.tensor([1])}
    out_image, out = ScaleJitter(target_size=100, scale_range=(0.8, 1.25))(image, target, gen(7))
    ratio = 0.8 + 0.45 * torch.rand((), generator=gen(7), dtype=torch.float64).item()
    longer = int(100 * ratio)
    factor = longer / 60
    assert out_image.shape == (3, longer, int(40 * factor + 0.5))
    h, w = out_image.shape[1:]
    # The box of the whole image is the whole resized image.
    assert out["boxes"].tolist() == [[0.0, 0.0, float(w), float(h)]]


def test_scale_jitter_resizes_masks_with_the_pixels():
    image, target = rectangles(30, 40, [[3, 4, 17, 21], [20, 0, 40, 9]])
    out_image, out = ScaleJitter(target_size=90, scale_range=(0.8, 1.25))(image, target, gen(3))
    assert out["masks"].shape == (2, *out_image.shape[1:]) and out["masks"].dtype == torch.bool
    assert_masks_on_objects(out_image, out["masks"])


def test_scale_jitter_with_no_boxes_and_downscaling():
    image = torch.rand(3, 300, 200)
    target = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64),
              "masks": torch.zeros(0, 300, 200, dtype=torch.bool)}
    out_image, out = ScaleJitter(target_size=64, scale_range=(1.0, 1.0))(image, target, gen())
    assert out_image.shape == (3, 64, 43)
    assert out["boxes"].shape == (0, 4) and out["masks"].shape == (0, 64, 43)
    assert 0.0 <= out_image.min() and out_image.max() <= 1.0


# ---------------------------------------------------------------- RandomCrop

def test_crop_of_a_larger_image_shifts_clips_and_drops_boxes():
    image = coordinate_image(20, 30)
    boxes = [[2.0, 3.0, 28.0, 18.0],   # wide: clipped on both sides
             [0.0, 0.0, 1.0, 1.0],     # at the corner: dropped unless the crop starts there
             [12.0, 8.0, 14.5, 9.5]]   # well inside
    target = {"boxes": torch.tensor(boxes), "labels": torch.tensor([1, 2, 3])}
    for seed in range(20):
        out_image, out = RandomCrop(size=10)(image, target, gen(seed))
        assert out_image.shape == (3, 10, 10)
        top, left = int(out_image[0, 0, 0]), int(out_image[1, 0, 0])
        assert 0 <= top <= 10 and 0 <= left <= 20
        expected, labels = [], []
        for box, label in zip(boxes, [1, 2, 3]):
            x1, y1, x2, y2 = (min(max(v - o, 0.0), 10.0)
                              for v, o in zip(box, (left, top, left, top)))
            if x2 - x1 > 0.01 and y2 - y1 > 0.01:
                expected.append([x1, y1, x2, y2])
                labels.append(label)
        assert out["boxes"].tolist() == expected
        assert out["labels"].tolist() == labels


def test_crop_offsets_cover_the_range_and_follow_the_seed():
    image = coordinate_image(12, 12)
    target = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    crop = RandomCrop(size=10)
    seen = {(int(crop(image, target, gen(s))[0][0, 0, 0]), int(crop(image, target, gen(s))[0][1, 0, 0]))
            for s in range(200)}
    assert seen == {(t, l) for t in range(3) for l in range(3)}
    reference = gen(11)
    top = int(torch.randint(0, 3, (), generator=reference))
    left = int(torch.randint(0, 3, (), generator=reference))
    out_image, _ = crop(image, target, gen(11))
    assert (int(out_image[0, 0, 0]), int(out_image[1, 0, 0])) == (top, left)


def test_crop_of_a_smaller_image_keeps_it_but_still_draws():
    image = torch.rand(3, 6, 8)
    target = {"boxes": torch.tensor([[1.0, 1.0, 3.0, 4.0]]), "labels": torch.tensor([2])}
    g = gen(4)
    out_image, out = RandomCrop(size=10)(image, target, g)
    assert torch.equal(out_image, image) and out["boxes"].tolist() == [[1.0, 1.0, 3.0, 4.0]]
    reference = gen(4)
    torch.randint(0, 1, (), generator=reference)
    torch.randint(0, 1, (), generator=reference)
    assert torch.equal(torch.rand(3, generator=g), torch.rand(3, generator=reference))


def test_crop_with_masks_recomputes_boxes_from_the_visible_mask():
    # An L-shaped object: its annotated box is larger than what a crop leaves visible.
    image, target = rectangles(20, 20, [[0, 0, 20, 4], [14, 14, 18, 18]], labels=[4, 7])
    target["masks"][0, :, 0:3] = True  # L: a top bar and a left column
    target["boxes"][0] = torch.tensor([0.0, 0.0, 20.0, 20.0])
    for seed in range(30):
        out_image, out = RandomCrop(size=12)(coordinate_image(20, 20), target, gen(seed))
        top, left = int(out_image[0, 0, 0]), int(out_image[1, 0, 0])
        window = target["masks"][:, top:top + 12, left:left + 12]
        expected, labels = [], []
        for k in range(2):
            ys, xs = window[k].nonzero(as_tuple=True)
            if len(ys):
                expected.append([xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1])
                labels.append([4, 7][k])
        assert out["boxes"].tolist() == expected
        assert out["labels"].tolist() == labels
        assert out["masks"].shape == (len(labels), 12, 12)


def test_crop_drops_an_object_whose_box_overlaps_but_mask_does_not():
    image = coordinate_image(10, 20)
    masks = torch.zeros(1, 10, 20, dtype=torch.bool)
    masks[0, 0:3, 0:3] = True  # the pixels sit in the left corner of a wide box
    target = {"boxes": torch.tensor([[0.0, 0.0, 20.0, 10.0]]), "labels": torch.tensor([1]), "masks": masks}
    for seed in range(10):
        out_image, out = RandomCrop(size=10)(image, target, gen(seed))
        left = int(out_image[1, 0, 0])
        assert len(out["boxes"]) == (1 if left < 3 else 0)
        assert out["masks"].shape[0] == len(out["labels"]) == len(out["boxes"])


# ---------------------------------------------------------------- PadTo

def test_pad_to_square_at_bottom_right():
    image, target = rectangles(5, 8, [[1, 1, 4, 3]])
    out_image, out = PadTo(size=10)(image, target, gen())
    assert out_image.shape == (3, 10, 10) and out["masks"].shape == (1, 10, 10)
    assert torch.equal(out_image[:, :5, :8], image) and out_image[:, 5:].abs().sum() == 0
    assert out_image[:, :, 8:].abs().sum() == 0
    assert torch.equal(out["masks"][:, :5, :8], target["masks"]) and not out["masks"][:, 5:].any()
    assert out["boxes"].tolist() == [[1.0, 1.0, 4.0, 3.0]]


def test_pad_of_an_image_already_square_and_of_one_too_large():
    image = torch.rand(3, 10, 10)
    target = {"boxes": torch.zeros(0, 4), "image_id": 12}
    out_image, out = PadTo(size=10)(image, target, gen())
    assert out_image is image and out is target
    with pytest.raises(TransformInputError, match="image id 12.*11x10"):
        PadTo(size=10)(torch.rand(3, 11, 10), target, gen())


# ---------------------------------------------------------------- the whole LSJ

@pytest.mark.parametrize("size", [(20, 30), (64, 48), (200, 120), (7, 300)])
def test_lsj_output_is_always_the_square(size):
    image, target = rectangles(*size, [[1, 1, 5, 5], [2, 3, size[1] - 1, size[0] - 1]])
    lsj = large_scale_jitter(output_size=64)
    for seed in range(5):
        out_image, out = lsj(image, target, gen(seed))
        assert out_image.shape == (3, 64, 64) and out_image.is_contiguous()
        assert out["masks"].shape == (len(out["boxes"]), 64, 64)
        assert out["boxes"].dtype == torch.float32 and out["labels"].dtype == torch.int64
        assert ((out["boxes"][:, 2:] > out["boxes"][:, :2]).all())
        assert (out["boxes"] >= 0).all() and (out["boxes"] <= 64).all()
        assert_masks_on_objects(out_image, out["masks"])
        assert out["image_id"] == 5 and out["orig_size"].tolist() == list(size)


def test_lsj_on_an_empty_target():
    image = torch.rand(3, 40, 50)
    target = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64),
              "masks": torch.zeros(0, 40, 50, dtype=torch.bool)}
    out_image, out = large_scale_jitter(output_size=32)(image, target, gen())
    assert out_image.shape == (3, 32, 32)
    assert out["boxes"].shape == (0, 4) and out["labels"].shape == (0,) and out["masks"].shape == (0, 32, 32)


def test_lsj_without_masks_clips_boxes():
    image = torch.rand(3, 40, 40)
    target = {"boxes": torch.tensor([[0.0, 0.0, 40.0, 40.0]]), "labels": torch.tensor([9])}
    out_image, out = large_scale_jitter(output_size=40, scale_range=(1.25, 1.25))(image, target, gen(2))
    assert "masks" not in out
    assert out["boxes"].tolist() == [[0.0, 0.0, 40.0, 40.0]]  # 50 px cropped to 40


def test_lsj_is_deterministic_under_the_seed():
    image, target = rectangles(192, 256, [[3, 3, 80, 120], [120, 40, 240, 160], [0, 160, 40, 192]])
    image = image + 0.1 * torch.rand(image.shape, generator=gen(99))
    lsj = large_scale_jitter(output_size=192)
    outputs = [lsj(image, target, gen(seed)) for seed in range(6)]
    again = lsj(image, target, gen(3))
    assert torch.equal(outputs[3][0], again[0])
    assert all(torch.equal(outputs[3][1][k], again[1][k]) for k in ("boxes", "labels", "masks"))
    for i in range(6):
        for j in range(i):
            assert not torch.equal(outputs[i][0], outputs[j][0])
            assert not torch.equal(outputs[i][1]["boxes"], outputs[j][1]["boxes"])


def test_lsj_draws_four_numbers_per_sample():
    image, target = rectangles(30, 20, [[1, 1, 9, 9]])
    g = gen(8)
    large_scale_jitter(output_size=32)(image, target, g)
    reference = gen(8)
    torch.rand((), generator=reference, dtype=torch.float64)
    torch.randint(0, 1, (), generator=reference)
    torch.randint(0, 1, (), generator=reference)
    torch.rand((), generator=reference)
    assert torch.equal(torch.rand(4, generator=g), torch.rand(4, generator=reference))


def test_detector_transform_leaves_an_lsj_output_alone():
    """With its train size equal to the LSJ output, the model's transform does not resize."""
    from bacl.models.image_transform import TrainTestSizeTransform

    transform = TrainTestSizeTransform(train_sizes=(64,), test_size=48, max_size=100,
                                       image_mean=[0.0, 0.0, 0.0], image_std=[1.0, 1.0, 1.0])
    transform.train()
    image, target = rectangles(50, 70, [[5, 5, 30, 40]])
    out_image, out = large_scale_jitter(output_size=64)(image, target, gen(1))
    out = {k: v for k, v in out.items() if k != "masks"}
    batch, targets = transform([out_image], [out])
    assert batch.tensors.shape == (1, 3, 64, 64)
    assert torch.equal(batch.tensors[0], out_image)
    assert torch.equal(targets[0]["boxes"], out["boxes"])


@pytest.mark.parametrize("make", [
    lambda: ScaleJitter(target_size=0),
    lambda: ScaleJitter(scale_range=(1.25, 0.8)),
    lambda: ScaleJitter(scale_range=(0.0, 1.0)),
    lambda: ScaleJitter(scale_range=(0.5, float("inf"))),
    lambda: RandomCrop(size=-1),
    lambda: RandomCrop(size=12.5),
    lambda: RandomCrop(min_box_size=-0.1),
    lambda: PadTo(size=0),
])
def test_bad_settings_are_refused(make):
    with pytest.raises(ValueError):
        make()
