"""Boxes drawn on images, for `bacl predict --draw` and the notebooks' galleries."""

from __future__ import annotations

import zlib
from collections import defaultdict
from pathlib import Path
from typing import Any, Iterable

from PIL import Image, ImageDraw

PALETTE = ["#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4", "#42d4f4", "#f032e6"]


def draw_boxes(image: Image.Image, boxes: Iterable[Iterable[float]], labels: Iterable[str],
               scores: Iterable[float] | None = None) -> Image.Image:
    """A copy of ``image`` with xyxy ``boxes`` and their labels drawn on it."""
    out = image.convert("RGB").copy()
    draw = ImageDraw.Draw(out)
    scores = list(scores) if scores is not None else None
    for i, (box, label) in enumerate(zip(boxes, labels)):
        colour = PALETTE[zlib.crc32(label.encode()) % len(PALETTE)]
        x1, y1, x2, y2 = [float(v) for v in box]
        text = label if scores is None else f"{label} {scores[i]:.2f}"
        # Label on a dark strip in the box's colour, above the box where there is room
        # (else just inside its top edge): readable on any background, the box stays whole.
        left, top, right, bottom = draw.textbbox((0, 0), text)
        height = bottom - top + 2
        ty = y1 - height if y1 - height >= 0 else y1 + 2
        draw.rectangle([x1, ty, x1 + right - left + 3, ty + height], fill="#000000")
        draw.text((x1 + 2, ty + 1 - top), text, fill=colour)
        draw.rectangle([x1, y1, x2, y2], outline=colour, width=2)
    return out


def draw_predictions(records: list[dict[str, Any]], *, image_folder: str | Path, out_dir: str | Path) -> int:
    """Write one annotated copy per image that has predictions; returns how many were written."""
    by_file: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for rec in records:
        by_file[rec["file_name"]].append(rec)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, recs in by_file.items():
        with Image.open(Path(image_folder) / name) as img:
            drawn = draw_boxes(img, [r["bbox_xyxy"] for r in recs], [r["label"] for r in recs],
                               [r["score"] for r in recs])
        drawn.save(out_dir / (Path(name).stem + ".png"))
    return len(by_file)
