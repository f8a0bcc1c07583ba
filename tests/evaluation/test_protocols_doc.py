"""docs/evaluation_protocols.md: its Python examples that need no data files run as written."""

import re
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "evaluation_protocols.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
SELF_CONTAINED = [b for b in BLOCKS if ".json" not in b]


def test_doc_has_a_self_contained_example():
    assert SELF_CONTAINED


@pytest.mark.parametrize("index", range(len(SELF_CONTAINED)))
def test_doc_python_block_runs(index, capsys):
    exec(compile(SELF_CONTAINED[index], f"evaluation_protocols.md block {index}", "exec"), {})
    assert capsys.readouterr().out.strip()
