"""The documentation's code blocks run, at reduced sizes, and show what the text says they show."""

import re
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs"


def code_blocks(page: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", (DOCS / page).read_text(), flags=re.S)


def test_gd_equivalence_walkthrough_runs_and_is_short(capsys):
    blocks = code_blocks("gd-equivalence.md")
    assert sum(len(b.strip().splitlines()) for b in blocks) < 40
    namespace = {"STEPS": 1500}
    for block in blocks:
        exec(compile(block, "docs/gd-equivalence.md", "exec"), namespace)
    out = capsys.readouterr().out
    trained, gd, cosine = (float(v) for v in re.search(r"trained (\S+)  GD-1 (\S+)  cosine (\S+)", out).groups())
    assert trained < 1.05 * gd and cosine > 0.98
    got, want = (float(v) for v in re.search(r"scale = (\S+)  vs  -eta/N = (\S+)", out).groups())
    assert abs(got / want - 1) < 0.1
