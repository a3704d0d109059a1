"""What a study is and what it returns.

A study is one module with:
    NAME, SUMMARY, SOURCE           strings shown by `mesalab list`
    Config                          a frozen config dataclass (flat fields, so `--set key=value` reaches all)
    PRESETS                         {"smoke": Config(...), "cpu": Config(...), "paper": Config(...)}
    run(cfg, ctx) -> dict           trains what it needs through the engine (ctx.fit); returns JSON-ready results
                                    (a "notes" list of strings, if present, is shown under the tables of the report)
    claims(cfg, results) -> [Claim] findings and checks (studies/verdicts.py), pure functions of the results
    figures(cfg, results, ctx) -> [Figure]   writes PNGs into ctx.figures_dir
    experiment(cfg) -> Experiment   (optional) the training set-up that `mesalab sweep` runs over a grid
Each study is a package `studies/<name>/`: config and presets, its training parts, `claims.py` (thresholds and
definitions with their sources, fixed before looking at results) and `figures.py`.

The runner calls `run` twice: once to train, and once with `ctx.untrained` set, where `ctx.fit` returns the models at
initialisation (one evaluation at step 0, no training). The same `claims` on those results give each finding its
null (studies/verdicts.py: attach_nulls).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pandas as pd

from mesalab.studies.verdicts import (  # noqa: F401  (the protocol's rows, re-exported for studies)
    VERDICTS, Claim, DefinitionChange, Learned, Rule, above, at_least, at_most, below, check, convergence, finding,
    not_run, within,
)
from mesalab.train.callbacks import MetricsLog

LIVE_METRICS = "metrics.csv"  # per part, next to its checkpoint: the history as training appends it


@dataclasses.dataclass(frozen=True)
class Figure:
    """A figure file in the run's figures/ folder and a caption that says what to look for. `figure`: the
    matplotlib Figure itself when drawn in this process (`draw_figures`; never written to disk)."""

    file: str
    title: str
    caption: str
    figure: Any = dataclasses.field(default=None, repr=False, compare=False)

    def record(self) -> dict[str, str]:
        """What figures.json keeps of it."""
        return {"file": self.file, "title": self.title, "caption": self.caption}


def draw_figures(study: Any, cfg: Any, results: dict[str, Any], ctx: "RunContext") -> list[Figure]:
    """A study's figures: PNGs written to ctx.figures_dir, and the records with their matplotlib Figures attached
    (in a notebook, `draw_figures(...)[0].figure` shows the first)."""
    from mesalab import figures

    with figures.capture() as drawn:
        records = study.figures(cfg, results, ctx)
    return [dataclasses.replace(r, figure=drawn.get(r.file)) for r in records]


@dataclasses.dataclass
class RunContext:
    """Where a study run writes, and how: its folder, whether to show progress and whether to resume. `untrained`:
    the null run, where every `fit` returns the models at initialisation and nothing is written. `trackers`:
    experiment trackers (train/trackers.py) that follow every part, each under the prefix `<part>/`. `split`: how
    every part's training uses several host devices (Trainer.fit's split: "members" or "batch")."""

    dir: Path
    progress: bool = True
    resume: bool = False
    untrained: bool = False
    metrics: list[pd.DataFrame] = dataclasses.field(default_factory=list)
    trackers: list[Any] = dataclasses.field(default_factory=list)
    split: str = "members"

    def fit(self, trainer: Any, seeds: Any, part: str, **kwargs: Any) -> Any:
        """Train `seeds` with `trainer` as part `part` of the run: checkpointed under checkpoints/<part>, resumable,
        its history recorded, and appended as it trains to checkpoints/<part>/metrics.csv (train/callbacks.py), so a
        running or killed run's curves can be read. In the null run: the untrained models, evaluated once at step 0."""
        kwargs.setdefault("split", self.split)
        if self.untrained:
            return trainer.fit(seeds, progress=False, stop_after=0, **kwargs)
        for tracker in self.trackers:
            tracker.prefix = f"{part}/"
        live = MetricsLog(self.checkpoint_dir(part) / LIVE_METRICS, part)
        callbacks = [live, *self.trackers, *kwargs.pop("callbacks", ())]
        res = trainer.fit(seeds, checkpoint_dir=self.checkpoint_dir(part), resume=self.resume, progress=self.progress,
                          callbacks=callbacks, **kwargs)
        self.add_metrics(res.history, part)
        return res

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

