"""Planning the synthetic benchmark: classes, frequency bins, image contents, layouts.

Everything that decides *what* is in the benchmark happens here, before any pixel is
painted, so the realised LVIS statistics (image and instance counts, frequency bins)
are known and testable without rendering:

1. Classes are the product shape x colour x texture.
2. Frequency bins: a set of frequent classes covering every attribute value, rare
   classes chosen among those with a frequent *sibling* (a class differing in one
   attribute only), the rest common. So every rare class looks like a frequent one,
   which is the confusion BACL's balanced classification targets.
3. Target training-image counts per class: rare 1-10, common 12-95, frequent >= 120
   with the frequent curve absorbing the remaining slot budget; val gets a flatter
   profile with at least ``val_min_instances`` images per class.
4. Classes are assigned to images so that every class is in exactly its target number
   of images, extra instances of present classes fill each image up to its object
   count, and a layout with capped occlusion is found for every object (a class's
   first instance in an image is never dropped, so the image counts are exact).
5. Federated labels: ``neg_category_ids`` from absent classes (favouring confusable
   ones) and, in a few images, a class marked not exhaustive with some of its
   instances left unannotated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Sequence

import numpy as np

from ..errors import BaclError

from .synthetic_render import COLOURS, TEXTURES
from .synthetic_shapes import SHAPES, polygon_mask, shape_outline

# LVIS bins by number of training images: rare 1-10, common 11-100, frequent > 100.
RARE_MAX_IMAGES = 10
COMMON_MAX_IMAGES = 100
# Planned training-image counts: rare spans its whole bin (LVIS has many one-image
# classes); common and frequent keep a margin from the 100-image edge.
RARE_TARGET_RANGE = (1, 10)
COMMON_TARGET_RANGE = (12, 95)
FREQUENT_MIN_TARGET = 120
# Distinct classes per image, as a fraction of the mean object count: the rest of
# the objects are extra instances of classes already present (LVIS images hold
# several instances of their frequent classes).
DISTINCT_FRACTION = 0.8
# Confusable absent classes (sharing two attributes with a present class) are this
# much more likely to be drawn as verified negatives.
CONFUSABLE_NEG_WEIGHT = 3.0
# Layout search: attempts per object, and whole-image restarts.
_OBJECT_ATTEMPTS = 40
_EXTRA_OBJECT_ATTEMPTS = 12
_LAYOUT_RESTARTS = 8
_ROTATION_JITTER_DEG = 15.0
_LOG_ASPECT_RANGE = (math.log(0.85), math.log(1.18))
# Class assignment retries (a fresh random draw) before giving up.
_ASSIGNMENT_RETRIES = 20


@dataclass(frozen=True, kw_only=True)
class SyntheticSpec:
    """Every parameter of the synthetic benchmark, validated.

    Sizes are in pixels. Defaults give 60 classes (5 shapes x 4 colours x 3 textures;
    18 rare, 24 common, 18 frequent), 1200 train and 300 val images of 160 x 160 with
    2-6 objects of 14-80 px each: small enough to generate in seconds and to train
    a small Faster R-CNN on two CPU cores in minutes.
    """

    seed: int = 0
    num_train_images: int = 1200
    num_val_images: int = 300
    image_size: int = 160
    num_shapes: int = 5
    num_colours: int = 4
    num_textures: int = 3
    objects_per_image: tuple[int, int] = (2, 6)
    min_object_size: float = 14.0
    max_object_fraction: float = 0.5
    max_occlusion: float = 0.35
    rare_fraction: float = 0.3
    common_fraction: float = 0.4
    val_min_instances: int = 10
    neg_fraction: float = 0.4
    not_exhaustive_fraction: float = 0.05

    def __post_init__(self) -> None:
        object.__setattr__(self, "objects_per_image", tuple(int(v) for v in self.objects_per_image))
        _require(isinstance(self.seed, (int, np.integer)) and self.seed >= 0, "seed", self.seed,
                 "must be an integer >= 0")
        _require(self.num_train_images >= 1, "num_train_images", self.num_train_images, "must be >= 1")
        _require(self.num_val_images >= 1, "num_val_images", self.num_val_images, "must be >= 1")
        _require(self.image_size >= 32, "image_size", self.image_size, "must be >= 32")
        for name, catalogue in (("num_shapes", SHAPES), ("num_colours", COLOURS), ("num_textures", TEXTURES)):
            value = getattr(self, name)
            _require(1 <= value <= len(catalogue), name, value, f"must be in [1, {len(catalogue)}]")
        _require(self.num_classes >= 3, "num_shapes", self.num_shapes,
                 "shapes x colours x textures must give >= 3 classes (one per frequency bin)")
        lo_hi = self.objects_per_image
        _require(len(lo_hi) == 2 and 1 <= lo_hi[0] <= lo_hi[-1] <= 20, "objects_per_image", lo_hi,
                 "must be (min, max) with 1 <= min <= max <= 20")
        _require(self.min_object_size >= 6, "min_object_size", self.min_object_size, "must be >= 6")
        _require(0.0 < self.max_object_fraction <= 0.9, "max_object_fraction", self.max_object_fraction,
                 "must be in (0, 0.9]")
        _require(self.max_object_size >= self.min_object_size, "image_size", self.image_size,
                 f"too small: max_object_fraction * image_size = {self.max_object_size:g} is below "
                 f"min_object_size = {self.min_object_size:g}")
        _require(0.0 <= self.max_occlusion < 1.0, "max_occlusion", self.max_occlusion, "must be in [0, 1)")
        self._validate_bins()
        _require(self.val_min_instances >= 1, "val_min_instances", self.val_min_instances, "must be >= 1")
        _require(0.0 <= self.neg_fraction <= 1.0, "neg_fraction", self.neg_fraction, "must be in [0, 1]")
        _require(0.0 <= self.not_exhaustive_fraction <= 1.0, "not_exhaustive_fraction",
                 self.not_exhaustive_fraction, "must be in [0, 1]")
        n_r, n_c, n_f = self.bin_sizes
        min_train = minimum_train_images(self)
        _require(self.num_train_images >= min_train, "num_train_images", self.num_train_images,
                 f"too few to realise the frequency bins ({n_r} rare, {n_c} common and {n_f} frequent classes, "
                 f"each frequent one in > {COMMON_MAX_IMAGES} images); need >= {min_train}")
        min_val = max(math.ceil(self.num_classes * self.val_min_instances / self.distinct_per_image),
                      self.val_min_instances)
        _require(self.num_val_images >= min_val, "num_val_images", self.num_val_images,
                 f"too few for {self.val_min_instances} instances of each of {self.num_classes} classes; "
                 f"need >= {min_val}")

    def _validate_bins(self) -> None:
        _require(0.0 < self.rare_fraction < 1.0, "rare_fraction", self.rare_fraction, "must be in (0, 1)")
        _require(0.0 < self.common_fraction < 1.0 - self.rare_fraction, "common_fraction", self.common_fraction,
                 "must be in (0, 1 - rare_fraction)")
        n_r, n_c, n_f = self.bin_sizes
        _require(n_r >= 1, "rare_fraction", self.rare_fraction, f"gives no rare class out of {self.num_classes}")
        _require(n_c >= 1, "common_fraction", self.common_fraction,
                 f"gives no common class out of {self.num_classes}")
        needed = max(self.num_shapes, self.num_colours, self.num_textures)
        _require(n_f >= needed, "rare_fraction", self.rare_fraction,
                 f"leaves {n_f} frequent classes, fewer than the {needed} needed for every attribute value to "
                 "appear among frequent classes (lower rare_fraction or common_fraction)")

    @property
    def shapes(self) -> list[str]:
        return list(SHAPES)[: self.num_shapes]

    @property
    def colours(self) -> list[str]:
        return list(COLOURS)[: self.num_colours]

    @property
    def textures(self) -> list[str]:
        return list(TEXTURES)[: self.num_textures]

    @property
    def num_classes(self) -> int:
        return self.num_shapes * self.num_colours * self.num_textures

    @property
    def max_object_size(self) -> float:
        return self.max_object_fraction * self.image_size

    @property
    def bin_sizes(self) -> tuple[int, int, int]:
        """Planned number of (rare, common, frequent) classes."""
        n_r = int(round(self.num_classes * self.rare_fraction))
        n_c = int(round(self.num_classes * self.common_fraction))
        return n_r, n_c, self.num_classes - n_r - n_c

    @property
    def distinct_per_image(self) -> float:
        """Planned mean number of distinct classes per image."""
        lo, hi = self.objects_per_image
        return max(1.0, DISTINCT_FRACTION * (lo + hi) / 2.0)

    def as_dict(self) -> dict:
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value.item() if isinstance(
                value, np.generic) else value
        return out


class SpecError(BaclError, ValueError):
    """A benchmark setting the generator cannot realise; ``key`` names it."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def _require(ok: bool, name: str, value: object, message: str) -> None:
    if not ok:
        raise SpecError(name, f"{name}={value!r}: {message}")


@dataclass(frozen=True)
class SyntheticClass:
    """One class: a composition of a shape, a colour and a texture."""

    shape: str
    colour: str
    texture: str

    @property
    def name(self) -> str:
        return f"{self.colour}_{self.shape}_{self.texture}"

    @property
    def attributes(self) -> tuple[str, str, str]:
        return self.shape, self.colour, self.texture

    def shared_attributes(self, other: "SyntheticClass") -> int:
        return sum(a == b for a, b in zip(self.attributes, other.attributes))


def compose_classes(shapes: Sequence[str], colours: Sequence[str], textures: Sequence[str]) -> list[SyntheticClass]:
    """All shape x colour x texture classes, in that nesting order (category id order)."""
    return [SyntheticClass(s, c, t) for s in shapes for c in colours for t in textures]


@dataclass
class PlannedObject:
    """One object: class index (0-based), outline ``(K, 2)`` in pixels, whether annotated."""

    category: int
    polygon: np.ndarray
    annotated: bool = True


@dataclass
class PlannedImage:
    """One image: objects in paint order (later on top) and its federated label lists."""

    objects: list[PlannedObject]
    neg_categories: list[int] = field(default_factory=list)
    not_exhaustive_categories: list[int] = field(default_factory=list)


@dataclass
class DatasetPlan:
    """Classes, their planned bins (``"r"/"c"/"f"``) and the planned train / val images."""

    spec: SyntheticSpec
    classes: list[SyntheticClass]
    frequency: list[str]
    train_targets: np.ndarray
    train: list[PlannedImage]
    val: list[PlannedImage]


def frequency_of(image_count: int) -> str:
    """LVIS bin of a class with ``image_count`` training images."""
    if image_count <= RARE_MAX_IMAGES:
        return "r"
    if image_count <= COMMON_MAX_IMAGES:
        return "c"
    return "f"


def assign_frequency_bins(
    classes: Sequence[SyntheticClass], *, num_rare: int, num_common: int, rng: np.random.Generator
) -> tuple[list[int], list[int], list[int]]:
    """Choose (rare, common, frequent) class indices, each list in random rank order.

    Frequent classes cover every shape, colour and texture; rare classes are drawn
    from classes with a frequent sibling (two shared attributes). Several random
    orders are tried; if none gives every rare class a sibling (only possible for
    tiny attribute sets), the order with the most is kept.
    """
    n = len(classes)
    num_frequent = n - num_rare - num_common
    values = [sorted({c.attributes[k] for c in classes}) for k in range(3)]
    best: tuple[int, list[int], list[int], list[int]] | None = None
    for _ in range(200):
        order = [int(i) for i in rng.permutation(n)]
        covered: list[set[str]] = [set(), set(), set()]
        frequent: list[int] = []
        for i in order:
            if any(classes[i].attributes[k] not in covered[k] for k in range(3)):
                frequent.append(i)
                for k in range(3):
                    covered[k].add(classes[i].attributes[k])
            if all(len(covered[k]) == len(values[k]) for k in range(3)):
                break
        if len(frequent) > num_frequent:
            continue
        frequent += [i for i in order if i not in frequent][: num_frequent - len(frequent)]
        rest = [i for i in order if i not in frequent]
        with_sibling = [i for i in rest if any(classes[i].shared_attributes(classes[f]) == 2 for f in frequent)]
        others = [i for i in rest if i not in with_sibling]
        rare = (with_sibling + others)[:num_rare]
        common = [i for i in rest if i not in rare]
        score = min(len(with_sibling), num_rare)
        if best is None or score > best[0]:
            best = (score, rare, common, frequent)
        if score == num_rare:
            break
    if best is None:
        raise ValueError(f"cannot cover every attribute value with {num_frequent} frequent classes")
    # Rank order within a bin is random, independent of how classes were picked.
    _, rare, common, frequent = best
    return [list(rng.permutation(b).astype(int)) for b in (rare, common, frequent)]


def _frequent_targets(num: int, budget: int, cap: int) -> np.ndarray:
    """``num`` descending counts >= FREQUENT_MIN_TARGET, geometric, summing to ``budget`` (<= cap each)."""
    lo = FREQUENT_MIN_TARGET
    if num == 1:
        return np.array([min(budget, cap)])
    k = np.arange(num)[::-1]

    def total(q: float) -> float:
        return float((lo * q ** k).sum())

    q_cap = (cap / lo) ** (1.0 / (num - 1))
    if total(q_cap) <= budget:
        q = q_cap
    else:
        a, b = 1.0, q_cap
        for _ in range(100):
            m = (a + b) / 2.0
            a, b = (m, b) if total(m) < budget else (a, m)
        q = a
    counts = np.minimum(np.floor(lo * q ** k).astype(np.int64), cap)
    i = 0
    while counts.sum() < budget and (counts < cap).any():
        if counts[i % num] < cap:
            counts[i % num] += 1
        i += 1
    return counts


def _rare_common_targets(num_rare: int, num_common: int) -> tuple[np.ndarray, np.ndarray]:
    rare = np.rint(np.geomspace(RARE_TARGET_RANGE[1], RARE_TARGET_RANGE[0], num_rare)).astype(np.int64)
    common = np.rint(np.geomspace(COMMON_TARGET_RANGE[1], COMMON_TARGET_RANGE[0], num_common)).astype(np.int64)
    return rare, common


def minimum_train_images(spec: SyntheticSpec) -> int:
    """The fewest training images that realise the planned bins for ``spec``."""
    n_r, n_c, n_f = spec.bin_sizes
    rare, common = _rare_common_targets(n_r, n_c)
    slots = int(rare.sum() + common.sum()) + n_f * FREQUENT_MIN_TARGET
    return max(math.ceil(slots / spec.distinct_per_image), FREQUENT_MIN_TARGET, COMMON_TARGET_RANGE[1])


def train_image_targets(
    spec: SyntheticSpec, bins: tuple[list[int], list[int], list[int]]
) -> np.ndarray:
    """Planned number of training images per class (indexed by class)."""
    rare_ids, common_ids, frequent_ids = bins
    rare, common = _rare_common_targets(len(rare_ids), len(common_ids))
    budget = int(round(spec.num_train_images * spec.distinct_per_image))
    frequent = _frequent_targets(len(frequent_ids), budget - int(rare.sum() + common.sum()), spec.num_train_images)
    targets = np.zeros(spec.num_classes, dtype=np.int64)
    for ids, counts in ((rare_ids, rare), (common_ids, common), (frequent_ids, frequent)):
        targets[np.asarray(ids, dtype=np.int64)] = counts
    return targets


def val_image_targets(spec: SyntheticSpec, train_targets: np.ndarray) -> np.ndarray:
    """Val images per class: ``val_min_instances`` each, plus extra in proportion to
    the square root of the train count (flatter than train)."""
    n = spec.num_val_images
    base = np.full(spec.num_classes, spec.val_min_instances, dtype=np.int64)
    extra = max(0, int(round(n * spec.distinct_per_image)) - int(base.sum()))
    weights = np.sqrt(train_targets.astype(np.float64))
    share = extra * weights / weights.sum()
    add = np.floor(share).astype(np.int64)
    # Largest remainders first; ties by class index, so the result is deterministic.
    order = np.lexsort((np.arange(len(share)), -(share - add)))
    add[order[: extra - int(add.sum())]] += 1
    return np.minimum(base + add, n)


def assign_classes(
    targets: np.ndarray, capacities: np.ndarray, rng: np.random.Generator
) -> list[list[int]]:
    """Put class ``c`` in exactly ``targets[c]`` distinct images, image ``i`` holding at
    most ``capacities[i]`` classes and at least one.

    Classes are placed from the most to the least frequent, each into images drawn
    without replacement with weight proportional to their free capacity (empty images
    favoured). Raises ``RuntimeError`` if the draw paints itself into a corner.
    """
    n = len(capacities)
    remaining = capacities.astype(np.int64).copy()
    members: list[list[int]] = [[] for _ in range(n)]
    counts = np.zeros(n, dtype=np.int64)
    for c in np.argsort(-targets, kind="stable"):
        t = int(targets[c])
        if t == 0:
            continue
        free = np.flatnonzero(remaining > 0)
        if len(free) < t:
            raise RuntimeError(f"class {c} needs {t} images, only {len(free)} have room")
        weights = remaining[free] * np.where(counts[free] == 0, 4.0, 1.0)
        keys = np.log(weights) + rng.gumbel(size=len(free))
        chosen = np.sort(free[np.argsort(-keys, kind="stable")[:t]])
        for i in chosen:
            members[i].append(int(c))
        remaining[chosen] -= 1
        counts[chosen] += 1
    # An image left empty takes a class from an image holding several (counts unchanged).
    for i in np.flatnonzero(counts == 0):
        donors = np.flatnonzero(counts >= 2)
        if len(donors) == 0:
            raise RuntimeError("not enough class slots to give every image a class")
        j = int(rng.choice(donors))
        c = members[j].pop(int(rng.integers(len(members[j]))))
        members[i].append(c)
        counts[j] -= 1
        counts[i] += 1
    return members


class _LayoutFailed(Exception):
    pass


def _try_layout(
    objects: list[tuple[int, bool]], spec: SyntheticSpec, shapes: list[str], rng: np.random.Generator, shrink: float
) -> list[PlannedObject]:
    size = spec.image_size
    owner = np.full((size, size), -1, dtype=np.int32)
    full_area: list[int] = []
    visible: list[int] = []
    placed: list[PlannedObject] = []
    min_s = spec.min_object_size
    keep = 1.0 - spec.max_occlusion
    for category, required in objects:
        attempts = _OBJECT_ATTEMPTS if required else _EXTRA_OBJECT_ATTEMPTS
        for attempt in range(attempts):
            max_s = max(min_s, spec.max_object_size * shrink * 0.8 ** (attempt // 4))
            side = float(math.exp(rng.uniform(math.log(min_s), math.log(max_s))))
            shape = shapes[category]
            angle = 0.0 if shape == "circle" else rng.uniform(-_ROTATION_JITTER_DEG, _ROTATION_JITTER_DEG)
            aspect = float(math.exp(rng.uniform(_LOG_ASPECT_RANGE[0], _LOG_ASPECT_RANGE[1])))
            outline = shape_outline(shape, size=side, angle_deg=angle, aspect=aspect)
            half = outline.max(axis=0)
            # Keep a one-pixel margin so boxes lie strictly inside the image.
            centre = rng.uniform(half + 1.0, size - 1.0 - half)
            polygon = np.round(outline + centre, 2)
            x0, y0, mask = polygon_mask(polygon)
            area = int(mask.sum())
            if area == 0:
                continue
            h, w = mask.shape
            window = owner[y0 : y0 + h, x0 : x0 + w]
            under = window[mask]
            under = under[under >= 0]
            if under.size:
                covered = np.bincount(under, minlength=len(placed))
                hit = np.flatnonzero(covered).tolist()
                if any(visible[k] - covered[k] < keep * full_area[k] for k in hit):
                    continue
                for k in hit:
                    visible[k] -= int(covered[k])
            window[mask] = len(placed)
            full_area.append(area)
            visible.append(area)
            placed.append(PlannedObject(category=category, polygon=polygon))
            break
        else:
            if required:
                raise _LayoutFailed
    return placed


def layout_image(
    objects: list[tuple[int, bool]], spec: SyntheticSpec, shapes: list[str], rng: np.random.Generator
) -> list[PlannedObject]:
    """Place ``(class, required)`` objects in the given paint order.

    Each object is fully inside the image; a new object may cover at most
    ``max_occlusion`` of any earlier object's area (counted on the cumulative visible
    part). Optional objects that find no place are dropped; required ones trigger a
    restart of the image with smaller sizes.
    """
    for restart in range(_LAYOUT_RESTARTS):
        try:
            return _try_layout(objects, spec, shapes, rng, shrink=0.75**restart)
        except _LayoutFailed:
            continue
    raise RuntimeError(f"no layout found for {len(objects)} objects in a {spec.image_size}-px image")


def _plan_split(
    spec: SyntheticSpec,
    classes: list[SyntheticClass],
    targets: np.ndarray,
    duplicate_weights: np.ndarray,
    num_images: int,
    rng: np.random.Generator,
) -> list[PlannedImage]:
    lo, hi = spec.objects_per_image
    for retry in range(_ASSIGNMENT_RETRIES):
        capacities = rng.integers(lo, hi + 1, size=num_images)
        try:
            members = assign_classes(targets, capacities, rng)
            break
        except RuntimeError:
            if retry == _ASSIGNMENT_RETRIES - 1:
                raise
    shapes = [c.shape for c in classes]
    images = []
    for present, capacity in zip(members, capacities):
        present = sorted(present)
        extra = max(0, int(capacity) - len(present))
        w = duplicate_weights[present] / duplicate_weights[present].sum()
        duplicates = rng.choice(present, size=extra, p=w) if extra else []
        objects = [(c, True) for c in present] + [(int(c), False) for c in duplicates]
        order = rng.permutation(len(objects))
        images.append(PlannedImage(objects=layout_image([objects[k] for k in order], spec, shapes, rng)))
    _mark_not_exhaustive(images, spec.not_exhaustive_fraction, rng)
    _draw_negatives(images, classes, spec.neg_fraction, rng)
    return images


def _mark_not_exhaustive(images: list[PlannedImage], fraction: float, rng: np.random.Generator) -> None:
    """In ``fraction`` of the images (those with a repeated class), mark one repeated
    class not exhaustive and leave 1..n-1 of its n instances unannotated."""
    eligible = []
    for i, image in enumerate(images):
        cats = np.bincount([o.category for o in image.objects])
        if (cats >= 2).any():
            eligible.append(i)
    num = min(len(eligible), int(round(fraction * len(images))))
    for i in sorted(rng.choice(eligible, size=num, replace=False)) if num else []:
        image = images[i]
        cats = np.bincount([o.category for o in image.objects])
        c = int(rng.choice(np.flatnonzero(cats >= 2)))
        instances = [o for o in image.objects if o.category == c]
        for k in rng.choice(len(instances), size=int(rng.integers(1, len(instances))), replace=False):
            instances[k].annotated = False
        image.not_exhaustive_categories = [c]


def _draw_negatives(
    images: list[PlannedImage], classes: list[SyntheticClass], fraction: float, rng: np.random.Generator
) -> None:
    """``neg_category_ids``: a ``fraction`` of the absent classes, confusable ones favoured."""
    n = len(classes)
    shared = np.array([[a.shared_attributes(b) for b in classes] for a in classes])
    for image in images:
        present = np.zeros(n, dtype=bool)
        present[[o.category for o in image.objects]] = True
        absent = np.flatnonzero(~present)
        k = int(round(fraction * len(absent)))
        if k == 0:
            continue
        confusable = (shared[np.ix_(absent, np.flatnonzero(present))] >= 2).any(axis=1)
        keys = np.log(np.where(confusable, CONFUSABLE_NEG_WEIGHT, 1.0)) + rng.gumbel(size=len(absent))
        image.neg_categories = sorted(int(c) for c in absent[np.argsort(-keys, kind="stable")[:k]])


def plan_dataset(spec: SyntheticSpec, *, include_val: bool = True) -> DatasetPlan:
    """The complete, deterministic plan of the benchmark for ``spec`` (no pixels)."""
    classes = compose_classes(spec.shapes, spec.colours, spec.textures)
    n_r, n_c, _ = spec.bin_sizes
    rng = np.random.default_rng(np.random.SeedSequence([spec.seed, 0]))
    bins = assign_frequency_bins(classes, num_rare=n_r, num_common=n_c, rng=rng)
    train_targets = train_image_targets(spec, bins)
    frequency = [frequency_of(int(t)) for t in train_targets]
    duplicate_weights = np.sqrt(train_targets.astype(np.float64))
    train = _plan_split(spec, classes, train_targets, duplicate_weights, spec.num_train_images,
                        np.random.default_rng(np.random.SeedSequence([spec.seed, 1])))
    val: list[PlannedImage] = []
    if include_val:
        val = _plan_split(spec, classes, val_image_targets(spec, train_targets), duplicate_weights,
                          spec.num_val_images, np.random.default_rng(np.random.SeedSequence([spec.seed, 2])))
    return DatasetPlan(spec=spec, classes=classes, frequency=frequency, train_targets=train_targets,
                       train=train, val=val)
