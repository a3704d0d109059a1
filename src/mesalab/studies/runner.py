"""Run a study end to end and write its run directory (see mesalab.store for the layout)."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from mesalab import report, store
from mesalab.config import ConfigError, from_dict, override, parse_assignments, read_config_file, to_dict
from mesalab.studies import get_study
from mesalab.studies.protocol import RunContext, draw_figures
from mesalab.studies.verdicts import Claim, attach_nulls
from mesalab.train.placement import SPLITS
from mesalab.train.resume import differences
from mesalab.train.trackers import TRACKERS, make_tracker


def study_config(name: str, scale: str, sets: list[str] | None = None, seeds: int | None = None,
                 config_file: str | Path | None = None) -> Any:
    """The preset of `scale`, then the keys of `config_file` (JSON or TOML), then `--set key=value` overrides (and a
    seed count), applied and validated."""
    study = get_study(name)
    if scale not in study.PRESETS:
        raise ConfigError(f"unknown scale {scale!r} for {name}; choose one of {', '.join(study.PRESETS)}")
    changes = read_config_file(study.Config, config_file) if config_file is not None else {}
    changes |= parse_assignments(study.Config, sets or [])
    if seeds:
        changes["seeds"] = seeds
    return override(study.PRESETS[scale], **changes)


def run_study(name: str, scale: str = "cpu", *, sets: list[str] | None = None, seeds: int | None = None,
              out: str | Path | None = None, resume: bool = False, progress: bool = True,
              config_file: str | Path | None = None, track: list[str] | None = None, split: str = "members") -> Path:
    """Train, measure, judge the claims, draw the figures and build the report; returns the run directory.

    With `resume`, `out` must be an earlier run of the same study and config: training continues from its
    checkpoints and ends with the numbers an uninterrupted run would have given. `track`: experiment trackers by
    name ("tensorboard", "wandb", "mlflow"; train/trackers.py) that log every part's metrics as it trains. `split`:
    how training uses several host devices ("members": a share of each ensemble's members on each; "batch": a share
    of every batch; Trainer.fit), recorded in run.json."""
    study = get_study(name)
    cfg = study_config(name, scale, sets, seeds, config_file)
    if split not in SPLITS:
        raise ConfigError(f"--split {split} is not allowed; expected one of {', '.join(SPLITS)}")
    for t in track or []:
        if t not in TRACKERS:
            raise ConfigError(f"--track {t} is not allowed; expected one of {', '.join(TRACKERS)}")
    run_dir = store.new_run_dir(name, Path(out) if out is not None else None)
    earlier: dict[str, Any] = {}
    if resume:
        earlier = check_resumable(run_dir, name, cfg)
    elif (run_dir / "run.json").exists():
        raise FileExistsError(f"{run_dir} already holds a run; pass --resume to continue it or choose another --out")
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    meta = {"study": name, "scale": scale, "started": earlier.get("started", now), "status": "running",
            "source": study.SOURCE, "split": split}
    if resume:
        meta["resumed"] = [*earlier.get("resumed", []), now]
    # Seconds summed over the sessions that ended (done or failed) and this one; a killed session recorded none.
    seconds_before = float(earlier.get("seconds", 0.0))
    store.write_json(run_dir / "run.json", meta)
    store.write_json(run_dir / "config.json", to_dict(cfg))
    store.write_json(run_dir / "environment.json", store.environment())

    ctx = RunContext(run_dir, progress=progress, resume=resume, trackers=[make_tracker(t, run_dir) for t in track or []],
                     split=split)
    t0 = time.perf_counter()
    try:
        results = study.run(cfg, ctx)
    except BaseException as e:  # record why, so `mesalab runs` does not list it as running forever
        store.write_json(run_dir / "run.json", {**meta, "status": "failed", "error": f"{type(e).__name__}: {e}",
                                                "seconds": seconds_before + time.perf_counter() - t0})
        raise
    finally:
        for tracker in ctx.trackers:
            tracker.close()
    seconds = seconds_before + time.perf_counter() - t0
    store.write_parquet(run_dir / "metrics.parquet", ctx.metrics_frame())
    store.write_json(run_dir / "results.json", results)
    null_results = run_null(study, cfg, run_dir)
    store.write_json(run_dir / "null_results.json", null_results)
    claims = [c.to_dict() for c in judge(study, cfg, results, null_results)]
    store.write_json(run_dir / "claims.json", {"study": name, "scale": scale, "claims": claims})
    figs = [f.record() for f in draw_figures(study, cfg, results, ctx)]
    store.write_json(run_dir / "figures.json", figs)
    store.write_json(run_dir / "run.json", {**meta, "status": "done", "seconds": seconds})
    report.build(run_dir)
    return run_dir


def run_null(study: ModuleType, cfg: Any, run_dir: Path) -> dict[str, Any]:
    """The study's pipeline on untrained models: every part at initialisation, measured as the trained ones are."""
    return study.run(cfg, RunContext(run_dir, progress=False, untrained=True))


def judge(study: ModuleType, cfg: Any, results: dict[str, Any], null_results: dict[str, Any] | None) -> list[Claim]:
    """The study's findings and checks, each finding with its null's value and verdict (studies/verdicts.py)."""
    rows = study.claims(cfg, results)
    ids = [r.id for r in rows]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{study.NAME}: claim ids must be unique; got {ids}")
    return rows if null_results is None else attach_nulls(rows, study.claims(cfg, null_results))


def check_resumable(run_dir: Path, name: str, cfg: Any) -> dict[str, Any]:
    """The earlier run's run.json, after checking that it ran this study with this config."""
    meta_path = run_dir / "run.json"
    if not meta_path.exists():
        raise FileNotFoundError(f"--resume needs an earlier run in --out; {run_dir} has no run.json")
    meta = json.loads(meta_path.read_text())
    stored = json.loads((run_dir / "config.json").read_text())
    now = json.loads(json.dumps(to_dict(cfg)))
    if meta.get("study") != name:
        raise ConfigError(f"cannot resume {run_dir}: it ran {meta.get('study')}, not {name}")
    if stored != now:
        raise ConfigError(f"cannot resume {run_dir}: its config differs from this one ({differences(stored, now)})")
    return meta


def rejudge(run_dir: str | Path) -> Path:
    """Judge a finished run's stored results (results.json, null_results.json) again with the study's current
    claims code, without training or measuring: claims.json and the report are rewritten, and the earlier claims
    are kept beside them as claims.before-<UTC time>.json. Returns the run directory."""
    run_dir = Path(run_dir)
    meta = store.read_json(run_dir / "run.json", None)
    if meta is None:
        raise FileNotFoundError(f"{run_dir} is not a mesalab run (no run.json)")
    if meta.get("status") != "done" or not (run_dir / "results.json").exists():
        raise ConfigError(f"cannot re-judge {run_dir}: its status is {meta.get('status')!r}; only a finished run "
                          "(status 'done', with results.json) has results to judge; `mesalab run --resume` finishes it")
    study = get_study(meta["study"])
    cfg = from_dict(study.Config, store.read_json(run_dir / "config.json", {}))
    results = store.read_json(run_dir / "results.json", {})
    nulls = store.read_json(run_dir / "null_results.json", None)
    now = dt.datetime.now(dt.timezone.utc)
    old = run_dir / "claims.json"
    if old.exists():
        store.write_text(run_dir / f"claims.before-{now.strftime('%Y%m%dT%H%M%SZ')}.json", old.read_text())
    claims = [c.to_dict() for c in judge(study, cfg, results, nulls)]
    store.write_json(old, {"study": meta["study"], "scale": meta["scale"], "claims": claims})
    store.write_json(run_dir / "run.json", {**meta, "rejudged": [*meta.get("rejudged", []),
                                                                 now.isoformat(timespec="seconds")]})
    report.build(run_dir)
    return run_dir
