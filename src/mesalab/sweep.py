"""Sweeps: a grid of study configs × seeds, trained as few compiled programs as possible, locally or on Ray.

Grid points whose training set-ups differ only in the learning rate or in a task's dynamic fields (noise, input
range, …) share one compiled program, so they train together as one ensemble (one `Member` per point and seed).
Each ensemble is one unit of work: run in this process, or as one Ray task on a cluster (`ray_address`), which
can ask for GPUs and CPUs (`ray_task_options`). Each finished unit is written to `<out>/parts/<id>.parquet` at once,
so a killed sweep, run again with the same arguments, trains only the units that are missing. All parts are joined
in `<out>/sweep.parquet`: one long table (step, seed, metric, value) with a column per grid key. A member whose loss
becomes NaN or infinite keeps its last finite weights and its `alive` metric drops to 0; the rest of its ensemble
trains on.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import itertools
import json
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from mesalab import store
from mesalab.config import ConfigError, dynamic_fields, from_dict, override, parse_value, to_dict, to_json
from mesalab.studies import get_study
from mesalab.studies.runner import study_config


def parse_grid(cls: type, items: list[str]) -> dict[str, list[Any]]:
    """["lr=1e-3,3e-3", "noise=0,0.1"] -> {"lr": [0.001, 0.003], "noise": [0.0, 0.1]}, typed by `cls`'s fields."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--grid expects key=v1,v2,…; got {item!r}")
        key, values = item.split("=", 1)
        key = key.strip()
        grid[key] = [parse_value(cls, key, v.strip()) for v in values.split(",") if v.strip()]
        if not grid[key]:
            raise ConfigError(f"--grid {key} has no values; expected key=v1,v2,…")
    return grid


@dataclasses.dataclass(frozen=True)
class Unit:
    """Grid points that train as one ensemble."""

    id: str
    points: tuple[dict[str, Any], ...]  # each: the grid values of one point


def plan(study_name: str, base: Any, grid: dict[str, list[Any]]) -> list[Unit]:
    """Validate every grid point and group the points that share a compiled program."""
    study = get_study(study_name)
    if not hasattr(study, "experiment"):
        raise ConfigError(f"study {study_name} has no experiment() to sweep over")
    if "seeds" in grid:
        raise ConfigError("--grid seeds is not a grid axis; use --seeds N (every point is trained with seeds 0 … N−1)")
    keys = list(grid)
    groups: dict[str, list[dict[str, Any]]] = {}
    seen: dict[str, dict[str, Any]] = {}
    for values in itertools.product(*(grid[k] for k in keys)):
        point = dict(zip(keys, values))
        exp = study.experiment(override(base, **point))  # validates the point's values
        setup = json.dumps([to_json(exp.task), to_json(exp.model), to_json(exp.train)])
        if setup in seen:
            raise ConfigError(f"grid points {seen[setup]} and {point} train the same set-up: a key among "
                              f"{', '.join(keys)} does not change what a sweep trains (it only affects the full study)")
        seen[setup] = point
        groups.setdefault(program_key(exp), []).append(point)
    units = []
    for key, points in groups.items():
        digest = hashlib.sha256((key + json.dumps(points, sort_keys=True) + to_json(base)).encode()).hexdigest()
        units.append(Unit(digest[:16], tuple(points)))
    return units


def program_key(exp: Any) -> str:
    """What decides the compiled program: everything but the learning rate and the task's dynamic fields."""
    task = {k: v for k, v in to_dict(exp.task).items() if k not in dynamic_fields(exp.task)}
    train = {k: v for k, v in to_dict(exp.train).items() if k != "lr"}
    return json.dumps([type(exp.task).__name__, task, to_json(exp.model), train], sort_keys=True)


def train_unit(study_name: str, base: dict[str, Any], points: list[dict[str, Any]]) -> pd.DataFrame:
    """Train one unit's points × seeds as one ensemble; the training history with a column per grid key."""
    from mesalab.models.transformer import Transformer
    from mesalab.train import Member, Trainer

    study = get_study(study_name)
    base_cfg = from_dict(study.Config, base) if not dataclasses.is_dataclass(base) else base
    exps = [study.experiment(override(base_cfg, **p)) for p in points]
    first = exps[0]
    members, owner = [], []
    for i, exp in enumerate(exps):
        task_knobs = {f: getattr(exp.task, f) for f in dynamic_fields(exp.task)}
        for seed in range(base_cfg.seeds):
            members.append(Member(seed, lr=exp.train.lr, task=task_knobs))
            owner.append(i)
    # A point that diverges (a too-large learning rate, say) is frozen and marked, not allowed to end the sweep.
    trainer = Trainer(first.task, functools.partial(Transformer, first.model), first.train, on_divergence="freeze")
    history = trainer.fit(members, progress=False).history
    for key in points[0]:
        history[key] = [points[owner[m]][key] for m in history.member]
    return history.drop(columns=["member"])


def ray_task_options(gpus_per_task: float = 0.0, cpus_per_task: float | None = None) -> dict[str, Any]:
    """The `.options(...)` of each unit's Ray task: the GPUs and CPUs it asks for, and the environment its worker
    starts with, so JAX reads it before it starts.

    gpus_per_task: 0 asks for no GPU (Ray's default); a fraction below 1 lets floor(1 / it) tasks share one GPU; above
    1 it must be whole (Ray's rule). A task with a GPU does not take most of its memory at start-up
    (XLA_PYTHON_CLIENT_PREALLOCATE=false: JAX's default is 75%, so a second task on that GPU would run out), and a
    task that shares one is capped at its share, XLA_PYTHON_CLIENT_MEM_FRACTION = 1 / tasks per GPU.
    cpus_per_task: None keeps Ray's default (1)."""
    for flag, value in (("--gpus-per-task", gpus_per_task), ("--cpus-per-task", cpus_per_task)):
        if value is not None and not (isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0):
            raise ConfigError(f"{flag} = {value!r} is not allowed; expected a number >= 0")
    if gpus_per_task > 1 and gpus_per_task != int(gpus_per_task):
        raise ConfigError(f"--gpus-per-task = {gpus_per_task!r} is not allowed; expected a number >= 0 that is whole "
                          "above 1 (Ray shares a GPU only by fractions below 1)")
    options: dict[str, Any] = {}
    if cpus_per_task is not None:
        options["num_cpus"] = cpus_per_task
    if gpus_per_task > 0:
        options["num_gpus"] = gpus_per_task
        env = {"XLA_PYTHON_CLIENT_PREALLOCATE": "false"}
        if gpus_per_task < 1:
            per_gpu = int(1 / gpus_per_task + 1e-9)  # the tasks Ray packs on one GPU
            env["XLA_PYTHON_CLIENT_MEM_FRACTION"] = f"{1 / per_gpu:.4g}"
        options["runtime_env"] = {"env_vars": env}
    return options


def run_sweep(study_name: str, scale: str, grid_items: list[str], *, seeds: int | None = None,
              sets: list[str] | None = None, out: str | Path | None, ray_address: str | None = None,
              gpus_per_task: float = 0.0, cpus_per_task: float | None = None,
              stop_after: int | None = None, on_unit: Callable[[Unit, bool], None] | None = None) -> pd.DataFrame:
    """Run (or resume) a sweep; returns the joined table, also written to <out>/sweep.parquet.

    ray_address: None runs every unit in this process; "local" starts a Ray instance on this machine; anything
    else is the address of a running cluster. gpus_per_task, cpus_per_task: what each Ray task asks for
    (`ray_task_options`; only with ray_address). stop_after: stop after that many newly trained units (as if
    killed). on_unit(unit, trained): called for every unit, with trained=False for units already on disk.
    out=None: a new folder runs/sweep-<study>-<timestamp>, created only once the options and grid are valid. The
    table's attrs["out"] is the sweep folder."""
    options = ray_task_options(gpus_per_task, cpus_per_task)  # checked before anything is trained
    if options and ray_address is None:
        raise ConfigError("--gpus-per-task and --cpus-per-task are what each Ray task asks for; add --ray ADDRESS "
                          "('local' or a cluster address)")
    study = get_study(study_name)
    base = study_config(study_name, scale, sets, seeds)
    units = plan(study_name, base, parse_grid(study.Config, grid_items))
    out = store.new_run_dir(f"sweep-{study_name}", None) if out is None else Path(out)
    parts = out / "parts"
    store.write_json(out / "sweep.json", {"study": study_name, "scale": scale, "grid": grid_items,
                                          "base": to_dict(base), "units": [u.id for u in units]})
    todo = [u for u in units if not (parts / f"{u.id}.parquet").exists()]
    for u in units:
        if u not in todo and on_unit:
            on_unit(u, False)
    todo = todo[:stop_after] if stop_after is not None else todo
    base_dict = to_dict(base)

    def finish(unit: Unit, frame: pd.DataFrame) -> None:
        store.write_parquet(parts / f"{unit.id}.parquet", frame)
        if on_unit:
            on_unit(unit, True)

    if ray_address is None:
        for u in todo:
            finish(u, train_unit(study_name, base_dict, list(u.points)))
    else:
        _run_on_ray(study_name, base_dict, todo, ray_address, finish, options)
    done = [pd.read_parquet(parts / f"{u.id}.parquet") for u in units if (parts / f"{u.id}.parquet").exists()]
    table = pd.concat(done, ignore_index=True) if done else pd.DataFrame()
    store.write_parquet(out / "sweep.parquet", table)
    table.attrs["out"] = str(out)
    return table


def _run_on_ray(study_name: str, base: dict, units: list[Unit], address: str, finish,
                options: dict[str, Any] | None = None) -> None:
    try:
        import ray
    except ImportError as e:  # pragma: no cover - depends on the install
        raise RuntimeError("--ray needs Ray: pip install 'mesalab[ray]'") from e
    started = not ray.is_initialized()
    if started:
        if address == "local":
            ray.init(include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
    try:
        remote = ray.remote(train_unit).options(**(options or {}))
        pending = {remote.remote(study_name, base, list(u.points)): u for u in units}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                finish(pending.pop(ref), ray.get(ref))
    finally:
        if started:
            ray.shutdown()
