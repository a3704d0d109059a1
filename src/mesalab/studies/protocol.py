"""What a study is and what it returns.

A study is one module with:
    NAME, SUMMARY, SOURCE           strings shown by `mesalab list`
    Config                          a frozen config dataclass (flat fields, so `--set key=value` reaches all)
    PRESETS                         {"smoke": Config(...), "cpu": Config(...), "paper": Config(...)}
    run(cfg, ctx) -> dict           trains what it needs through the engine; returns JSON-ready results (a "notes"
                                    list of strings, if present, is shown under the claims table of the report)
    claims(cfg, results) -> [Claim] the paper's claims next to the measured numbers, with verdicts
    figures(cfg, results, ctx) -> [Figure]   writes PNGs into ctx.figures_dir
    experiment(cfg) -> Experiment   (optional) the training set-up that `mesalab sweep` runs over a grid
Thresholds are module constants with a comment citing where they come from, set before looking at results.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

VERDICTS = ("PASS", "FAIL", "NOT RUN")


@dataclasses.dataclass(frozen=True)
class Claim:
    """One row of the claims table.

    claim: the statement checked; source: where the paper makes it; paper: its number or statement;
    measured: mean over seeds (None when not run); spread: standard deviation over seeds; threshold: the pass
    rule in words; verdict: PASS, FAIL or NOT RUN; detail: per-seed values or why it was not run;
    unit: "" or "%" (measured and spread are fractions shown as percentages).
    """

    claim: str
    source: str
    paper: str
    measured: float | None
    spread: float | None
    threshold: str
    verdict: str
    detail: str = ""
    unit: str = ""

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"Claim.verdict = {self.verdict!r}; expected one of {', '.join(VERDICTS)}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for k in ("measured", "spread"):
            if d[k] is not None and not math.isfinite(d[k]):
                d[k] = None  # JSON has no NaN
        return d

    @property
    def measured_text(self) -> str:
        if self.measured is None:
            return "–"
        if self.unit == "%":
            spread = f" ± {100 * self.spread:.2g}" if self.spread is not None else ""
            return f"{100 * self.measured:.2f}{spread} %"
        spread = f" ± {self.spread:.3g}" if self.spread is not None else ""
        return f"{self.measured:.4g}{spread}"


def measured_claim(claim: str, source: str, paper: str, values: Sequence[float], threshold: str, passed: bool,
                   detail: str = "", unit: str = "") -> Claim:
    """A claim measured over seeds: mean ± std of `values`, verdict from `passed`."""
    v = np.asarray(values, float)
    return Claim(claim, source, paper, float(v.mean()), float(v.std()) if v.size > 1 else None, threshold,
                 "PASS" if passed else "FAIL", detail or ", ".join(f"{x:.4g}" for x in v), unit)


def not_run(claim: str, source: str, paper: str, threshold: str, why: str) -> Claim:
    return Claim(claim, source, paper, None, None, threshold, "NOT RUN", why)


@dataclasses.dataclass(frozen=True)
class Figure:
    """A figure file in the run's figures/ folder and a caption that says what to look for."""

    file: str
    title: str
    caption: str


@dataclasses.dataclass
class RunContext:
    """Where a study run writes, and how: its folder, whether to show progress and whether to resume."""

    dir: Path
    progress: bool = True
    resume: bool = False
    metrics: list[pd.DataFrame] = dataclasses.field(default_factory=list)

    @property
    def figures_dir(self) -> Path:
        path = self.dir / "figures"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def checkpoint_dir(self, part: str) -> Path:
        return self.dir / "checkpoints" / part

    def add_metrics(self, history: pd.DataFrame, part: str) -> None:
        """Record a training history (step, member, seed, metric, value) under a name for this part of the run."""
        self.metrics.append(history.assign(part=part))

    def metrics_frame(self) -> pd.DataFrame:
        if not self.metrics:
            return pd.DataFrame(columns=["step", "member", "seed", "metric", "value", "part"])
        return pd.concat(self.metrics, ignore_index=True)


@dataclasses.dataclass(frozen=True)
class Experiment:
    """A training set-up: what `mesalab sweep` runs for each grid point."""

    task: Any
    model: Any
    train: Any
