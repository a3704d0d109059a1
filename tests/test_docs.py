"""The documentation's code blocks run, at reduced sizes, and show what the text says they show."""

import re
from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs"


def code_blocks(page: str, steps: int) -> list[str]:
    """The page's code blocks, its `STEPS = n` line set to `steps` (the tests run shorter)."""
    blocks = re.findall(r"```python\n(.*?)```", (DOCS / page).read_text(), flags=re.S)
    assert sum(len(re.findall(r"^STEPS = \d+", b, flags=re.M)) for b in blocks) == 1, page
    return [re.sub(r"^STEPS = \d+", f"STEPS = {steps}", b, flags=re.M) for b in blocks]


def test_gd_equivalence_walkthrough_runs_and_is_short(capsys):
    blocks = code_blocks("gd-equivalence.md", 1500)
    assert sum(len(b.strip().splitlines()) for b in blocks) < 41
    namespace = {}
    for block in blocks:
        exec(compile(block, "docs/gd-equivalence.md", "exec"), namespace)
    out = capsys.readouterr().out
    trained, gd, cosine = (float(v) for v in re.search(r"trained (\S+)  GD-1 (\S+)  cosine (\S+)", out).groups())
    assert trained < 1.05 * gd and cosine > 0.98
    got, want = (float(v) for v in re.search(r"scale = (\S+)  vs  -eta/N = (\S+)", out).groups())
    assert abs(got / want - 1) < 0.1


def test_induction_circuits_walkthrough_runs_and_clamps_during_training(capsys):
    blocks = code_blocks("induction-circuits.md", 300)
    namespace = {}
    for block in blocks:
        exec(compile(block, "docs/induction-circuits.md", "exec"), namespace)
    out = capsys.readouterr().out
    rows = dict(re.findall(r"^(.+?)\s+phase change at steps (\[.*\])$", out, flags=re.M))
    assert set(rows) == {"no clamp", "perfect layer 1", "perfect match"}
    # The perfect induction pattern holds from step 0: its runs change phase within 300 steps.
    assert all(s <= 300 for s in eval(rows["perfect match"]))
