"""Views of a metrics dict: the summary table printed after evaluation, the headline
numbers alone (what a pipeline tracks as metrics), and the protocol they were measured
under."""

from __future__ import annotations

from typing import Any

SUMMARY_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "APr", "APc", "APf")
#: The evaluation settings every metrics dict carries (None where a budget is not used).
SETTING_KEYS = ("protocol", "max_dets", "max_dets_per_class")


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and value < 0):
        return "  n/a"
    return f"{100 * float(value):5.1f}"


def format_metrics_table(metrics: dict[str, Any], *, title: str | None = None) -> str:
    """A two-line table of the LVIS summary numbers in percent (n/a where undefined)."""
    header = " | ".join(f"{k:>5}" for k in SUMMARY_KEYS)
    row = " | ".join(_fmt(metrics.get(k)) for k in SUMMARY_KEYS)
    lines = [title] if title else []
    lines += [header, "-" * len(header), row]
    return "\n".join(lines)


def headline_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """The summary numbers without the per-class list and the parameters; undefined values
    (lvis-api's -1, e.g. APl when no object is large) become ``None``."""
    out: dict[str, Any] = {}
    for key in SUMMARY_KEYS:
        value = metrics.get(key)
        out[key] = None if value is None or float(value) < 0 else float(value)
    for key in ("num_images", "num_detections"):
        if key in metrics:
            out[key] = int(metrics[key])
    for key in SETTING_KEYS:
        if key in metrics:
            out[key] = metrics[key]
    if "protocols" in metrics:
        out["protocols"] = {name: headline_metrics(sub) for name, sub in metrics["protocols"].items()}
    return out


def evaluation_settings(metrics: dict[str, Any]) -> dict[str, Any]:
    """The protocol and detection budgets of ``metrics`` (:data:`SETTING_KEYS`); a
    metrics dict written before protocols existed is the LVIS protocol."""
    out = {key: metrics.get(key) for key in SETTING_KEYS}
    if out["protocol"] is None:
        out["protocol"] = "lvis"
    return out


def describe_protocol(metrics: dict[str, Any]) -> str:
    """One line naming the protocol and its budget, e.g. for a table's title."""
    settings = evaluation_settings(metrics)
    if settings["protocol"] == "lvis":
        return f"LVIS protocol, at most {settings['max_dets']} detections per image"
    name = {"fixed": "Fixed AP", "pooled": "pooled AP"}.get(settings["protocol"], settings["protocol"])
    return (f"{name}, at most {settings['max_dets_per_class']} detections per class over the set, "
            f"no per-image cap")
