"""The `mesalab` command: list, run, runs, report, export, sweep."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

from mesalab import jax_setup  # noqa: F401  (persistent compilation cache, before any compile)
from mesalab.config import ConfigError
from mesalab.studies import DEFAULT_STUDY, STUDIES, UnknownStudyError, describe, get_study

app = typer.Typer(no_args_is_help=True, help="Mechanistic studies of in-context learning.")


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        typer.echo(f"mesalab {version('mesalab')}")
        raise typer.Exit()


@app.callback()
def main(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                      help="print the version and exit")) -> None:
    """Mechanistic studies of in-context learning."""


def console() -> Console:
    """Made per call, so the width follows the terminal (and COLUMNS) at the time of printing."""
    return Console()


def fail(message: str) -> None:
    """A one-line error and exit code 2, instead of a traceback."""
    console().print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(2)


@app.command("list")
def list_studies() -> None:
    """List the studies with a one-line summary and the source paper."""
    table = Table(show_header=True)
    for col in ("study", "summary", "source"):
        table.add_column(col, overflow="fold")
    for name in STUDIES:
        about = describe(name)  # read from the source: importing every study would take seconds
        table.add_row(name, about["SUMMARY"], about["SOURCE"])
    console().print(table)


def print_claims(run_dir: Path) -> list[dict]:
    """Print the findings table, then the checks table; returns the rows."""
    from mesalab.studies.verdicts import Claim, counts

    data = json.loads((run_dir / "claims.json").read_text())
    meta = json.loads((run_dir / "run.json").read_text())
    con = console()
    wide = con.width >= 160  # the paper's statement is always in the report; a narrow terminal shows the rest
    rows = [Claim.from_dict(c) for c in data["claims"]]
    for kind, title in (("finding", "findings"), ("check", "checks")):
        mine = [c for c in rows if c.kind == kind]
        if not mine:
            continue
        passed, total = counts(mine, kind)
        skipped = sum(c.verdict == "NOT RUN" for c in mine)
        head = (f"{data['study']} ({data['scale']}, {meta.get('seconds', 0):.1f} s): {passed} of {total} {title} passed"
                + (f" ({skipped} not run)" if skipped else ""))
        table = Table(title=head)
        cols = ["verdict", "claim", "measured", "threshold"]
        if kind == "finding":
            cols.insert(3, "null")
        if wide:
            cols.insert(2, "paper")
        for col in cols:
            table.add_column(col, overflow="fold")
        for c in mine:
            style = {"PASS": "green", "FAIL": "red", "INCONCLUSIVE": "yellow"}.get(c.verdict, "dim")
            verdict = f"[{style}]{c.verdict}" + (f"[/{style}]\n[dim]{c.reason}" if c.reason and wide else "")
            cells = {"verdict": verdict, "claim": c.claim, "paper": c.paper, "measured": c.measured_text,
                     "null": c.null_text, "threshold": c.threshold}
            table.add_row(*(cells[k] for k in cols))
        con.print(table)
    con.print(f"run: {run_dir}")
    return data["claims"]


@app.command()
def run(
    study: str = typer.Argument(DEFAULT_STUDY, help="study name (see `mesalab list`)"),
    scale: str = typer.Option("cpu", help="smoke (seconds, for tests) | quick (gd-equivalence: a first result in a "
                              "minute) | cpu (minutes on a laptop) | paper (a GPU is advised)"),
    seeds: int = typer.Option(0, help="number of seeds (0: the preset's)"),
    out: Optional[Path] = typer.Option(None, help="run directory (default runs/<study>-<timestamp>)"),
    set_: list[str] = typer.Option([], "--set", help="override a config field, key=value (repeatable)"),
    config: Optional[Path] = typer.Option(None, "--config", help="a JSON, TOML or YAML file of config keys (applied "
                                          "before --set)"),
    resume: bool = typer.Option(False, help="continue the run in --out from its checkpoints"),
    strict: bool = typer.Option(False, help="exit 1 unless every finding passes"),
    progress: bool = typer.Option(True, help="show progress bars"),
    track: list[str] = typer.Option([], "--track", help="log metrics while training to tensorboard | wandb | mlflow "
                                    "(repeatable; needs that package, see `pip install \"mesalab[tracking]\"`)"),
    from_run: Optional[Path] = typer.Option(None, "--from", help="analyse the models of this earlier run instead of "
                                            "training them (studies with a from_run key, e.g. attention-saes)"),
    split: str = typer.Option("members", help="with several host devices (one per core by default): members (a "
                              "share of each ensemble's members on each) | batch (a share of every batch)"),
) -> None:
    """Run a study: train, measure, judge its claims, draw figures, write the report, print the claims table."""
    from mesalab.studies.runner import run_study
    from mesalab.train import TrainingDiverged
    from mesalab.train.checkpoint import CheckpointError

    if from_run is not None:
        import dataclasses

        try:
            keys = {f.name for f in dataclasses.fields(get_study(study).Config)}
        except UnknownStudyError as e:
            fail(str(e))
        if "from_run" not in keys:
            fail(f"--from: study {study!r} trains its own models (it has no from_run key); studies that analyse an "
                 "earlier run's models have one (see `mesalab config <study>`)")
        set_ = [*set_, f"from_run={from_run}"]
    try:
        run_dir = run_study(study, scale, sets=set_, seeds=seeds or None, out=out, resume=resume, progress=progress,
                            config_file=config, track=track, split=split)
    except (ConfigError, UnknownStudyError, FileExistsError, FileNotFoundError, CheckpointError, ImportError) as e:
        fail(str(e))
    except TrainingDiverged as e:
        fail(f"{e} (the run's folder keeps its last checkpoint; see `mesalab runs`)")
    claims = print_claims(run_dir)
    console().print(f"report: {run_dir / 'report.html'}")
    if strict and any(c.get("kind", "finding") == "finding" and c["verdict"] != "PASS" for c in claims):
        raise typer.Exit(1)


@app.command("config")
def show_config(study: str = typer.Argument(DEFAULT_STUDY, help="study name (see `mesalab list`)")) -> None:
    """A study's config keys: type, default, and each preset's value where it differs from the default."""
    import dataclasses

    try:
        mod = get_study(study)
    except UnknownStudyError as e:
        fail(str(e))
    default = mod.Config()
    scales = list(mod.PRESETS)
    table = Table(title=f"{study}: keys for --set / --grid")
    for col in ("key", "type", "default", *scales):
        table.add_column(col, overflow="fold")
    hints = typing_hints(mod.Config)
    for f in dataclasses.fields(mod.Config):
        value = getattr(default, f.name)
        cells = [repr(v) if (v := getattr(mod.PRESETS[s], f.name)) != value else "" for s in scales]
        table.add_row(f.name, hints.get(f.name, ""), repr(value), *cells)
    console().print(table)
    doc = (mod.Config.__doc__ or "").strip()
    if doc:
        console().print(doc, highlight=False)


def typing_hints(cls: type) -> dict[str, str]:
    """Field name → its annotation as written (e.g. 'tuple[int, ...]')."""
    return {name: str(tp) for name, tp in getattr(cls, "__annotations__", {}).items()}


@app.command()
def runs(root: Path = typer.Argument(Path("runs"), help="folder holding run directories")) -> None:
    """A table of past runs: name, scale, status, findings and checks passed / total, minutes, start time."""
    from mesalab.store import list_runs

    frame = list_runs(root)
    if frame.empty:
        console().print(f"no runs under {root}")
        return
    table = Table()
    # The run name is what tells runs apart: it is never cut or wrapped. Its study is under it when the name does
    # not already say it; the other columns are kept short for an 80-column terminal.
    width = max(len(str(r)) for r in frame.run)
    table.add_column("run (study)", no_wrap=True, min_width=width)
    with_start = console().width >= width + 62  # the start time only where it fits without folding
    for col in ("scale", "status", "findings", "checks", "min") + (("started",) if with_start else ()):
        table.add_column(col, no_wrap=True)
    for r in frame.itertuples():
        name = str(r.run) if str(r.run).startswith(str(r.study)) else f"{r.run}\n[dim]({r.study})[/dim]"
        mins = f"{r.seconds / 60:.1f}" if r.seconds == r.seconds and r.seconds is not None else "–"
        started = str(r.started or "")[5:16].replace("T", " ")  # MM-DD HH:MM, UTC
        table.add_row(name, r.scale, r.status, f"{r.findings_passed}/{r.findings}", f"{r.checks_passed}/{r.checks}",
                      mins, *((started,) if with_start else ()))
    console().print(table)


@app.command()
def report(run_dir: Path = typer.Argument(..., help="a run directory")) -> None:
    """(Re)build the HTML report of a run."""
    from mesalab import report as report_mod

    if not (run_dir / "run.json").exists():
        fail(f"{run_dir} is not a mesalab run (no run.json)")
    console().print(f"wrote {report_mod.build(run_dir)}")


@app.command()
def rejudge(run_dir: Path = typer.Argument(..., help="a finished run directory")) -> None:
    """Judge a finished run's stored results again with the current claims code (no training); the earlier
    claims are kept as claims.before-<time>.json."""
    from mesalab.studies.runner import rejudge as rejudge_run

    try:
        rejudge_run(run_dir)
    except (ConfigError, UnknownStudyError, FileNotFoundError) as e:
        fail(str(e))
    print_claims(run_dir)
    console().print(f"report: {run_dir / 'report.html'}")


@app.command("export")
def export(
    run_dir: Path = typer.Argument(..., help="a run directory (with checkpoints/)"),
    to: str = typer.Option(..., "--to", help="format: transformer-lens"),
    out: Optional[Path] = typer.Option(None, help="output folder (default RUN/export/<format>)"),
    part: list[str] = typer.Option([], "--part", help="export only this part (repeatable; default: every part "
                                   "that maps, skipping the others with their reason)"),
    n_ctx: int = typer.Option(0, "--n-ctx", help="context length for models without learned positions (default: "
                              "the task's sequence length)"),
) -> None:
    """Write each trained model of a run (every part and ensemble member) in another library's format:
    TransformerLens (< 4) HookedTransformer state dicts (safetensors) and configs (JSON). How to load them and feed
    continuous inputs: the docstring of mesalab.export.transformer_lens."""
    from mesalab.export import FORMATS

    if to not in FORMATS:
        fail(f"--to {to!r} is not allowed; expected one of {', '.join(map(repr, FORMATS))}")
    from mesalab.export.transformer_lens import export_run

    try:
        result = export_run(run_dir, out, part, n_ctx or None)
    except (ConfigError, FileNotFoundError) as e:
        fail(str(e))
    con = console()
    for name, files in result.written.items():
        con.print(f"  {name}: {len(files)} member(s) → {result.out / name}", highlight=False)
    for name, reason in result.skipped.items():
        con.print(f"  [yellow]skipped[/yellow] {name}: {reason}", highlight=False)
    con.print(f"wrote {result.out / 'manifest.json'}", highlight=False)


@app.command()
def sweep(
    study: str = typer.Argument(..., help="study name (see `mesalab list`)"),
    grid: list[str] = typer.Option(..., "--grid", help="key=v1,v2,… (repeatable; the grid is their product)"),
    scale: str = typer.Option("cpu", help="preset the grid starts from"),
    seeds: int = typer.Option(0, help="seeds per grid point (0: the preset's)"),
    set_: list[str] = typer.Option([], "--set", help="override a config field for every point, key=value"),
    out: Optional[Path] = typer.Option(None, help="sweep directory (default runs/sweep-<study>-<timestamp>)"),
    ray: Optional[str] = typer.Option(None, help="run each ensemble as a Ray task: 'local' or a cluster address"),
    gpus_per_task: float = typer.Option(0.0, "--gpus-per-task", help="GPUs each Ray task asks for (with --ray); a "
                                        "fraction below 1 shares a GPU among 1/fraction tasks, each capped at its "
                                        "share of the GPU's memory"),
    cpus_per_task: Optional[float] = typer.Option(None, "--cpus-per-task", help="CPUs each Ray task asks for (with "
                                                  "--ray; default: Ray's, 1)"),
) -> None:
    """Train a grid of configs × seeds; points that share a compiled program train as one ensemble. Run it again
    with the same --out to finish a sweep that was stopped: finished ensembles are not trained again."""
    from mesalab.sweep import run_sweep

    con = console()

    def report_unit(unit, trained: bool) -> None:
        what = "trained" if trained else "already done"
        con.print(f"  {what}: {len(unit.points)} point(s) {list(unit.points)}", highlight=False)

    try:
        table = run_sweep(study, scale, grid, seeds=seeds or None, sets=set_, out=out, ray_address=ray,
                          gpus_per_task=gpus_per_task, cpus_per_task=cpus_per_task, on_unit=report_unit)
    except (ConfigError, UnknownStudyError) as e:
        fail(str(e))
    out = Path(table.attrs["out"])
    final = table[table.step == table.step.max()]
    keys = [g.split("=", 1)[0].strip() for g in grid]
    summary = final.groupby(keys + ["metric"]).value.agg(["mean", "std"]).reset_index()
    out_table = Table(title=f"{study} sweep, final step → {out / 'sweep.parquet'}")
    for col in summary.columns:
        out_table.add_column(str(col))
    for row in summary.itertuples(index=False):
        out_table.add_row(*(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row))
    con.print(out_table)


if __name__ == "__main__":
    app()
