"""Galleries: the same validation images with two runs' detections side by side.

A gallery shows a bounded set of classes (e.g. the rare classes whose AP changed most,
:func:`bacl.analysis.tail_gains.gallery_classes`), one image each, so it stays the same
size at 60 classes or 1,203."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any, Iterable, Mapping, Sequence

from PIL import Image, ImageDraw

from .drawing import draw_boxes

TITLE_HEIGHT = 14


def images_for_classes(annotations: Mapping[str, Any], category_ids: Sequence[int]) -> dict[int, int]:
    """For each of ``category_ids``, the id of the image holding most of its ground-truth
    boxes (ties: lower image id), preferring an image no earlier class took; classes
    without ground truth are left out. One pass over the annotations."""
    wanted = {int(c) for c in category_ids}
    counts: dict[int, Counter[int]] = defaultdict(Counter)
    for ann in annotations["annotations"]:
        cat = int(ann["category_id"])
        if cat in wanted:
            counts[cat][int(ann["image_id"])] += 1
    chosen: dict[int, int] = {}
    for cat in (int(c) for c in category_ids):
        if cat in chosen or not counts[cat]:
            continue
        ranked = sorted(counts[cat].items(), key=lambda kv: (-kv[1], kv[0]))
        taken = set(chosen.values())
        chosen[cat] = next((image for image, _ in ranked if image not in taken), ranked[0][0])
    return chosen


def by_image(records: Iterable[Mapping[str, Any]], image_ids: Iterable[int]) -> dict[int, list[Mapping[str, Any]]]:
    """LVIS records (detections or annotations) of the images ``image_ids``, grouped by
    image, in one pass (every requested image gets a list, maybe empty)."""
    out: dict[int, list[Mapping[str, Any]]] = {int(i): [] for i in image_ids}
    for rec in records:
        group = out.get(int(rec["image_id"]))
        if group is not None:
            group.append(rec)
    return out


def image_detections(detections: Sequence[Mapping[str, Any]], image_id: int, *, min_score: float = 0.3,
                     max_boxes: int = 10) -> list[Mapping[str, Any]]:
    """An image's detections with score >= ``min_score``, best first, at most ``max_boxes``."""
    kept = [d for d in detections if int(d["image_id"]) == int(image_id) and float(d["score"]) >= min_score]
    return sorted(kept, key=lambda d: -float(d["score"]))[:max_boxes]


def class_gallery(picks: Sequence[Mapping[str, Any]], annotations: Mapping[str, Any],
                  runs: Mapping[str, Sequence[Mapping[str, Any]]], *, min_score: float = 0.3,
                  max_boxes: int = 10) -> list[dict[str, Any]]:
    """The rows of a gallery of classes: per pick (rows of
    :func:`bacl.analysis.tail_gains.gallery_classes`), the validation image holding most
    of its boxes (:func:`images_for_classes`) and the panels to draw, each a ``(title,
    records)``: that class's ground truth, then each run's best detections of any class
    (score >= ``min_score``, at most ``max_boxes``), titled with the run's AP for the class
    in percent.

    ``runs`` maps a run's name to its detections and must name the runs of the picks'
    ``AP_baseline`` and ``AP_method`` in that order. Returns ``{image_id, category_id,
    panels}`` per pick with ground truth, in pick order.
    """
    if len(runs) != 2:
        raise ValueError(f"class_gallery compares two runs (baseline, method), got {len(runs)}")
    images = images_for_classes(annotations, [int(p["category_id"]) for p in picks])
    truth = by_image(annotations["annotations"], images.values())
    detections = {name: by_image(dets, images.values()) for name, dets in runs.items()}
    rows = []
    for pick in picks:
        cat = int(pick["category_id"])
        if cat not in images:
            continue
        image_id = images[cat]
        panels = [(f"{pick['name']} ({pick['image_count']} train imgs)",
                   [{"bbox": a["bbox"], "category_id": cat} for a in truth[image_id] if int(a["category_id"]) == cat])]
        for (name, dets), key in zip(detections.items(), ("AP_baseline", "AP_method")):
            panels.append((f"{name} AP {100 * float(pick[key]):.1f}",
                           image_detections(dets[image_id], image_id, min_score=min_score, max_boxes=max_boxes)))
        rows.append({"image_id": image_id, "category_id": cat, "panels": panels})
    return rows


def _xyxy(bbox: Sequence[float], scale: float = 1.0) -> list[float]:
    x, y, w, h = (float(v) * scale for v in bbox)
    return [x, y, x + w, y + h]


def draw_detections(image: Image.Image, detections: Sequence[Mapping[str, Any]], names: Mapping[int, str],
                    title: str | None = None, *, scale: float = 1.0) -> Image.Image:
    """``image`` enlarged ``scale`` times (small images stay legible) with LVIS-format
    ``detections`` (xywh, original pixels) labelled by ``names[category_id]`` and their
    scores (none when a record has no ``score``, e.g. ground truth), under a title strip
    when ``title`` is given."""
    if scale <= 0:
        raise ValueError(f"scale must be > 0, got {scale}")
    if scale != 1.0:
        image = image.resize((round(image.width * scale), round(image.height * scale)), Image.NEAREST)
    drawn = draw_boxes(image, [_xyxy(d["bbox"], scale) for d in detections],
                       [names.get(int(d["category_id"]), str(d["category_id"])) for d in detections],
                       [float(d["score"]) for d in detections] if all("score" in d for d in detections) else None)
    if title is None:
        return drawn
    out = Image.new("RGB", (drawn.width, drawn.height + TITLE_HEIGHT), "white")
    out.paste(drawn, (0, TITLE_HEIGHT))
    ImageDraw.Draw(out).text((2, 1), title, fill="black")
    return out


def side_by_side(image: Image.Image, panels: Sequence[tuple[str, Sequence[Mapping[str, Any]]]],
                 names: Mapping[int, str], *, gap: int = 4, scale: float = 1.0) -> Image.Image:
    """One row: ``image`` once per ``(title, detections)`` panel, ``gap`` pixels apart,
    each enlarged ``scale`` times."""
    drawn = [draw_detections(image, dets, names, title, scale=scale) for title, dets in panels]
    if not drawn:
        raise ValueError("side_by_side needs at least one panel")
    width = sum(d.width for d in drawn) + gap * (len(drawn) - 1)
    out = Image.new("RGB", (width, max(d.height for d in drawn)), "white")
    x = 0
    for d in drawn:
        out.paste(d, (x, 0))
        x += d.width + gap
    return out


def stack_rows(rows: Sequence[Image.Image], *, gap: int = 4, title: str | None = None) -> Image.Image:
    """Rows of :func:`side_by_side` one under the other, under a title strip when ``title``
    is given."""
    if not rows:
        raise ValueError("stack_rows needs at least one row")
    top = TITLE_HEIGHT + gap if title is not None else 0
    height = top + sum(r.height for r in rows) + gap * (len(rows) - 1)
    out = Image.new("RGB", (max(r.width for r in rows), height), "white")
    if title is not None:
        ImageDraw.Draw(out).text((2, 1), title, fill="black")
    y = top
    for r in rows:
        out.paste(r, (0, y))
        y += r.height + gap
    return out
