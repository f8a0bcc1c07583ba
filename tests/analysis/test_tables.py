import pytest

from bacl.analysis.tables import format_value, markdown_table


def test_format_value():
    assert format_value(None) == "n/a" and format_value(float("nan")) == "n/a"
    assert format_value(0.1234, percent=True) == "12.3"
    assert format_value(3) == "3" and format_value("x") == "x" and format_value(0.5, digits=3) == "0.500"


def test_markdown_table():
    rows = [{"name": "a|b", "AP": 0.5, "n": 2}, {"name": "c", "AP": None, "n": 0}]
    assert markdown_table(rows, ["name", "AP", "n"], percent=["AP"]).splitlines() == [
        "| name | AP | n |", "|---|---|---|", "| a\\|b | 50.0 | 2 |", "| c | n/a | 0 |"]
    with pytest.raises(ValueError):
        markdown_table(rows, ["name"], headers=["a", "b"])
