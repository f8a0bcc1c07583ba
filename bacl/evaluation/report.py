"""Human-readable views of a metrics dict: the summary table printed after evaluation."""

from __future__ import annotations

from typing import Any

SUMMARY_KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "APr", "APc", "APf")


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


def format_comparison_table(rows: dict[str, dict[str, Any]], *, keys: tuple[str, ...] = SUMMARY_KEYS) -> str:
    """Markdown table: one row per named metrics dict."""
    lines = ["| run | " + " | ".join(keys) + " |", "|---|" + "---:|" * len(keys)]
    for name, metrics in rows.items():
        lines.append(f"| {name} | " + " | ".join(_fmt(metrics.get(k)).strip() for k in keys) + " |")
    return "\n".join(lines)
