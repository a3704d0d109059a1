"""The `mesalab` command."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from mesalab import jax_setup  # noqa: F401  (persistent compilation cache, before any compile)
from mesalab.studies import DEFAULT_STUDY, STUDIES

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Mechanistic studies of in-context learning.")


def console() -> Console:
    """Made per call, so the width follows the terminal (and COLUMNS) at the time of printing."""
    return Console()


@app.command("list")
def list_studies() -> None:
    """List the studies with a one-line summary."""
    for name, mod in STUDIES.items():
        console().print(f"[bold]{name}[/bold]  {mod.SUMMARY}")


@app.command()
def run(
    study: str = typer.Argument(DEFAULT_STUDY, help="study name (see `mesalab list`)"),
    scale: str = typer.Option("cpu", help="smoke | cpu | paper"),
    seeds: int = typer.Option(0, help="number of seeds (0: the preset's)"),
    strict: bool = typer.Option(False, help="exit 1 if a claim fails"),
) -> None:
    """Run a study and print its claims table."""
    if study not in STUDIES:
        raise typer.BadParameter(f"unknown study {study!r}; known studies: {', '.join(STUDIES)}", param_hint="STUDY")
    mod = STUDIES[study]
    if scale not in mod.PRESETS:
        raise typer.BadParameter(f"unknown scale {scale!r}; choose one of {', '.join(mod.PRESETS)}", param_hint="--scale")
    result = mod.run(scale=scale, seeds=seeds or None)
    table = Table(title=f"{study} ({scale}, {result.seconds:.1f} s of training)")
    for col in ("claim", "paper", "measured", "threshold", "verdict"):
        table.add_column(col, overflow="fold")
    rows = result.rows()
    for row in rows:
        style = "green" if row["verdict"] == "PASS" else "red"
        table.add_row(*(row[c] for c in ("claim", "paper", "measured", "threshold")), f"[{style}]{row['verdict']}")
    console().print(table)
    if strict and any(r["verdict"] != "PASS" for r in rows):
        raise typer.Exit(1)
