"""One matplotlib style for every study: labelled axes, legends, seeds drawn as a mean line with a ±1 std band."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from mesalab.store import atomic_write

STYLE = {
    "figure.figsize": (6.4, 4.0), "figure.dpi": 110, "axes.grid": True, "grid.alpha": 0.3,
    "axes.spines.top": False, "axes.spines.right": False, "legend.frameon": False, "font.size": 10,
}


def new_axes(xlabel: str, ylabel: str, title: str = ""):
    with plt.rc_context(STYLE):
        fig, ax = plt.subplots()
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


def save(fig, path: Path) -> None:
    """Write the figure atomically as PNG and close it."""
    with plt.rc_context(STYLE):
        fig.tight_layout()
    atomic_write(Path(path), lambda p: fig.savefig(p, format="png"))
    plt.close(fig)
