"""Markdown tables for the notebooks (no dataframe library needed)."""

from __future__ import annotations

from typing import Any, Mapping, Sequence


def format_value(value: Any, *, percent: bool = False, digits: int = 1) -> str:
    """Numbers with ``digits`` decimals (times 100 with ``percent``), ``n/a`` for None/NaN."""
    if value is None or (isinstance(value, float) and value != value):
        return "n/a"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int) and not percent:
        return str(value)
    return f"{100 * value if percent else value:.{digits}f}"


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], *,
                   headers: Sequence[str] | None = None, percent: Sequence[str] = (), digits: int = 1) -> str:
    """A markdown table of ``rows`` (dicts) over ``columns``; the columns named in ``percent``
    are shown times 100. ``|`` in cells is escaped."""
    headers = list(headers) if headers is not None else list(columns)
    if len(headers) != len(columns):
        raise ValueError(f"{len(headers)} headers for {len(columns)} columns")
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [format_value(row.get(c), percent=c in percent, digits=digits).replace("|", "\\|") for c in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
