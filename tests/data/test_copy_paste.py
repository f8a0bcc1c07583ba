"""Copy-paste: occlusion of destination objects, selection, and the seeded dataset wrapper."""

from __future__ import annotations

import pickle

import pytest
import torch
from torch.utils.data import DataLoader

from bacl.data.collate import collate_detection
from bacl.data.copy_paste import CopyPasteDataset, paste_objects, select_objects
from bacl.data.large_scale_jitter import large_scale_jitter
from bacl.data.transforms import TransformInputError


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def make_target(height, width, boxes, labels, image_id=1):
    masks = torch.zeros(len(boxes), height, width, dtype=torch.bool)
    for k, (x1, y1, x2, y2) in enumerate(boxes):
        masks[k, y1:y2, x1:x2] = True
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor(labels, dtype=torch.int64),
        "image_id": image_id,
        "orig_size": torch.tensor([height, width]),
        "masks": masks,
    }


def slow_paste(image, target, paste_image, paste_target, bbox_thr, mask_thr):
    """Per object and per pixel, as the reference describes it."""
    _, h, w = image.shape
    covered = [[any(bool(m[y, x]) for m in paste_target["masks"]) for x in range(w)] for y in range(h)]
    out_image = image.clone()
    for y in range(h):
        for x in range(w):
            if covered[y][x]:
                out_image[:, y, x] = paste_image[:, y, x]
    boxes, labels, masks = [], [], []
    for k in range(len(target["boxes"])):
        visible = target["masks"][k].clone()
        for y in range(h):
            for x in range(w):
                if covered[y][x]:
                    visible[y, x] = False
        ys, xs = visible.nonzero(as_tuple=True)
        if len(ys) == 0:
            continue  # fully hidden
        box = [xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1]
        moved = max(abs(a - b) for a, b in zip(box, target["boxes"][k].tolist()))
        if moved <= bbox_thr or len(ys) > mask_thr:
            boxes.append(box)
            labels.append(target["labels"][k].item())
            masks.append(visible)
    boxes += paste_target["boxes"].tolist()
    labels += paste_target["labels"].tolist()
    masks += list(paste_target["masks"])
    return out_image, boxes, labels, masks


# ---------------------------------------------------------------- paste_objects

def test_full_cover_removes_the_object():
    image, paste_image = torch.zeros(3, 16, 16), torch.ones(3, 16, 16)
    target = make_target(16, 16, [[2, 2, 6, 6], [10, 10, 14, 14]], [3, 4], image_id=7)
    paste = make_target(16, 16, [[1, 1, 8, 8]], [9], image_id=8)
    out_image, out = paste_objects(image, target, paste_image, paste)
    assert out["labels"].tolist() == [4, 9]
    assert out["boxes"].tolist() == [[10.0, 10.0, 14.0, 14.0], [1.0, 1.0, 8.0, 8.0]]
    assert out["masks"].shape == (2, 16, 16)
    assert torch.equal(out_image[0], paste["masks"][0].float())
    assert out["image_id"] == 7 and out["orig_size"].tolist() == [16, 16]


def test_full_cover_of_a_small_object_at_the_origin_removes_it():
    # Its visible box would be [0, 0, 0, 0], within bbox_occluded_thr of [0, 0, 3, 3];
    # it is dropped all the same because nothing of it is visible.
    target = make_target(16, 16, [[0, 0, 3, 3]], [2])
    paste = make_target(16, 16, [[0, 0, 5, 5]], [6])
    _, out = paste_objects(torch.zeros(3, 16, 16), target, torch.ones(3, 16, 16), paste)
    assert out["labels"].tolist() == [6]


def test_partial_cover_recomputes_the_box_from_the_visible_mask():
    target = make_target(32, 32, [[0, 0, 10, 10]], [2])
    paste = make_target(32, 32, [[5, 0, 20, 20]], [5])
    image, paste_image = torch.zeros(3, 32, 32), torch.ones(3, 32, 32)
    # Box moved by 10 on x2 (<= 10): kept, with the box of the visible 5 x 10 strip.
    _, out = paste_objects(image, target, paste_image, paste)
    assert out["boxes"].tolist() == [[0.0, 0.0, 5.0, 10.0], [5.0, 0.0, 20.0, 20.0]]
    assert out["masks"][0].sum() == 50 and not out["masks"][0][:, 5:].any()
    # A box moved by more than the threshold needs more visible pixels than mask_occluded_thr.
    _, out = paste_objects(image, target, paste_image, paste, bbox_occluded_thr=4.0, mask_occluded_thr=50)
    assert out["labels"].tolist() == [5]
    _, out = paste_objects(image, target, paste_image, paste, bbox_occluded_thr=4.0, mask_occluded_thr=49)
    assert out["labels"].tolist() == [2, 5] and out["boxes"][0].tolist() == [0.0, 0.0, 5.0, 10.0]


def test_paste_matches_slow_reference_on_random_objects():
    g = gen(0)
    for trial in range(6):
        h, w = 12, 14

        def random_target(n, image_id):
            boxes = []
            for _ in range(n):
                x1, y1 = int(torch.randint(0, w - 1, (), generator=g)), int(torch.randint(0, h - 1, (), generator=g))
                x2 = int(torch.randint(x1 + 1, w + 1, (), generator=g))
                y2 = int(torch.randint(y1 + 1, h + 1, (), generator=g))
                boxes.append([x1, y1, x2, y2])
            t = make_target(h, w, boxes, torch.randint(1, 9, (n,), generator=g).tolist(), image_id)
            # Ragged shapes: drop random pixels inside the rectangles, keep annotated boxes.
            t["masks"] &= torch.rand(n, h, w, generator=g) > 0.3
            return t

        target = random_target(6, 1)
        paste = random_target(int(torch.randint(0, 4, (), generator=g)), 2)
        image, paste_image = torch.rand(3, h, w, generator=g), torch.rand(3, h, w, generator=g)
        for bbox_thr, mask_thr in [(10.0, 300), (1.0, 5), (0.0, 0)]:
            out_image, out = paste_objects(image, target, paste_image, paste,
                                           bbox_occluded_thr=bbox_thr, mask_occluded_thr=mask_thr)
            ref_image, boxes, labels, masks = slow_paste(image, target, paste_image, paste, bbox_thr, mask_thr)
            if len(paste["boxes"]) == 0:
                assert out_image is image and out is target
                continue
            assert torch.equal(out_image, ref_image)
            assert out["boxes"].tolist() == boxes, trial
            assert out["labels"].tolist() == labels
            assert torch.equal(out["masks"], torch.stack(masks))


def test_paste_onto_an_empty_target():
    target = make_target(8, 8, [], [])
    paste = make_target(8, 8, [[1, 1, 4, 4]], [3])
    _, out = paste_objects(torch.zeros(3, 8, 8), target, torch.ones(3, 8, 8), paste)
    assert out["boxes"].tolist() == [[1.0, 1.0, 4.0, 4.0]] and out["labels"].tolist() == [3]
    assert out["labels"].dtype == torch.int64 and out["masks"].shape == (1, 8, 8)


def test_paste_needs_masks_and_one_size():
    target = make_target(8, 8, [[1, 1, 4, 4]], [3], image_id=21)
    paste = make_target(8, 8, [[1, 1, 4, 4]], [3], image_id=22)
    no_masks = {k: v for k, v in target.items() if k != "masks"}
    with pytest.raises(TransformInputError, match="image id 21.*masks"):
        paste_objects(torch.zeros(3, 8, 8), no_masks, torch.ones(3, 8, 8), paste)
    big = make_target(9, 8, [[1, 1, 4, 4]], [3], image_id=22)
    with pytest.raises(TransformInputError, match="one size.*21.*22"):
        paste_objects(torch.zeros(3, 8, 8), target, torch.ones(3, 9, 8), big)


# ---------------------------------------------------------------- select_objects

def test_selection_counts_and_alignment():
    target = make_target(10, 10, [[k, k, k + 2, k + 2] for k in range(6)], [1, 2, 3, 4, 5, 6])
    counts = set()
    for seed in range(300):
        chosen = select_objects(target, gen(seed), max_num_pasted=100)
        counts.add(len(chosen["labels"]))
        for label, box, mask in zip(chosen["labels"], chosen["boxes"], chosen["masks"]):
            k = label.item() - 1
            assert torch.equal(box, target["boxes"][k]) and torch.equal(mask, target["masks"][k])
        assert len(set(chosen["labels"].tolist())) == len(chosen["labels"])
    assert counts == set(range(7))  # 0 .. K
    # max_num_pasted is an exclusive bound, as the reference's.
    assert {len(select_objects(target, gen(s), max_num_pasted=3)["labels"]) for s in range(100)} == {0, 1, 2}
    assert {len(select_objects(target, gen(s), max_num_pasted=1)["labels"]) for s in range(20)} == {0}
    empty = make_target(10, 10, [], [])
    assert len(select_objects(empty, gen(), max_num_pasted=100)["boxes"]) == 0


# ---------------------------------------------------------------- CopyPasteDataset

class InMemoryDetection:
    """The key protocol of LVISDetection over hand-made samples."""

    num_classes = 9

    def __init__(self, samples, transforms):
        self.samples = samples
        self.transforms = transforms
        self.calls = []

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, key):
        index, aug_seed = key if isinstance(key, tuple) else (key, key)
        self.calls.append((index, aug_seed))
        image, target = self.samples[index]
        return self.transforms(image, dict(target), gen(aug_seed))


def small_dataset(n=5, size=24):
    g = gen(5)
    samples = []
    for i in range(n):
        boxes = [[2 + i, 3, 12 + i, 15], [10, 8 + i, 22, 20], [0, 0, 6, 5]]
        samples.append((torch.rand(3, size, size + 4 * i, generator=g),
                        make_target(size, size + 4 * i, boxes, [1 + i, 2 + i, 3], image_id=100 + i)))
    return InMemoryDetection(samples, large_scale_jitter(output_size=32))


def test_wrapper_is_deterministic_and_seeds_differ():
    data = CopyPasteDataset(small_dataset())
    a_image, a = data[(2, 1234)]
    b_image, b = data[(2, 1234)]
    assert torch.equal(a_image, b_image)
    assert all(torch.equal(a[k], b[k]) for k in ("boxes", "labels"))
    assert a_image.shape == (3, 32, 32) and "masks" not in a and a["image_id"] == 102
    others = [data[(2, seed)] for seed in range(8)]
    for i in range(8):
        for j in range(i):
            assert not torch.equal(others[i][0], others[j][0])
    plain_image, plain = data[3]
    same_image, same = data[(3, 3)]
    assert torch.equal(plain_image, same_image) and torch.equal(plain["boxes"], same["boxes"])


def test_wrapper_destination_is_the_wrapped_sample_and_source_has_its_own_seed():
    inner = small_dataset()
    data = CopyPasteDataset(inner, max_num_pasted=1, keep_masks=True)  # nothing is pasted
    image, target = data[(1, 77)]
    ref_image, ref = inner[(1, 77)]
    assert torch.equal(image, ref_image)
    assert all(torch.equal(target[k], ref[k]) for k in ("boxes", "labels", "masks"))
    calls = inner.calls[-3:-1]
    assert calls[0] == (1, 77) and calls[1][1] != 77


def test_wrapper_pastes_objects_of_the_source():
    data = CopyPasteDataset(small_dataset(), keep_masks=True)
    pasted = 0
    for seed in range(20):
        image, target = data[(0, seed)]
        assert target["masks"].shape == (len(target["boxes"]), 32, 32)
        assert len(target["labels"]) == len(target["boxes"])
        pasted += len(target["labels"]) - len(small_dataset()[(0, seed)][1]["labels"])
        # Every kept box is the box of its mask.
        from bacl.data.instance_masks import masks_to_boxes
        assert torch.equal(target["boxes"], masks_to_boxes(target["masks"]))
    assert pasted != 0


def test_wrapper_key_protocol_and_attributes():
    data = CopyPasteDataset(small_dataset())
    assert len(data) == 5 and data.num_classes == 9
    with pytest.raises(IndexError):
        data[5]
    with pytest.raises(TypeError):
        data[(1, 2, 3)]
    negative_image, _ = data[-1]
    last_image, _ = data[(4, 4)]
    assert torch.equal(negative_image, last_image)
    with pytest.raises(AttributeError):
        data.no_such_attribute
    restored = pickle.loads(pickle.dumps(data))
    assert torch.equal(restored[(2, 9)][0], data[(2, 9)][0])


def test_wrapper_gives_the_same_batches_in_workers():
    data = CopyPasteDataset(small_dataset())
    keys = [(i % 5, 1000 + i) for i in range(6)]

    def run(workers):
        loader = DataLoader(data, batch_size=2, sampler=keys, num_workers=workers,
                            collate_fn=collate_detection)
        return [(img, t["boxes"]) for images, targets in loader for img, t in zip(images, targets)]

    for (i0, b0), (i1, b1) in zip(run(0), run(2)):
        assert torch.equal(i0, i1) and torch.equal(b0, b1)


def test_wrapper_needs_masks():
    inner = small_dataset()
    for _, target in inner.samples:
        del target["masks"]
    with pytest.raises(TransformInputError, match="masks"):
        CopyPasteDataset(inner)[0]


@pytest.mark.parametrize("kwargs", [
    {"max_num_pasted": 0}, {"max_num_pasted": 2.5}, {"bbox_occluded_thr": -1.0},
    {"bbox_occluded_thr": float("nan")}, {"mask_occluded_thr": -1}, {"mask_occluded_thr": 0.5},
])
def test_bad_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        CopyPasteDataset(small_dataset(), **kwargs)


def test_empty_dataset_is_refused():
    with pytest.raises(ValueError, match="at least one image"):
        CopyPasteDataset(InMemoryDetection([], large_scale_jitter(output_size=8)))
