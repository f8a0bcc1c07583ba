"""The synthetic LVIS-style benchmark: format, long tail, federated labels, determinism."""

from __future__ import annotations

import colorsys
import hashlib
import inspect
import json
import os
import subprocess
import sys
from collections import Counter, defaultdict
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
from lvis import LVIS
from PIL import Image

from bacl.data import synthetic
from bacl.data.synthetic import (
    SyntheticSpec,
    build_lvis_json,
    generate_synthetic_lvis,
    plan_dataset,
    render_planned_image,
    synthetic_categories,
)
from bacl.data.synthetic_plan import assign_classes, frequency_of
from bacl.data.synthetic_render import (
    BACKGROUND_MAX_SATURATION,
    COLOURS,
    HUE_JITTER,
    SATURATION_SCALE,
    TEXTURES,
    jittered_colour,
    object_pixels,
    render_background,
)
from bacl.data.synthetic_shapes import SHAPES, polygon_area, polygon_mask, rasterise_polygon, shape_outline

ROOT = Path(__file__).resolve().parents[2]
# 3 shapes x 2 colours x 2 textures = 12 classes (4 rare, 5 common, 3 frequent); the
# fewest images that realise the bins, at a small image size, so rendering is quick.
SMALL = dict(num_shapes=3, num_colours=2, num_textures=2, num_train_images=190, num_val_images=40, image_size=96)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    paths = generate_synthetic_lvis(out_dir=tmp_path_factory.mktemp("synthetic"), seed=3, progress=False, **SMALL)
    train = json.loads(paths.train_annotations.read_text())
    val = json.loads(paths.val_annotations.read_text())
    return paths, train, val


@pytest.fixture(scope="module")
def default_categories():
    # Planning only (no pixels): the default-size statistics.
    return synthetic_categories()


def _present(dataset: dict) -> dict[int, set[int]]:
    present = defaultdict(set)
    for ann in dataset["annotations"]:
        present[ann["image_id"]].add(ann["category_id"])
    return present


# ----------------------------------------------------------------------------- format


def test_written_layout_and_lvis_loads(small):
    paths, train, val = small
    assert paths.train_annotations == paths.root / "annotations" / "lvis_v1_train.json"
    assert paths.val_annotations == paths.root / "annotations" / "lvis_v1_val.json"
    for path, data in ((paths.train_annotations, train), (paths.val_annotations, val)):
        lvis = LVIS(str(path))
        assert len(lvis.get_img_ids()) == len(data["images"])
        assert len(lvis.get_cat_ids()) == 12
        # Polygon areas match the masks pycocotools makes from the same polygons.
        for ann in lvis.load_anns(lvis.get_ann_ids()[:20]):
            assert lvis.ann_to_mask(ann).sum() == pytest.approx(ann["area"], rel=0.15, abs=6)
    assert len(train["images"]) == 190 and len(val["images"]) == 40
    assert [p.name for p in sorted((paths.image_root).iterdir())] == ["train", "val"]
    assert not list(paths.train_annotations.parent.glob("*.tmp"))


def test_records_have_the_lvis_v1_fields(small):
    _, train, val = small
    image_ids, ann_ids = set(), set()
    for data, split in ((train, "train"), (val, "val")):
        for img in data["images"]:
            assert set(img) == {"id", "width", "height", "file_name", "neg_category_ids",
                                "not_exhaustive_category_ids"}
            assert img["file_name"] == f"{split}/{img['id']:012d}.jpg"
            image_ids.add(img["id"])
        for ann in data["annotations"]:
            assert {"id", "image_id", "category_id", "bbox", "area", "segmentation"} <= set(ann)
            ann_ids.add(ann["id"])
    assert len(image_ids) == 230, "image ids are unique across splits"
    assert len(ann_ids) == len(train["annotations"]) + len(val["annotations"])
    cat = train["categories"][0]
    assert {"id", "name", "synset", "frequency", "image_count", "instance_count"} <= set(cat)
    assert [c["id"] for c in train["categories"]] == list(range(1, 13))
    assert val["categories"] == train["categories"]
    names = {c["name"] for c in train["categories"]}
    assert "red_circle_striped" in names and len(names) == 12


def test_images_exist_with_the_recorded_size(small):
    paths, train, val = small
    for data in (train, val):
        for img in data["images"][::17]:
            with Image.open(paths.image_root / img["file_name"]) as im:
                assert im.format == "JPEG"
                assert im.size == (img["width"], img["height"]) == (96, 96)
    assert len(list((paths.image_root / "train").glob("*.jpg"))) == 190


def test_boxes_inside_images_and_consistent_with_polygons(small):
    _, train, val = small
    for data in (train, val):
        sizes = {img["id"]: (img["width"], img["height"]) for img in data["images"]}
        for ann in data["annotations"]:
            x, y, w, h = ann["bbox"]
            width, height = sizes[ann["image_id"]]
            assert w > 0 and h > 0 and ann["area"] > 0
            assert 0 <= x and 0 <= y and x + w <= width and y + h <= height
            (poly,) = ann["segmentation"]
            pts = np.asarray(poly).reshape(-1, 2)
            assert len(pts) >= 3
            np.testing.assert_allclose([*pts.min(0), *(pts.max(0) - pts.min(0))], ann["bbox"], atol=0.011)
            assert polygon_area(pts) == pytest.approx(ann["area"], abs=0.011)
            assert max(w, h) >= SyntheticSpec.min_object_size * 0.98


def test_objects_per_image_in_range(small):
    paths, train, _ = small
    plan = plan_dataset(SyntheticSpec(seed=3, **SMALL))
    counts = [len(img.objects) for img in plan.train]
    assert min(counts) >= 1 and max(counts) <= 6
    assert np.mean(counts) > 3.0
    annotated = Counter(a["image_id"] for a in train["annotations"])
    assert all(annotated[img["id"]] >= 1 for img in train["images"])


# ------------------------------------------------------------------- long tail, bins


def test_default_size_realises_the_three_lvis_bins(default_categories):
    bins = Counter(c["frequency"] for c in default_categories)
    assert len(default_categories) == 60
    assert bins["r"] >= 15 and bins["c"] >= 15 and bins["f"] >= 10
    for cat in default_categories:
        assert cat["frequency"] == frequency_of(cat["image_count"])
        assert 1 <= cat["image_count"] <= cat["instance_count"]
    counts = sorted(c["image_count"] for c in default_categories)
    assert counts[0] == 1 and counts[-1] > 150


def test_rare_classes_share_attributes_with_frequent_ones(default_categories):
    frequent = [c for c in default_categories if c["frequency"] == "f"]
    rare = [c for c in default_categories if c["frequency"] == "r"]
    for key in ("shape", "colour", "texture"):
        assert {c[key] for c in rare} <= {c[key] for c in frequent}
    for r in rare:
        # A frequent sibling: same in two attributes, different in one.
        siblings = [f for f in frequent if sum(r[k] == f[k] for k in ("shape", "colour", "texture")) == 2]
        assert siblings, r["name"]
        assert r["name"] == f"{r['colour']}_{r['shape']}_{r['texture']}"


def test_small_dataset_realises_its_planned_bins(small):
    _, train, _ = small
    bins = Counter(c["frequency"] for c in train["categories"])
    assert bins == {"r": 4, "c": 5, "f": 3}


def test_category_counts_equal_counts_from_train_annotations(small):
    _, train, _ = small
    images, instances = defaultdict(set), Counter()
    for ann in train["annotations"]:
        images[ann["category_id"]].add(ann["image_id"])
        instances[ann["category_id"]] += 1
    for cat in train["categories"]:
        assert cat["image_count"] == len(images[cat["id"]])
        assert cat["instance_count"] == instances[cat["id"]]
        assert cat["frequency"] == frequency_of(cat["image_count"])


def test_val_has_enough_instances_of_every_class(small):
    _, _, val = small
    counts = Counter(a["category_id"] for a in val["annotations"])
    assert all(counts[c["id"]] >= 10 for c in val["categories"])


def test_assignment_hits_targets_exactly():
    rng = np.random.default_rng(0)
    targets = np.array([50, 30, 9, 1, 1])
    members = assign_classes(targets, rng.integers(1, 4, size=60), rng)
    assert all(len(m) >= 1 and len(set(m)) == len(m) for m in members)
    assert np.bincount([c for m in members for c in m], minlength=5).tolist() == targets.tolist()


# ----------------------------------------------------------------- federated labels


def test_neg_category_ids_are_absent_classes(small):
    _, train, val = small
    num_cats = len(train["categories"])
    for data in (train, val):
        present = _present(data)
        with_negs = 0
        for img in data["images"]:
            negs = img["neg_category_ids"]
            assert negs == sorted(set(negs))
            assert all(1 <= c <= num_cats for c in negs)
            assert not set(negs) & present[img["id"]]
            with_negs += bool(negs)
        assert with_negs >= 0.9 * len(data["images"])


def test_negatives_favour_confusable_classes():
    plan = plan_dataset(SyntheticSpec(seed=1, **SMALL), include_val=False)
    confusable_rate, other_rate = [0, 0], [0, 0]
    for image in plan.train:
        present = {o.category for o in image.objects}
        for c, cls in enumerate(plan.classes):
            if c in present:
                continue
            close = any(cls.shared_attributes(plan.classes[p]) >= 2 for p in present)
            rate = confusable_rate if close else other_rate
            rate[0] += c in image.neg_categories
            rate[1] += 1
    assert confusable_rate[0] / confusable_rate[1] > other_rate[0] / other_rate[1]


def test_not_exhaustive_classes_are_present_and_partly_labelled(small):
    _, train, val = small
    plan = plan_dataset(SyntheticSpec(seed=3, **SMALL))
    for data, images in ((train, plan.train), (val, plan.val)):
        present = _present(data)
        marked = [img for img in data["images"] if img["not_exhaustive_category_ids"]]
        assert marked, "some images carry partial labels"
        for img in marked:
            assert set(img["not_exhaustive_category_ids"]) <= present[img["id"]]
        for img, planned in zip(data["images"], images):
            hidden = {o.category + 1 for o in planned.objects if not o.annotated}
            # Unannotated instances exist exactly for the not-exhaustive classes.
            assert hidden == set(img["not_exhaustive_category_ids"])
            annotated = Counter(a["category_id"] for a in data["annotations"] if a["image_id"] == img["id"]) \
                if hidden else {}
            for c in hidden:
                assert annotated[c] >= 1


def test_occlusion_is_capped():
    spec = SyntheticSpec(seed=5, **SMALL)
    plan = plan_dataset(spec, include_val=False)
    worst = 0.0
    for image in plan.train[:80]:
        owner = np.full((spec.image_size, spec.image_size), -1)
        full = []
        for k, obj in enumerate(image.objects):
            x0, y0, mask = polygon_mask(obj.polygon)
            h, w = mask.shape
            owner[y0:y0 + h, x0:x0 + w][mask] = k
            full.append(mask.sum())
        visible = np.bincount(owner[owner >= 0], minlength=len(full))
        worst = max(worst, float((1 - visible / np.asarray(full)).max()))
    assert 0.0 < worst <= spec.max_occlusion


# -------------------------------------------------------------------- determinism


def test_same_seed_gives_byte_identical_output(small, tmp_path):
    paths, _, _ = small
    again = generate_synthetic_lvis(out_dir=tmp_path / "again", seed=3, progress=False, **SMALL)
    assert again.train_annotations.read_bytes() == paths.train_annotations.read_bytes()
    assert again.val_annotations.read_bytes() == paths.val_annotations.read_bytes()
    for name in ("train/000000000001.jpg", "val/000000000191.jpg", "train/000000000190.jpg"):
        assert (again.image_root / name).read_bytes() == (paths.image_root / name).read_bytes()


def test_output_does_not_depend_on_the_hash_seed():
    code = (
        "import hashlib, json\n"
        "from bacl.data.synthetic import SyntheticSpec, build_lvis_json, plan_dataset\n"
        f"spec = SyntheticSpec(seed=4, **{SMALL!r})\n"
        "print(hashlib.sha256(json.dumps(build_lvis_json(plan_dataset(spec))).encode()).hexdigest())\n"
    )
    digests = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                             check=True)
        digests.add(out.stdout.strip())
    local = hashlib.sha256(json.dumps(build_lvis_json(plan_dataset(SyntheticSpec(seed=4, **SMALL)))).encode())
    assert digests == {local.hexdigest()}


def test_another_seed_gives_another_benchmark():
    a = build_lvis_json(plan_dataset(SyntheticSpec(seed=0, **SMALL), include_val=False))["train"]
    b = build_lvis_json(plan_dataset(SyntheticSpec(seed=1, **SMALL), include_val=False))["train"]
    assert a["annotations"] != b["annotations"]
    assert [c["frequency"] for c in a["categories"]] != [c["frequency"] for c in b["categories"]]


# --------------------------------------------------------------- parameters, writes


@pytest.mark.parametrize(
    "kwargs, name",
    [
        (dict(num_train_images=500), "num_train_images"),
        (dict(num_val_images=50), "num_val_images"),
        (dict(image_size=16), "image_size"),
        (dict(image_size=40, min_object_size=30), "image_size"),
        (dict(num_shapes=0), "num_shapes"),
        (dict(num_colours=len(COLOURS) + 1), "num_colours"),
        (dict(num_textures=len(TEXTURES) + 1), "num_textures"),
        (dict(num_shapes=1, num_colours=1, num_textures=2), "num_shapes"),
        (dict(objects_per_image=(4, 2)), "objects_per_image"),
        (dict(objects_per_image=(1, 2, 3)), "objects_per_image"),
        (dict(max_occlusion=1.0), "max_occlusion"),
        (dict(max_object_fraction=0.0), "max_object_fraction"),
        (dict(rare_fraction=0.0), "rare_fraction"),
        (dict(rare_fraction=0.5, common_fraction=0.45), "rare_fraction"),
        (dict(common_fraction=0.8), "common_fraction"),
        (dict(neg_fraction=1.5), "neg_fraction"),
        (dict(not_exhaustive_fraction=-0.1), "not_exhaustive_fraction"),
        (dict(val_min_instances=0), "val_min_instances"),
        (dict(seed=-1), "seed"),
    ],
)
def test_invalid_parameters_are_named(kwargs, name):
    with pytest.raises(ValueError, match=rf"^{name}="):
        SyntheticSpec(**kwargs)


def test_invalid_parameters_fail_before_anything_is_written(tmp_path):
    with pytest.raises(ValueError, match="num_train_images"):
        generate_synthetic_lvis(out_dir=tmp_path / "out", num_train_images=10, progress=False)
    with pytest.raises(ValueError, match="jpeg_quality"):
        generate_synthetic_lvis(out_dir=tmp_path / "out", jpeg_quality=0, progress=False, **SMALL)
    assert not (tmp_path / "out").exists()


def test_interrupted_generation_leaves_no_annotation_file(tmp_path, monkeypatch):
    out = tmp_path / "out"
    stale = out / "annotations" / "lvis_v1_train.json"
    stale.parent.mkdir(parents=True)
    stale.write_text("{}")
    calls = []

    def failing_render(plan, *, split, index):
        calls.append(index)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return np.zeros((plan.spec.image_size,) * 2 + (3,), dtype=np.uint8)

    monkeypatch.setattr(synthetic, "render_planned_image", failing_render)
    with pytest.raises(KeyboardInterrupt):
        generate_synthetic_lvis(out_dir=out, progress=False, **SMALL)
    assert not list((out / "annotations").iterdir())


def test_signature_defaults_match_the_spec():
    spec_defaults = {f.name: f.default for f in fields(SyntheticSpec)}
    for fn in (generate_synthetic_lvis, synthetic_categories):
        params = inspect.signature(fn).parameters
        for name, p in params.items():
            if name in spec_defaults:
                assert p.default == spec_defaults[name], (fn.__name__, name)
            assert p.kind in (p.KEYWORD_ONLY, p.VAR_KEYWORD), name


# ------------------------------------------------------------------ drawing pieces


def test_colours_stay_distinguishable_under_jitter():
    hues = sorted(h for h, _, _ in COLOURS.values())
    gaps = np.diff(hues + [hues[0] + 1.0])
    assert gaps.min() > 4 * HUE_JITTER
    rng = np.random.default_rng(0)
    for name, (h, s, _) in COLOURS.items():
        assert s * SATURATION_SCALE[0] > BACKGROUND_MAX_SATURATION + 0.3
        for _ in range(20):
            rgb = jittered_colour(name, rng) / 255.0
            jh, js, _ = colorsys.rgb_to_hsv(*rgb)
            # The jittered colour is nearest (in hue) to its own nominal colour.
            nearest = min(COLOURS, key=lambda n: min(abs(COLOURS[n][0] - jh), 1 - abs(COLOURS[n][0] - jh)))
            assert nearest == name
            assert js > 0.6


def test_backgrounds_are_textured_and_desaturated():
    rng = np.random.default_rng(0)
    for _ in range(5):
        bg = np.clip(render_background(96, 96, rng), 0, 255) / 255.0
        mx, mn = bg.max(-1), bg.min(-1)
        saturation = (mx - mn) / np.maximum(mx, 1e-6)
        assert np.quantile(saturation, 0.99) < 0.45
        assert bg.std(axis=(0, 1)).mean() > 0.02, "not a flat colour"


@pytest.mark.parametrize("shape", list(SHAPES))
def test_shapes_are_polygons_of_the_requested_size(shape):
    outline = shape_outline(shape, size=40.0, angle_deg=10.0, aspect=1.1)
    extent = outline.max(0) - outline.min(0)
    assert extent.max() == pytest.approx(40.0)
    assert polygon_area(outline) > 0.25 * 40.0 * 40.0 * 0.5
    x0, y0, alpha = rasterise_polygon(outline + 50.0)
    assert alpha.sum() == pytest.approx(polygon_area(outline), rel=0.05)
    if shape == "circle":
        assert len(outline) >= 24


def test_rendered_file_is_the_planned_image(small):
    paths, _, _ = small
    plan = plan_dataset(SyntheticSpec(seed=3, **SMALL), include_val=False)
    pixels = render_planned_image(plan, split="train", index=0)
    assert pixels.shape == (96, 96, 3) and pixels.dtype == np.uint8
    with Image.open(paths.image_root / "train/000000000001.jpg") as im:
        decoded = np.asarray(im.convert("RGB"), dtype=np.float64)
    assert np.abs(decoded - pixels).mean() < 6.0, "the file holds the planned image (up to JPEG loss)"


@pytest.mark.parametrize("texture", list(TEXTURES))
def test_textures_show_on_the_smallest_objects(texture):
    polygon = shape_outline("square", size=SyntheticSpec.min_object_size) + 20.0
    _, _, rgb, alpha = object_pixels(polygon, "blue", texture, np.random.default_rng(0))
    inside = rgb[alpha > 0.99].mean(axis=-1)
    spread = np.quantile(inside, 0.9) - np.quantile(inside, 0.1)
    if texture == "solid":
        assert spread < 30
    else:
        assert spread > 60, "the pattern's dark second colour is visible"
