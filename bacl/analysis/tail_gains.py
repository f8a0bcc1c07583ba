"""Where a method gains over a baseline: AP by frequency bin and by training image count,
per-class AP changes, the classes gained and lost most.

Inputs are the metrics dicts ``bacl evaluate`` writes (``metrics.json``): the LVIS
summary numbers and ``per_class``, a list of ``{category_id, name, frequency,
image_count, AP}`` where ``image_count`` counts training images (LVIS category
records carry it) and ``AP`` is ``None`` for a class without validation ground truth.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from ..atomic_io import atomic_write
from ..errors import MissingFileError
from .errors import AnalysisInputError

FREQUENCY_BINS = ("r", "c", "f")
BIN_NAMES = {"r": "rare", "c": "common", "f": "frequent"}
#: Default edges of training-image-count bins: [1, 5), [5, 11), [11, 31), ... LVIS's
#: rare/common/frequent borders (10/100 images) are edges too.
IMAGE_COUNT_EDGES = (1, 5, 11, 31, 101, 301, 1001)
PER_CLASS_COLUMNS = ("category_id", "name", "frequency", "image_count", "AP")


def load_metrics(path: str | Path) -> dict[str, Any]:
    """A metrics json written by ``bacl evaluate``; errors name the file."""
    path = Path(path)
    try:
        metrics = json.loads(path.read_text())
    except FileNotFoundError:
        raise MissingFileError(f"{path}: no metrics file; run bacl evaluate first") from None
    except ValueError as err:
        raise AnalysisInputError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(metrics, dict) or not isinstance(metrics.get("per_class"), list):
        raise AnalysisInputError(f"{path}: not a metrics file of bacl evaluate (no per_class list)")
    return metrics


def per_class_records(metrics: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Classes with a defined AP, sorted by category id: ``{category_id, name, frequency,
    image_count, AP}`` (``image_count``: training images of the class)."""
    rows = []
    for rec in metrics["per_class"]:
        if rec.get("AP") is None:
            continue
        rows.append({"category_id": int(rec["category_id"]), "name": str(rec.get("name", rec["category_id"])),
                     "frequency": rec.get("frequency"), "image_count": int(rec.get("image_count", 0)),
                     "AP": float(rec["AP"])})
    return sorted(rows, key=lambda r: r["category_id"])


def write_per_class_csv(path: str | Path, metrics: Mapping[str, Any]) -> None:
    """:func:`per_class_records` as CSV (columns :data:`PER_CLASS_COLUMNS`), written
    atomically: DVC plots AP against ``image_count`` from it."""
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(PER_CLASS_COLUMNS)
    for row in per_class_records(metrics):
        writer.writerow([row["category_id"], row["name"], row["frequency"], row["image_count"], f"{row['AP']:.6f}"])
    data = text.getvalue().encode()
    atomic_write(path, lambda handle: handle.write(data))


def read_per_class_csv(path: str | Path) -> list[dict[str, Any]]:
    """The rows :func:`write_per_class_csv` wrote, typed again."""
    with open(path, newline="") as handle:
        return [{"category_id": int(r["category_id"]), "name": r["name"], "frequency": r["frequency"],
                 "image_count": int(r["image_count"]), "AP": float(r["AP"])} for r in csv.DictReader(handle)]


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def ap_by_frequency(metrics: Mapping[str, Any]) -> dict[str, float | None]:
    """``{"AP", "APr", "APc", "APf"}`` as the evaluator reports them (``None`` where undefined)."""
    out = {}
    for key in ("AP", "APr", "APc", "APf"):
        value = metrics.get(key)
        out[key] = None if value is None or float(value) < 0 else float(value)
    return out


def bin_label(lo: int, hi: float) -> str:
    if math.isinf(hi):
        return f">={lo}"
    return str(lo) if hi - lo == 1 else f"{lo}-{int(hi) - 1}"


def ap_by_image_count(metrics: Mapping[str, Any], edges: Iterable[int] = IMAGE_COUNT_EDGES) -> list[dict[str, Any]]:
    """Mean per-class AP over classes grouped by training image count.

    Bins are ``[edges[i], edges[i+1])`` and a last open one ``[edges[-1], inf)``; classes
    below ``edges[0]`` are left out. Returns one row per bin, ``{lo, hi, label, classes,
    AP}`` with ``AP`` ``None`` for an empty bin.
    """
    edges = [int(e) for e in edges]
    if not edges or edges != sorted(set(edges)):
        raise ValueError(f"edges must be strictly increasing, got {edges}")
    bounds = list(zip(edges, edges[1:] + [math.inf]))
    records = per_class_records(metrics)
    rows = []
    for lo, hi in bounds:
        aps = [r["AP"] for r in records if lo <= r["image_count"] < hi]
        rows.append({"lo": lo, "hi": hi, "label": bin_label(lo, hi), "classes": len(aps), "AP": _mean(aps)})
    return rows


def compare_frequency_bins(baseline: Mapping[str, Any], method: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``AP, APr, APc, APf`` of both runs and the change: rows ``{metric, baseline, method,
    delta}`` (``delta`` ``None`` where either is undefined)."""
    a, b = ap_by_frequency(baseline), ap_by_frequency(method)
    return [{"metric": k, "baseline": a[k], "method": b[k],
             "delta": None if a[k] is None or b[k] is None else b[k] - a[k]} for k in a]


def ap_changes(baseline: Mapping[str, Any], method: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Per-class AP of both runs for the classes defined in both, sorted by training image
    count (then id): ``{category_id, name, frequency, image_count, AP_baseline, AP_method,
    delta}``. The two metrics must describe the same categories."""
    base = {r["category_id"]: r for r in per_class_records(baseline)}
    new = {r["category_id"]: r for r in per_class_records(method)}
    ids_a = {int(r["category_id"]) for r in baseline["per_class"]}
    ids_b = {int(r["category_id"]) for r in method["per_class"]}
    if ids_a != ids_b:
        raise AnalysisInputError(f"the two metrics have different categories ({len(ids_a ^ ids_b)} differ): "
                                 "were they evaluated on the same annotations?")
    rows = []
    for cat_id in sorted(base.keys() & new.keys()):
        a, b = base[cat_id], new[cat_id]
        rows.append({"category_id": cat_id, "name": a["name"], "frequency": a["frequency"],
                     "image_count": a["image_count"], "AP_baseline": a["AP"], "AP_method": b["AP"],
                     "delta": b["AP"] - a["AP"]})
    return sorted(rows, key=lambda r: (r["image_count"], r["category_id"]))


def top_changes(changes: Sequence[Mapping[str, Any]], k: int = 5) -> tuple[list[dict], list[dict]]:
    """The ``k`` classes gained most (``delta > 0``, largest first) and lost most
    (``delta < 0``, largest loss first) among :func:`ap_changes` rows."""
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    gained = sorted((dict(r) for r in changes if r["delta"] > 0), key=lambda r: (-r["delta"], r["category_id"]))
    lost = sorted((dict(r) for r in changes if r["delta"] < 0), key=lambda r: (r["delta"], r["category_id"]))
    return gained[:k], lost[:k]


def mean_change_by_frequency(changes: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per frequency bin: classes, mean AP change, and how many classes gained / lost."""
    out = {}
    for f in FREQUENCY_BINS:
        deltas = [r["delta"] for r in changes if r["frequency"] == f]
        out[f] = {"classes": len(deltas), "mean_delta": _mean(deltas),
                  "gained": sum(d > 0 for d in deltas), "lost": sum(d < 0 for d in deltas)}
    return out


def gallery_classes(changes: Sequence[Mapping[str, Any]], *, frequency: str = "r",
                    num: int = 4) -> list[dict[str, Any]]:
    """The classes of frequency bin ``frequency`` a gallery shows, from :func:`ap_changes`
    rows: the ``ceil(num / 2)`` that gained most and the ``floor(num / 2)`` that lost most
    (the other side fills in when one runs short), then unchanged ones, fewest training
    images first. Ties go to the rarer class, then the lower id. Each row is a copy with
    ``pick``: ``"gained"``, ``"lost"`` or ``"unchanged"``; at most ``num`` rows, whatever
    the number of classes."""
    if num < 0:
        raise ValueError(f"num must be >= 0, got {num}")
    rows = [dict(r) for r in changes if r["frequency"] == frequency]
    rarest = lambda r: (r["image_count"], r["category_id"])  # noqa: E731
    gained = sorted((r for r in rows if r["delta"] > 0), key=lambda r: (-r["delta"], *rarest(r)))
    lost = sorted((r for r in rows if r["delta"] < 0), key=lambda r: (r["delta"], *rarest(r)))
    unchanged = sorted((r for r in rows if r["delta"] == 0), key=rarest)
    want_gained = min(len(gained), max(num - len(lost), (num + 1) // 2))
    picks = [{**r, "pick": "gained"} for r in gained[:want_gained]]
    picks += [{**r, "pick": "lost"} for r in lost[: num - len(picks)]]
    picks += [{**r, "pick": "unchanged"} for r in unchanged[: num - len(picks)]]
    return picks


def describe_picks(picks: Sequence[Mapping[str, Any]]) -> str:
    """What :func:`gallery_classes` picked, for a title: e.g. ``"2 gained most, 1 lost most"``."""
    words = {"gained": "gained most", "lost": "lost most", "unchanged": "unchanged"}
    counts = [(sum(p["pick"] == key for p in picks), text) for key, text in words.items()]
    return ", ".join(f"{n} {text}" for n, text in counts if n) or "none"
