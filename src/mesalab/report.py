"""The HTML report: one self-contained file (figures embedded) with the claims table first."""

from __future__ import annotations

import base64
import json
from importlib import resources
from pathlib import Path

import jinja2

from mesalab import store
from mesalab.studies.verdicts import Claim, counts


def render(run_dir: Path) -> str:
    run_dir = Path(run_dir)
    meta = store.read_json(run_dir / "run.json", {})
    claims = [Claim.from_dict(c) for c in store.read_json(run_dir / "claims.json", {}).get("claims", [])]
    findings = [c for c in claims if c.kind == "finding"]
    checks = [c for c in claims if c.kind == "check"]
    tally = {kind: {v: sum(c.verdict == v for c in rows) for v in ("PASS", "FAIL", "INCONCLUSIVE", "NOT RUN")}
             for kind, rows in (("findings", findings), ("checks", checks))}
    changes = [(c, ch) for c in claims for ch in c.changes]
    figures = []
    for f in store.read_json(run_dir / "figures.json", []):
        png = run_dir / "figures" / f["file"]
        if png.exists():
            figures.append({**f, "data": base64.b64encode(png.read_bytes()).decode()})
    template = resources.files("mesalab").joinpath("templates/report.html").read_text()
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    return env.from_string(template).render(
        meta={"seconds": None, **meta}, findings=findings, checks=checks, tally=tally, changes=changes,
        passed={k: counts(claims, k) for k in ("finding", "check")}, figures=figures,
        notes=store.read_json(run_dir / "results.json", {}).get("notes", []),
        config=json.dumps(store.read_json(run_dir / "config.json", {}), indent=2),
        env={"device": "?", "cpu_count": "?", "python": "?", "platform": "?", "versions": {}, "git_commit": None,
             **store.read_json(run_dir / "environment.json", {})},
    )


def build(run_dir: Path) -> Path:
    """(Re)write run_dir/report.html from the files of the run."""
    path = Path(run_dir) / "report.html"
    store.write_text(path, render(Path(run_dir)))
    return path
