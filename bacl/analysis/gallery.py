"""Galleries: the same validation images with two runs' detections side by side."""

from __future__ import annotations

from collections import Counter
from typing import Any, Mapping, Sequence

from PIL import Image, ImageDraw

from .drawing import draw_boxes

TITLE_HEIGHT = 14


def images_with_frequency(annotations: Mapping[str, Any], frequency: str = "r", *, limit: int = 6) -> list[int]:
    """Ids of images holding ground truth of classes in frequency bin ``frequency``
    (``'r'``, ``'c'`` or ``'f'``), most such boxes first (then by id), at most ``limit``."""
    in_bin = {int(c["id"]) for c in annotations["categories"] if c.get("frequency") == frequency}
    counts = Counter(int(a["image_id"]) for a in annotations["annotations"] if int(a["category_id"]) in in_bin)
    return [image_id for image_id, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[: max(limit, 0)]]


def image_detections(detections: Sequence[Mapping[str, Any]], image_id: int, *, min_score: float = 0.3,
                     max_boxes: int = 10) -> list[Mapping[str, Any]]:
    """An image's detections with score >= ``min_score``, best first, at most ``max_boxes``."""
    kept = [d for d in detections if int(d["image_id"]) == int(image_id) and float(d["score"]) >= min_score]
    return sorted(kept, key=lambda d: -float(d["score"]))[:max_boxes]


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


def stack_rows(rows: Sequence[Image.Image], *, gap: int = 4) -> Image.Image:
    """Rows of :func:`side_by_side` one under the other."""
    if not rows:
        raise ValueError("stack_rows needs at least one row")
    out = Image.new("RGB", (max(r.width for r in rows), sum(r.height for r in rows) + gap * (len(rows) - 1)), "white")
    y = 0
    for r in rows:
        out.paste(r, (0, y))
        y += r.height + gap
    return out
