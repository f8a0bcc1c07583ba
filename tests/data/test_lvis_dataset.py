"""LVISDetection on tiny LVIS-format files written in tmp_path."""

from __future__ import annotations

import json
import logging
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bacl.data.lvis_dataset import ImageFileError, LVISDetection
from bacl.data.masks import polygon_mask
from bacl.data.repeat_factor_sampler import repeat_factors
from bacl.data.transforms import Compose, RandomHorizontalFlip
from bacl.errors import MissingFileError
from bacl.lvis_format import AnnotationError, RaggedArray


def pattern(width: int, height: int) -> np.ndarray:
    """A (H, W, 3) uint8 image whose every pixel is distinct enough to spot a flip."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([(x * 30 + y * 5 + c * 7) % 256 for c in range(3)], axis=-1).astype(np.uint8)


def write_image(path: Path, width: int, height: int, *, fmt: str = "PNG") -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    array = pattern(width, height)
    Image.fromarray(array).save(path, format=fmt)
    return array


def write_json(path: Path, data: dict) -> Path:
    path.write_text(json.dumps(data))
    return path


def tiny_lvis() -> dict:
    """Three categories with gaps in their ids, three images (the last one empty)."""
    return {
        "info": {"description": "tiny"},
        "images": [
            {"id": 1, "width": 8, "height": 6, "file_name": "a.png",
             "neg_category_ids": [], "not_exhaustive_category_ids": []},
            {"id": 2, "width": 5, "height": 4, "file_name": "sub/b.png",
             "neg_category_ids": [3], "not_exhaustive_category_ids": []},
            {"id": 3, "width": 4, "height": 4, "file_name": "c.png",
             "neg_category_ids": [], "not_exhaustive_category_ids": []},
        ],
        "annotations": [
            {"id": 11, "image_id": 1, "category_id": 7, "bbox": [1, 1, 3, 2], "area": 6.0,
             "segmentation": [[1, 1, 4, 1, 4, 3]]},
            {"id": 21, "image_id": 2, "category_id": 10, "bbox": [1.5, 0, 2, 3], "area": 6.0,
             "segmentation": [[1, 0, 3, 0, 3, 3]]},
            {"id": 12, "image_id": 1, "category_id": 3, "bbox": [0, 0, 8, 6], "area": 48.0,
             "segmentation": [[0, 0, 8, 0, 8, 6]]},
            {"id": 13, "image_id": 1, "category_id": 7, "bbox": [2, 2, 1, 1], "area": 1.0,
             "segmentation": [[2, 2, 3, 2, 3, 3]]},
        ],
        "categories": [
            {"id": 10, "name": "zebra", "frequency": "f", "image_count": 500},
            {"id": 3, "name": "apple", "frequency": "r", "image_count": 2},
            {"id": 7, "name": "kite", "frequency": "c", "image_count": 40},
        ],
    }


@pytest.fixture
def tiny(tmp_path: Path) -> tuple[Path, Path, dict[int, np.ndarray]]:
    root = tmp_path / "images"
    pixels = {
        1: write_image(root / "a.png", 8, 6),
        2: write_image(root / "sub" / "b.png", 5, 4),
        3: write_image(root / "c.png", 4, 4),
    }
    return write_json(tmp_path / "tiny.json", tiny_lvis()), root, pixels


def test_index_and_label_mapping(tiny):
    ann_file, root, _ = tiny
    ds = LVISDetection(annotation_file=ann_file, image_root=root)
    assert len(ds) == 3
    assert ds.num_classes == 3
    assert [c["id"] for c in ds.categories] == [3, 7, 10]
    assert ds.cat_id_to_label == {3: 1, 7: 2, 10: 3}
    assert ds.label_to_cat_id == {1: 3, 2: 7, 3: 10}
    assert ds.image_ids.tolist() == [1, 2, 3] and ds.image_ids.dtype == np.int64
    assert [s.tolist() for s in ds.image_category_sets] == [[1, 2], [3], []]
    assert ds.image_count.tolist() == [1, 1, 1]
    # The records' frequency wins over this file's counts (LVIS val carries train bins).
    assert ds.class_frequency == ["r", "c", "f"]
    assert ds.get_height_and_width(1) == (4, 5)


def test_getitem_returns_image_and_target(tiny):
    ann_file, root, pixels = tiny
    ds = LVISDetection(annotation_file=ann_file, image_root=root)
    image, target = ds[0]
    assert image.dtype == torch.float32 and image.shape == (3, 6, 8)
    expected = torch.from_numpy(pixels[1]).permute(2, 0, 1).float() / 255
    torch.testing.assert_close(image, expected)
    assert target["image_id"] == 1
    assert target["orig_size"].tolist() == [6, 8]
    assert target["boxes"].dtype == torch.float32
    # File order within the image; xywh -> xyxy.
    assert target["boxes"].tolist() == [[1, 1, 4, 3], [0, 0, 8, 6], [2, 2, 3, 3]]
    assert target["labels"].dtype == torch.int64
    assert target["labels"].tolist() == [2, 1, 2]

    _, target = ds[1]
    assert target["boxes"].tolist() == [[1.5, 0, 3.5, 3]]
    assert target["labels"].tolist() == [3]


def test_empty_image_is_a_normal_sample(tiny):
    ann_file, root, _ = tiny
    image, target = LVISDetection(annotation_file=ann_file, image_root=root)[2]
    assert image.shape == (3, 4, 4)
    assert target["boxes"].shape == (0, 4) and target["boxes"].dtype == torch.float32
    assert target["labels"].shape == (0,) and target["labels"].dtype == torch.int64


def test_filter_empty_drops_and_logs(tiny, caplog):
    ann_file, root, _ = tiny
    caplog.set_level(logging.INFO, logger="bacl.data.lvis_dataset")
    ds = LVISDetection(annotation_file=ann_file, image_root=root, filter_empty=True)
    assert ds.image_ids.tolist() == [1, 2]
    assert [s.tolist() for s in ds.image_category_sets] == [[1, 2], [3]]
    assert ds[1][1]["labels"].tolist() == [3]
    assert "dropped 1 of 3 images" in caplog.text and str(ann_file) in caplog.text


def test_index_keys(tiny):
    ann_file, root, _ = tiny
    ds = LVISDetection(annotation_file=ann_file, image_root=root)
    assert ds[np.int64(1)][1]["image_id"] == 2
    assert ds[-1][1]["image_id"] == 3
    assert ds[(1, 123)][1]["image_id"] == 2
    with pytest.raises(IndexError, match="out of range"):
        ds[3]
    with pytest.raises(TypeError):
        ds[(1, 2, 3)]


def test_same_aug_seed_same_sample_and_flip_applies(tiny):
    ann_file, root, pixels = tiny
    flip = Compose([RandomHorizontalFlip(prob=0.5)])
    ds = LVISDetection(annotation_file=ann_file, image_root=root, transforms=flip)
    outcomes = set()
    for seed in range(12):
        a_img, a_tgt = ds[(0, seed)]
        b_img, b_tgt = ds[(0, seed)]
        assert torch.equal(a_img, b_img) and torch.equal(a_tgt["boxes"], b_tgt["boxes"])
        outcomes.add(a_tgt["boxes"][0, 0].item())
    assert outcomes == {1.0, 8 - 4.0}  # both flipped and unflipped seen

    always = LVISDetection(annotation_file=ann_file, image_root=root,
                           transforms=RandomHorizontalFlip(prob=1.0))
    image, target = always[(0, 0)]
    expected = torch.from_numpy(pixels[1][:, ::-1].copy()).permute(2, 0, 1).float() / 255
    torch.testing.assert_close(image, expected)
    assert target["boxes"].tolist() == [[4, 1, 7, 3], [0, 0, 8, 6], [5, 2, 6, 3]]
    assert target["orig_size"].tolist() == [6, 8]


def test_readable_by_lvis_api_with_the_same_content(tiny):
    lvis = pytest.importorskip("lvis")
    ann_file, root, _ = tiny
    api = lvis.LVIS(str(ann_file))
    ds = LVISDetection(annotation_file=ann_file, image_root=root)
    assert sorted(api.get_img_ids()) == ds.image_ids.tolist()
    assert sorted(api.get_cat_ids()) == [c["id"] for c in ds.categories]
    for i, image_id in enumerate(ds.image_ids):
        anns = api.load_anns(api.get_ann_ids(img_ids=[image_id]))
        expected = [[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)]
        labels = [ds.cat_id_to_label[a["category_id"]] for a in anns]
        _, target = ds[i]
        assert target["boxes"].tolist() == expected
        assert target["labels"].tolist() == labels


@pytest.mark.parametrize("num_classes", [1230, 1203])  # LVIS v0.5, LVIS v1
def test_lvis_sized_vocabulary(tmp_path, num_classes):
    data = tiny_lvis()
    data["categories"] = [{"id": k, "name": f"c{k}", "frequency": "frc"[k % 3]}
                          for k in range(num_classes, 0, -1)]
    data["annotations"][0]["category_id"] = num_classes
    write_image(tmp_path / "a.png", 8, 6)
    write_image(tmp_path / "sub" / "b.png", 5, 4)
    write_image(tmp_path / "c.png", 4, 4)
    ds = LVISDetection(annotation_file=write_json(tmp_path / "x.json", data),
                       image_root=tmp_path)
    assert ds.num_classes == num_classes
    assert ds.cat_id_to_label[1] == 1 and ds.cat_id_to_label[num_classes] == num_classes
    assert ds.image_count.shape == (num_classes,)
    assert ds.image_count[num_classes - 1] == 1 and ds.image_count[3 - 1] == 1
    assert ds[0][1]["labels"].tolist() == [num_classes, 3, 7]


def test_frequency_from_counts_when_records_lack_it(tmp_path):
    data = tiny_lvis()
    for c in data["categories"]:
        del c["frequency"]
    images, anns = [], []
    # Class 7 in 11 images (common), class 10 in 101 (frequent), class 3 in 1 (rare).
    for i in range(101):
        images.append({"id": i + 1, "width": 4, "height": 4, "file_name": "c.png"})
        anns.append({"id": 1000 + i, "image_id": i + 1, "category_id": 10, "bbox": [0, 0, 2, 2]})
        if i < 11:
            anns.append({"id": 2000 + i, "image_id": i + 1, "category_id": 7,
                         "bbox": [1, 1, 2, 2]})
            anns.append({"id": 3000 + i, "image_id": i + 1, "category_id": 7,
                         "bbox": [0, 1, 2, 2]})
    anns.append({"id": 4000, "image_id": 5, "category_id": 3, "bbox": [0, 0, 1, 1]})
    data["images"], data["annotations"] = images, anns
    write_image(tmp_path / "c.png", 4, 4)
    ds = LVISDetection(annotation_file=write_json(tmp_path / "x.json", data),
                       image_root=tmp_path)
    assert ds.image_count.tolist() == [1, 11, 101]
    assert ds.class_frequency == ["r", "c", "f"]


# --------------------------------------------------------------------- image paths


def test_v1_coco_url_rule(tmp_path):
    """LVIS v1 records have no file_name; val images come from both COCO 2017 splits."""
    data = tiny_lvis()
    data["images"] = [
        {"id": 9, "width": 8, "height": 6,
         "coco_url": "http://images.cocodataset.org/train2017/000000000009.jpg"},
        {"id": 42, "width": 5, "height": 4,
         "coco_url": "http://images.cocodataset.org/val2017/000000000042.jpg"},
    ]
    data["annotations"] = [{"id": 1, "image_id": 42, "category_id": 3, "bbox": [0, 0, 2, 2]}]
    coco = tmp_path / "coco"
    write_image(coco / "train2017" / "000000000009.jpg", 8, 6, fmt="JPEG")
    write_image(coco / "val2017" / "000000000042.jpg", 5, 4, fmt="JPEG")
    ds = LVISDetection(annotation_file=write_json(tmp_path / "v1.json", data), image_root=coco)
    assert ds.image_path(0) == coco / "train2017" / "000000000009.jpg"
    assert ds.image_path(1) == coco / "val2017" / "000000000042.jpg"
    image, target = ds[1]
    assert image.shape == (3, 4, 5) and target["labels"].tolist() == [1]


def test_v05_records_use_the_coco_2017_layout(tmp_path):
    """v0.5 records carry a 2014-style file_name next to the 2017 coco_url."""
    data = tiny_lvis()
    data["images"] = [
        {"id": 42, "width": 5, "height": 4, "file_name": "COCO_val2014_000000000042.jpg",
         "coco_url": "http://images.cocodataset.org/val2017/000000000042.jpg"},
        {"id": 7, "width": 4, "height": 4, "file_name": "COCO_train2014_000000000007.jpg"},
    ]
    data["annotations"] = []
    coco = tmp_path / "coco"
    write_image(coco / "val2017" / "000000000042.jpg", 5, 4, fmt="JPEG")
    write_image(coco / "000000000007.jpg", 4, 4, fmt="JPEG")
    ds = LVISDetection(annotation_file=write_json(tmp_path / "v05.json", data), image_root=coco)
    assert ds.image_path(0) == coco / "val2017" / "000000000042.jpg"
    assert ds.image_path(1) == coco / "000000000007.jpg"
    assert ds[0][0].shape == (3, 4, 5)


# --------------------------------------------------------------------- boxes


def test_degenerate_boxes_filtered_and_partial_boxes_clipped(tmp_path, caplog):
    data = tiny_lvis()
    data["annotations"] += [
        {"id": 101, "image_id": 1, "category_id": 3, "bbox": [1, 1, 0, 3]},   # zero width
        {"id": 102, "image_id": 1, "category_id": 3, "bbox": [1, 1, 4, 0.5]},  # tiny
        {"id": 103, "image_id": 1, "category_id": 3, "bbox": [9, 1, 2, 2]},   # right of image
        {"id": 104, "image_id": 2, "category_id": 3, "bbox": [-5, -5, 3, 3]},  # above-left
        {"id": 105, "image_id": 2, "category_id": 3, "bbox": [-1, 2, 3, 5]},  # partly out
    ]
    write_image(tmp_path / "a.png", 8, 6)
    write_image(tmp_path / "sub" / "b.png", 5, 4)
    write_image(tmp_path / "c.png", 4, 4)
    ann_file = write_json(tmp_path / "boxes.json", data)
    caplog.set_level(logging.WARNING)
    ds = LVISDetection(annotation_file=ann_file, image_root=tmp_path)

    assert ds[0][1]["boxes"].tolist() == [[1, 1, 4, 3], [0, 0, 8, 6], [2, 2, 3, 3]]
    assert ds[1][1]["boxes"].tolist() == [[1.5, 0, 3.5, 3], [0, 2, 2, 4]]
    messages = [r.getMessage() for r in caplog.records]
    tiny_msg = next(m for m in messages if "narrower or shorter" in m)
    assert str(ann_file) in tiny_msg and "dropped 2 " in tiny_msg and "101, 102" in tiny_msg
    outside_msg = next(m for m in messages if "entirely outside" in m)
    assert "dropped 2 " in outside_msg and "103, 104" in outside_msg
    clipped_msg = next(m for m in messages if "clipped" in m)
    assert "clipped 1 " in clipped_msg and "105" in clipped_msg


def test_image_whose_boxes_were_all_dropped_counts_as_empty(tmp_path):
    data = tiny_lvis()
    data["annotations"] = [{"id": 1, "image_id": 2, "category_id": 3, "bbox": [1, 1, 0, 0]}]
    write_image(tmp_path / "sub" / "b.png", 5, 4)
    ds = LVISDetection(annotation_file=write_json(tmp_path / "x.json", data),
                       image_root=tmp_path, filter_empty=True, check_images=True)
    assert len(ds) == 0


# --------------------------------------------------------------------- image files


def test_missing_images_reported_at_construction(tiny):
    ann_file, root, _ = tiny
    (root / "a.png").unlink()
    (root / "c.png").unlink()
    with pytest.raises(MissingFileError) as info:
        LVISDetection(annotation_file=ann_file, image_root=root)
    assert isinstance(info.value, FileNotFoundError)
    message = str(info.value)
    assert str(ann_file) in message and "2 of 3 image files are missing" in message
    assert "image id 1" in message and str(root / "a.png") in message
    assert "image id 3" in message and "check_images=False" in message


def test_missing_image_without_upfront_check_fails_in_getitem(tiny):
    ann_file, root, _ = tiny
    (root / "a.png").unlink()
    ds = LVISDetection(annotation_file=ann_file, image_root=root, check_images=False)
    assert ds[1][1]["image_id"] == 2
    with pytest.raises(FileNotFoundError, match=r"a\.png \(image id 1"):
        ds[0]


def test_upfront_check_ignores_images_dropped_by_filter_empty(tiny):
    ann_file, root, _ = tiny
    (root / "c.png").unlink()  # the empty image
    ds = LVISDetection(annotation_file=ann_file, image_root=root, filter_empty=True)
    assert len(ds) == 2


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_corrupt_image_names_path_and_id(tmp_path, damage):
    data = tiny_lvis()
    data["images"] = [{"id": 5, "width": 64, "height": 48, "file_name": "bad.jpg"}]
    data["annotations"] = []
    path = tmp_path / "bad.jpg"
    if damage == "garbage":
        path.write_bytes(b"this is not an image" * 10)
    else:
        noise = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
        Image.fromarray(noise).save(path, format="JPEG", quality=95)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    ds = LVISDetection(annotation_file=write_json(tmp_path / "x.json", data), image_root=tmp_path)
    with pytest.raises(ImageFileError) as info:
        ds[0]
    assert str(path) in str(info.value) and "image id 5" in str(info.value)
    assert isinstance(info.value.__cause__, OSError)


def test_image_size_differs_from_record(tiny):
    ann_file, root, _ = tiny
    write_image(root / "sub" / "b.png", 7, 4)
    ds = LVISDetection(annotation_file=ann_file, image_root=root)
    with pytest.raises(ImageFileError, match=r"image id 2\) is 7x4 .* records 5x4"):
        ds[1]


def test_grayscale_image_becomes_rgb(tmp_path):
    data = tiny_lvis()
    data["images"] = [{"id": 1, "width": 3, "height": 2, "file_name": "g.png"}]
    data["annotations"] = []
    Image.fromarray(np.array([[0, 51, 102], [153, 204, 255]], np.uint8), mode="L").save(
        tmp_path / "g.png")
    ds = LVISDetection(annotation_file=write_json(tmp_path / "x.json", data), image_root=tmp_path)
    image, _ = ds[0]
    assert image.shape == (3, 2, 3)
    torch.testing.assert_close(image[1], torch.tensor([[0, 0.2, 0.4], [0.6, 0.8, 1.0]]))


@pytest.mark.parametrize("record_size, expected_shape", [((2, 3), (3, 3, 2)), ((3, 2), (3, 2, 3))])
def test_exif_orientation_follows_the_recorded_size(tmp_path, record_size, expected_shape):
    """Stored 3x2 with 'rotate 90' EXIF: a 2x3 record means oriented, 3x2 means raw."""
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(pattern(3, 2)).save(tmp_path / "r.jpg", format="JPEG", exif=exif.tobytes())
    data = tiny_lvis()
    width, height = record_size
    data["images"] = [{"id": 1, "width": width, "height": height, "file_name": "r.jpg"}]
    data["annotations"] = []
    ds = LVISDetection(annotation_file=write_json(tmp_path / "x.json", data), image_root=tmp_path)
    assert tuple(ds[0][0].shape) == expected_shape


def test_dataloader_batches_do_not_depend_on_worker_count(tiny):
    from torch.utils.data import DataLoader

    from bacl.data.collate import collate_detection
    from bacl.data.samplers import TrainingSampler

    ann_file, root, _ = tiny
    ds = LVISDetection(annotation_file=ann_file, image_root=root,
                       transforms=Compose([RandomHorizontalFlip(prob=0.5)]))

    def run(num_workers):
        sampler = TrainingSampler(dataset_size=len(ds), seed=0)
        batches = []
        for epoch in range(3):
            sampler.set_epoch(epoch)
            loader = DataLoader(ds, batch_size=2, sampler=sampler, num_workers=num_workers,
                                collate_fn=collate_detection)
            for images, targets in loader:
                batches.append(([im.sum().item() for im in images],
                                [t["boxes"].tolist() for t in targets]))
        return batches

    assert run(0) == run(2)


# --------------------------------------------------------------------- compact index


def test_index_is_flat_arrays(tiny):
    ann_file, root, _ = tiny
    ds = LVISDetection(annotation_file=ann_file, image_root=root)
    sets = ds.image_category_sets
    assert isinstance(sets, RaggedArray) and len(sets) == 3
    assert sets.values.tolist() == [1, 2, 3] and sets.offsets.tolist() == [0, 2, 3, 3]
    assert sets[0].dtype == np.int64
    with pytest.raises(ValueError):
        sets[0][0] = 5
    with pytest.raises(ValueError):
        ds.image_ids[0] = 5
    assert isinstance(ds[0][1]["image_id"], int)
    copy = pickle.loads(pickle.dumps(ds))  # what a spawned worker gets
    assert not copy.image_ids.flags.writeable and not copy.image_category_sets[0].flags.writeable
    assert copy.image_ids.tolist() == [1, 2, 3]
    # What the repeat-factor sampler reads.
    assert repeat_factors(image_category_sets=ds.image_category_sets, num_classes=ds.num_classes, threshold=1.0).shape == (3,)


# --------------------------------------------------------------------- masks


def test_masks_are_the_polygons_aligned_with_boxes(tiny):
    ann_file, root, _ = tiny
    ds = LVISDetection(annotation_file=ann_file, image_root=root, with_masks=True)
    segmentations = {a["id"]: a["segmentation"] for a in tiny_lvis()["annotations"]}
    _, target = ds[0]
    masks = target["masks"]
    assert masks.dtype == torch.bool and masks.shape == (3, 6, 8)
    for k, ann_id in enumerate([11, 12, 13]):  # file order within image 1
        expected = polygon_mask(segmentations[ann_id], height=6, width=8)
        assert torch.equal(masks[k], torch.from_numpy(expected))
    assert masks[1][0, 7] and not masks[1][5, 0]  # 12: the triangle above the diagonal
    _, target = ds[2]
    assert target["masks"].shape == (0, 4, 4) and target["masks"].dtype == torch.bool
    assert "masks" not in LVISDetection(annotation_file=ann_file, image_root=root)[0][1]


def test_masks_follow_the_box_cleaning(tmp_path):
    data = tiny_lvis()
    data["annotations"].insert(1, {"id": 99, "image_id": 1, "category_id": 3,
                                   "bbox": [1, 1, 0, 3], "segmentation": {"counts": "x"}})
    data["annotations"].append({"id": 98, "image_id": 1, "category_id": 10,
                                "bbox": [6, 4, 5, 5], "segmentation": [[6, 4, 11, 4, 11, 9]]})
    write_image(tmp_path / "a.png", 8, 6)
    write_image(tmp_path / "sub" / "b.png", 5, 4)
    write_image(tmp_path / "c.png", 4, 4)
    ds = LVISDetection(annotation_file=write_json(tmp_path / "x.json", data),
                       image_root=tmp_path, with_masks=True, filter_empty=True)
    _, target = ds[0]
    # 99 (zero width, and an RLE mask) is dropped with its box; 98 is clipped.
    assert target["labels"].tolist() == [2, 1, 2, 3]
    assert target["boxes"][-1].tolist() == [6, 4, 8, 6]
    assert target["masks"].shape == (4, 6, 8)
    clipped = target["masks"][-1]  # the part of the triangle inside the image
    assert clipped.sum() == 3 and clipped[4, 6] and clipped[4, 7] and clipped[5, 7]
    assert ds[1][1]["masks"].shape == (1, 4, 5)


@pytest.mark.parametrize("segmentation, kind", [({"size": [6, 8], "counts": "abc"}, "an RLE object"),
                                                (None, "missing"), ("absent", "missing")])
def test_masks_need_polygons(tmp_path, segmentation, kind):
    data = tiny_lvis()
    for ann in data["annotations"][2:]:
        if segmentation == "absent":
            del ann["segmentation"]
        else:
            ann["segmentation"] = segmentation
    write_image(tmp_path / "a.png", 8, 6)
    ann_file = write_json(tmp_path / "x.json", data)
    with pytest.raises(AnnotationError) as info:
        LVISDetection(annotation_file=ann_file, image_root=tmp_path, with_masks=True,
                      check_images=False)
    message = str(info.value)
    assert message.startswith(f"{ann_file}: annotations[2] (id=12): 'segmentation' is {kind}")
    assert "with_masks=True needs polygons (and 1 more such annotations: ids 13)" in message
    # Without masks the segmentation is not read at all.
    LVISDetection(annotation_file=ann_file, image_root=tmp_path, check_images=False)


def test_transforms_receive_the_masks(tiny):
    ann_file, root, _ = tiny
    seen = {}

    def record(image, target, generator):
        seen.update(target)
        return image, target

    ds = LVISDetection(annotation_file=ann_file, image_root=root, transforms=record,
                       with_masks=True)
    ds[1]
    assert seen["masks"].shape == (1, 4, 5) and seen["boxes"].shape == (1, 4)


def test_masks_same_with_dataloader_workers(tiny):
    from torch.utils.data import DataLoader

    from bacl.data.collate import collate_detection

    ann_file, root, _ = tiny
    ds = LVISDetection(annotation_file=ann_file, image_root=root, with_masks=True)

    def run(num_workers):
        loader = DataLoader(ds, batch_size=2, num_workers=num_workers,
                            collate_fn=collate_detection)
        return [t["masks"] for _, targets in loader for t in targets]

    for a, b in zip(run(0), run(2), strict=True):
        assert torch.equal(a, b)
