"""Figures of the sequential-functions study."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mesalab import figures as fig
from mesalab.studies.protocol import Figure, RunContext


def draw(cfg: Any, r: dict[str, Any], ctx: RunContext) -> list[Figure]:
    grid = r["grid"]
    colors = [f"C{i}" for i in range(len(grid))]
    f, axes = fig.subplots(1, 2, figsize=(11, 4))
    ax = axes[0]
    for p, color in zip(grid, colors):
        part = r["by_p"][f"{p:g}"]
        pos = np.arange(1, len(part["lsq"]) + 1)
        frame = pd.DataFrame([(t, e) for seed in part["model"] for t, e in zip(pos, seed)], columns=["t", "error"])
        fig.seed_band(ax, frame, "t", "error", f"model, p = {p:g}", color)
        ax.plot(pos, part["lsq"], ls="--", color=color, lw=1, label=f"window least squares, p = {p:g}")
    clean = r["by_p"]["0"]
    ax.plot(pos, clean["blind"], ls=":", color="black", lw=1, label="window-blind least squares, p = 0")
    ax.plot(pos, clean["none"], color="gray", lw=1, label="no context (predict 0)")
    ax.set(xlabel="example position t (t − 1 examples seen)", ylabel="squared error (Var y = 1)",
           title="Error against in-context examples", yscale="log")
    ax.legend(fontsize=7)
    ax = axes[1]
    for p, color in zip(grid, colors):
        curves = r["by_p"][f"{p:g}"]["curves"]
        frame = pd.DataFrame([(s, v) for c in curves for s, v in zip(r["steps"], c)], columns=["step", "loss"])
        fig.seed_band(ax, frame, "step", "loss", f"p = {p:g}", color)
    ax.set(xlabel="step", ylabel="test loss (½ squared error, shown labels at p)", title="Training", yscale="log")
    ax.legend(fontsize=7)
    fig.save(f, ctx.figures_dir / "errors.png")
    return [Figure("errors.png", "Error against in-context examples, and training",
                   "Left: each model's error at every example position on fresh sequences at its own share p of "
                   "random shown labels (solid, mean ± std over seeds), least squares on the window features at the "
                   "same p (dashed), the window-blind learner and the no-context predictor. A model that learns the "
                   "class in context follows the dashed line down. Right: test loss during training per p.")]
