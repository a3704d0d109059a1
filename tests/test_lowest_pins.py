""".ci/lowest.txt pins exactly pyproject.toml's lower bounds, so the CI step that installs it tests the real ones."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
UNTESTED = {"ray"}  # heavy, and its one test skips without it; see .ci/lowest.txt


def lower_bounds() -> dict[str, str]:
    """name -> the version after '>=' for the dependencies and the dev extras."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    out = {}
    for spec in project["dependencies"] + project["optional-dependencies"]["dev"]:
        if spec.startswith("mesalab["):  # the optional extras (tracking, docs): their tests skip without them
            continue
        m = re.fullmatch(r"([A-Za-z0-9_.\-]+)(\[[^]]*\])?\s*>=\s*([0-9][0-9A-Za-z.]*)", spec.strip())
        assert m, f"pyproject.toml: {spec!r} has no plain lower bound (name>=version) to test"
        out[m.group(1).lower()] = m.group(3)
    return {k: v for k, v in out.items() if k not in UNTESTED}


def pins() -> dict[str, str]:
    out = {}
    for line in (ROOT / ".ci" / "lowest.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            out[name.strip().lower()] = version.strip()
    return out


def same(bound: str, pin: str) -> bool:
    """'0.4' and '0.4.0' name the same version."""
    a, b = bound.split("."), pin.split(".")
    n = max(len(a), len(b))
    return a + ["0"] * (n - len(a)) == b + ["0"] * (n - len(b))


def test_lowest_pins_are_pyprojects_lower_bounds():
    bounds, pinned = lower_bounds(), pins()
    assert pinned.pop("jaxlib") == pinned["jax"]  # jax and jaxlib are released together
    assert set(pinned) == set(bounds), \
        f"pinned only: {sorted(set(pinned) - set(bounds))}; bound only: {sorted(set(bounds) - set(pinned))}"
    wrong = {k: (bounds[k], pinned[k]) for k in bounds if not same(bounds[k], pinned[k])}
    assert not wrong, f"pyproject lower bound vs .ci/lowest.txt pin: {wrong}"
