"""The HTML report: one self-contained file (figures embedded) with the claims table first."""

from __future__ import annotations

import base64
import json
from importlib import resources
from pathlib import Path

import jinja2

from mesalab import store
from mesalab.studies.protocol import Claim


def render(run_dir: Path) -> str:
    run_dir = Path(run_dir)
    meta = store.read_json(run_dir / "run.json", {})
    claims = [Claim(**c) for c in store.read_json(run_dir / "claims.json", {}).get("claims", [])]
    counts = {v: sum(c.verdict == v for c in claims) for v in ("PASS", "FAIL", "NOT RUN")}
    figures = []
    for f in store.read_json(run_dir / "figures.json", []):
        png = run_dir / "figures" / f["file"]
        if png.exists():
            figures.append({**f, "data": base64.b64encode(png.read_bytes()).decode()})
    template = resources.files("mesalab").joinpath("templates/report.html").read_text()
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    return env.from_string(template).render(
        meta={"seconds": None, **meta}, claims=claims, counts=counts, figures=figures,
        notes=store.read_json(run_dir / "results.json", {}).get("notes", []),
        config=json.dumps(store.read_json(run_dir / "config.json", {}), indent=2),
        env={"device": "?", "cpu_count": "?", "python": "?", "platform": "?", "versions": {},
             **store.read_json(run_dir / "environment.json", {})},
    )


def build(run_dir: Path) -> Path:
    """(Re)write run_dir/report.html from the files of the run."""
    path = Path(run_dir) / "report.html"
    store.write_text(path, render(Path(run_dir)))
    return path
