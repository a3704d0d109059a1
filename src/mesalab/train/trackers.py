"""Experiment-tracker adapters: callbacks (train/callbacks.py) that send the training history to TensorBoard, Weights
& Biases or MLflow as it is recorded.

None of these libraries is a dependency of mesalab; install the one you use (`pip install "mesalab[tracking]"` has
all three). Each adapter imports its library when it is built and says what to install if it is missing.

Metric names: `<prefix><metric>/member<i>` for every member, and `<prefix><metric>/mean` over the members that are
finite. `prefix` is empty for a plain `fit`; a study gives each part its own (`<part>/`), so the parts of one run,
which each count steps from 0, sit side by side. Steps are optimizer steps at chunk boundaries.

    from mesalab.train.trackers import TensorBoard
    tb = TensorBoard("runs/tb")
    trainer.fit(4, callbacks=[tb]); tb.close()               # then: tensorboard --logdir runs/tb
"""

from __future__ import annotations

import importlib
import math
from collections import defaultdict
from pathlib import Path
from typing import Any, Sequence

from mesalab.train.callbacks import Callback, Record

TRACKERS = ("tensorboard", "wandb", "mlflow")


def require(module: str, package: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ImportError(f"this tracker needs {package!r}, which is not installed: pip install {package} "
                          "(or pip install \"mesalab[tracking]\")") from e


def scalars(records: Sequence[Record], prefix: str = "") -> dict[int, dict[str, float]]:
    """{step: {name: value}} with one value per member and the mean over finite members, per metric."""
    out: dict[int, dict[str, float]] = defaultdict(dict)
    per_metric: dict[tuple[int, str], list[float]] = defaultdict(list)
    for step, member, _seed, metric, value in records:
        out[step][f"{prefix}{metric}/member{member}"] = float(value)
        per_metric[(step, metric)].append(float(value))
    for (step, metric), values in per_metric.items():
        finite = [v for v in values if math.isfinite(v)]
        out[step][f"{prefix}{metric}/mean"] = sum(finite) / len(finite) if finite else float("nan")
    return dict(out)


class Tracker(Callback):
    """A tracker logs every chunk's records (and, at the start, a resumed run's history) under `prefix`. One tracker
    may follow several `fit` calls (a study's parts): set `prefix` between them, and `close()` after the last."""

    prefix: str = ""

    def on_train_start(self, members: Sequence[Any], step: int, history: Sequence[Record]) -> None:
        self.on_chunk_end(step, history)  # a resumed run's history so far

    def on_chunk_end(self, step: int, records: Sequence[Record]) -> None:
        for at, values in sorted(scalars(records, self.prefix).items()):
            self.log(at, values)

    def log(self, step: int, values: dict[str, float]) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class TensorBoard(Tracker):
    """Scalars written with tensorboardX's SummaryWriter into `logdir` (read with `tensorboard --logdir`)."""

    def __init__(self, logdir: str | Path, prefix: str = ""):
        self.writer = require("tensorboardX", "tensorboardX").SummaryWriter(str(logdir))
        self.prefix = prefix

    def log(self, step: int, values: dict[str, float]) -> None:
        for name, value in values.items():
            self.writer.add_scalar(name, value, step)

    def on_train_end(self, result: Any) -> None:
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class WandB(Tracker):
    """Logged to the active Weights & Biases run, or to one started with `wandb.init(**init)` (e.g. project=...,
    mode="offline"). Each prefix gets its own step axis `<prefix>step`, so parts that restart at step 0 can share a
    run. `close()` finishes a run this adapter started."""

    def __init__(self, prefix: str = "", **init: Any):
        self.wandb = require("wandb", "wandb")
        self.owned = self.wandb.run is None
        self.run = self.wandb.init(**init) if self.owned else self.wandb.run
        self.axes: set[str] = set()
        self.prefix = prefix

    def log(self, step: int, values: dict[str, float]) -> None:
        axis = f"{self.prefix}step"
        if axis not in self.axes:  # the prefix's metrics plot against its own step
            self.run.define_metric(axis)
            self.run.define_metric(f"{self.prefix}*", step_metric=axis)
            self.axes.add(axis)
        self.run.log({**values, axis: step})

    def close(self) -> None:
        if self.owned:
            self.run.finish()


class MLflow(Tracker):
    """Logged to the active MLflow run, or to one started under `tracking_uri`
    and `experiment` (a local store: "sqlite:///path/mlflow.db"; MLflow's file store is deprecated). Metric names have '/' as MLflow allows. `close()` ends a run this adapter started."""

    def __init__(self, prefix: str = "", tracking_uri: str | None = None, experiment: str | None = None,
                 run_name: str | None = None):
        self.mlflow = require("mlflow", "mlflow-skinny")
        if tracking_uri is not None:
            self.mlflow.set_tracking_uri(tracking_uri)
        if experiment is not None:
            self.mlflow.set_experiment(experiment)
        self.owned = self.mlflow.active_run() is None
        self.run = self.mlflow.start_run(run_name=run_name) if self.owned else self.mlflow.active_run()
        self.prefix = prefix

    def log(self, step: int, values: dict[str, float]) -> None:
        self.mlflow.log_metrics(values, step=step)

    def close(self) -> None:
        if self.owned:
            self.mlflow.end_run()


def make_tracker(name: str, out: str | Path, prefix: str = "") -> Tracker:
    """A tracker by name, logging under the run folder `out` (TensorBoard: out/tensorboard; W&B: offline files
    under out/wandb unless WANDB_MODE says otherwise; MLflow: the local SQLite store out/mlflow.db unless
    MLFLOW_TRACKING_URI is set; `mlflow ui --backend-store-uri sqlite:///out/mlflow.db` shows it)."""
    import os

    out = Path(out)
    if name == "tensorboard":
        return TensorBoard(out / "tensorboard", prefix)
    if name == "wandb":
        return WandB(prefix, dir=str(out), mode=os.environ.get("WANDB_MODE", "offline"), project="mesalab")
    if name == "mlflow":
        uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(out / 'mlflow.db').resolve()}"
        return MLflow(prefix, tracking_uri=uri, experiment="mesalab")
    raise ValueError(f"tracker = {name!r} is not allowed; expected one of {', '.join(TRACKERS)}")
