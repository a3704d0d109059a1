"""One matplotlib style for every study: labelled axes, legends, seeds drawn as a mean line with a ±1 std band.

Figures are made with matplotlib's object-oriented API (`matplotlib.figure.Figure`), never through pyplot's global
state: importing mesalab or drawing a study's figures leaves a notebook's backend and its open figures alone.
`save` writes a PNG and returns the Figure; `capture()` collects the Figures a study draws (studies/protocol.py
`draw_figures` attaches each to its record, so a notebook can show them).
"""

from __future__ import annotations

import contextlib
import contextvars
from pathlib import Path
from typing import Any, Iterator

import matplotlib as mpl
import pandas as pd
from matplotlib.figure import Figure

from mesalab.store import atomic_write

STYLE = {
    "figure.figsize": (6.4, 4.0), "figure.dpi": 110, "axes.grid": True, "grid.alpha": 0.3,
    "axes.spines.top": False, "axes.spines.right": False, "legend.frameon": False, "font.size": 10,
}


_drawn: contextvars.ContextVar[dict[str, Figure] | None] = contextvars.ContextVar("mesalab_drawn", default=None)


def subplots(nrows: int = 1, ncols: int = 1, **kwargs: Any) -> tuple[Figure, Any]:
    """A new Figure (not registered with pyplot) and its axes, as `plt.subplots` would give, in the house style."""
    with mpl.rc_context(STYLE):
        figsize = kwargs.pop("figsize", None)
        fig = Figure(figsize=figsize)
        axes = fig.subplots(nrows, ncols, **kwargs)
    return fig, axes


def new_axes(xlabel: str, ylabel: str, title: str = ""):
    fig, ax = subplots()
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    return fig, ax


def seed_band(ax, frame: pd.DataFrame, x: str, y: str, label: str, color: str | None = None) -> None:
    """Mean over seeds of y against x, with a ±1 standard-deviation band (frame has one row per seed and x)."""
    stats = frame.groupby(x)[y].agg(["mean", "std", "count"]).reset_index()
    line = ax.plot(stats[x], stats["mean"], label=f"{label} (mean of {int(stats['count'].max())} seeds)", color=color)
    std = stats["std"].fillna(0.0)
    ax.fill_between(stats[x], stats["mean"] - std, stats["mean"] + std, alpha=0.25, color=line[0].get_color())


def save(fig: Figure, path: Path) -> Figure:
    """Write the figure atomically as PNG and return it (to a `capture()` too, under its file name)."""
    with mpl.rc_context(STYLE):
        fig.tight_layout()
    atomic_write(Path(path), lambda p: fig.savefig(p, format="png"))
    drawn = _drawn.get()
    if drawn is not None:
        drawn[Path(path).name] = fig
    return fig


@contextlib.contextmanager
def capture() -> Iterator[dict[str, Figure]]:
    """Collect {file name: Figure} of every figure saved inside the block."""
    token = _drawn.set({})
    try:
        yield _drawn.get()
    finally:
        _drawn.reset(token)
