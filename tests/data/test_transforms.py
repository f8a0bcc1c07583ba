"""Flip correctness (boxes and masks), mask checks and seeded randomness of the transforms."""

from __future__ import annotations

import pytest
import torch

from bacl.data.transforms import Compose, RandomHorizontalFlip, TransformInputError, check_masks
from bacl.errors import BaclError


def gen(seed: int = 0) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def sample(width: int = 10, height: int = 4):
    image = torch.arange(3 * height * width, dtype=torch.float32).reshape(3, height, width)
    target = {
        "boxes": torch.tensor([[0.0, 0.0, 10.0, 4.0], [1.0, 1.0, 3.5, 2.0]]),
        "labels": torch.tensor([4, 2]),
        "image_id": 7,
        "orig_size": torch.tensor([height, width]),
    }
    return image, target


def test_flip_mirrors_pixels_and_boxes():
    image, target = sample()
    out_image, out_target = RandomHorizontalFlip(prob=1.0)(image, target, gen())
    assert torch.equal(out_image, image[:, :, torch.arange(9, -1, -1)])
    assert out_target["boxes"].tolist() == [[0.0, 0.0, 10.0, 4.0], [6.5, 1.0, 9.0, 2.0]]
    assert out_target["boxes"].dtype == torch.float32
    assert out_target["labels"].tolist() == [4, 2] and out_target["image_id"] == 7
    # The input is left alone.
    assert target["boxes"][1].tolist() == [1.0, 1.0, 3.5, 2.0]


def test_flipped_box_still_covers_the_same_pixels():
    image = torch.zeros(1, 5, 12)
    image[:, 1:3, 2:5] = 1.0  # object on columns 2..4, i.e. box x in [2, 5)
    target = {"boxes": torch.tensor([[2.0, 1.0, 5.0, 3.0]])}
    out_image, out_target = RandomHorizontalFlip(prob=1.0)(image, target, gen())
    columns = out_image[0].sum(0).nonzero().flatten()
    x1, _, x2, _ = out_target["boxes"][0].tolist()
    assert (x1, x2) == (columns.min().item(), columns.max().item() + 1)


def test_flip_moves_masks_with_the_pixels():
    image = torch.zeros(3, 5, 12)
    image[:, 1:3, 2:5] = 1.0
    masks = torch.zeros(1, 5, 12, dtype=torch.bool)
    masks[0, 1:3, 2:5] = True
    target = {"boxes": torch.tensor([[2.0, 1.0, 5.0, 3.0]]), "labels": torch.tensor([1]), "masks": masks}
    out_image, out = RandomHorizontalFlip(prob=1.0)(image, target, gen())
    assert out["masks"].dtype == torch.bool
    assert torch.equal(out["masks"][0], out_image[0] > 0)
    assert out["boxes"].tolist() == [[7.0, 1.0, 10.0, 3.0]]
    assert torch.equal(target["masks"], masks)  # the input is left alone


def test_check_masks_names_the_image():
    image = torch.zeros(3, 4, 6)
    target = {"boxes": torch.zeros(2, 4), "image_id": 31}
    assert check_masks(image, target) is None
    target["masks"] = torch.zeros(2, 4, 6, dtype=torch.bool)
    assert check_masks(image, target) is target["masks"]
    for bad in (torch.zeros(2, 4, 5, dtype=torch.bool), torch.zeros(1, 4, 6, dtype=torch.bool),
                torch.zeros(2, 4, 6, dtype=torch.uint8)):
        target["masks"] = bad
        with pytest.raises(TransformInputError, match="image id 31") as info:
            RandomHorizontalFlip(prob=1.0)(image, target, gen())
        assert isinstance(info.value, BaclError) and isinstance(info.value, ValueError)


def test_double_flip_is_identity():
    image, target = sample()
    flip = RandomHorizontalFlip(prob=1.0)
    twice_image, twice_target = flip(*flip(image, target, gen()), gen())
    assert torch.equal(twice_image, image)
    assert torch.equal(twice_target["boxes"], target["boxes"])


def test_flip_with_no_boxes():
    image, target = sample()
    target["boxes"] = torch.zeros(0, 4)
    _, out = RandomHorizontalFlip(prob=1.0)(image, target, gen())
    assert out["boxes"].shape == (0, 4)


def test_prob_zero_never_flips_but_still_draws():
    image, target = sample()
    g = gen(3)
    out_image, out_target = RandomHorizontalFlip(prob=0.0)(image, target, g)
    assert out_image is image and out_target is target
    reference = gen(3)
    torch.rand((), generator=reference)
    assert torch.equal(torch.rand(4, generator=g), torch.rand(4, generator=reference))


def test_flip_rate_and_determinism():
    image, target = sample()
    flip = RandomHorizontalFlip(prob=0.3)
    flipped = [
        not torch.equal(flip(image, target, gen(seed))[0], image) for seed in range(2000)
    ]
    assert abs(sum(flipped) / 2000 - 0.3) < 0.04
    again = [not torch.equal(flip(image, target, gen(seed))[0], image) for seed in range(50)]
    assert again == flipped[:50]


@pytest.mark.parametrize("prob", [-0.1, 1.5])
def test_prob_out_of_range(prob):
    with pytest.raises(ValueError, match="prob"):
        RandomHorizontalFlip(prob=prob)


def test_compose_applies_in_order_with_one_generator():
    calls = []

    def record(name):
        def t(image, target, generator):
            calls.append((name, torch.rand((), generator=generator).item()))
            return image + 1, target
        return t

    image, target = sample()
    out_image, _ = Compose([record("a"), record("b")])(image, target, gen(5))
    reference = gen(5)
    assert [c[0] for c in calls] == ["a", "b"]
    assert [c[1] for c in calls] == [torch.rand((), generator=reference).item() for _ in range(2)]
    assert torch.equal(out_image, image + 2)
