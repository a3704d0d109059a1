"""Figures of the repeated-data study: the r sweep (final losses and head scores against r) and the loss curves over
training for each r."""

from __future__ import annotations

from typing import Any

import pandas as pd

from mesalab import figures as fig
from mesalab.studies.protocol import Figure, RunContext
from mesalab.studies.repeated_data.claims import PART_NAMES, final

SWEEP = (("unique_loss", "final loss on unique data"), ("subset_loss", "final loss on the repeated subset"),
         ("prefix_matching", "prefix-matching (induction) score"), ("copying", "copying score"))


def _sweep(r: dict[str, Any], ctx: RunContext) -> Figure:
    f, axes = fig.subplots(1, len(SWEEP), figsize=(4.2 * len(SWEEP), 3.8))
    for ax, (measure, label) in zip(axes, SWEEP):
        for i, part in enumerate(r["parts"]):
            values = final(r, part, measure)
            frame = pd.DataFrame([(rep, v) for rep, row in zip(r["repeats"], values) for v in row], columns=["r", "v"])
            fig.seed_band(ax, frame, "r", "v", PART_NAMES[part], f"C{i}")
        ax.set(xscale="log", xlabel="repetitions r (r = 1: none)", ylabel=label, title=label)
        ax.legend(fontsize=7)
    fig.save(f, ctx.figures_dir / "sweep.png")
    return Figure("sweep.png", "The r sweep",
                  "At the end of training, against the number of times r each repeated sequence is seen (the "
                  "repeated subset is a fixed share of the tokens, so its size falls as 1/r): the loss on unique "
                  "data (Hernandez et al.: a peak at middle r), on the repeated subset (memorisation), and the "
                  "last layer's best prefix-matching head's induction and copying scores (mean ± std over seeds).")


def _curves(r: dict[str, Any], ctx: RunContext) -> Figure:
    parts = list(r["parts"])
    f, axes = fig.subplots(2, len(parts), figsize=(6 * len(parts), 7.5), squeeze=False)
    for j, part in enumerate(parts):
        res = r["parts"][part]
        for row, measure in enumerate(("unique_loss", "subset_loss")):
            ax = axes[row][j]
            for i, rep in enumerate(r["repeats"]):
                curves = res["curves"][measure][str(rep)]
                frame = pd.DataFrame([(s, v) for c in curves for s, v in zip(res["steps"], c)], columns=["step", "v"])
                fig.seed_band(ax, frame, "step", "v", f"r = {rep}", f"C{i}")
            ax.set(xlabel="step", ylabel=measure.replace("_", " "), title=f"{PART_NAMES[part]}: {measure.split('_')[0]}"
                   " rows")
            ax.legend(fontsize=7)
    fig.save(f, ctx.figures_dir / "curves.png")
    return Figure("curves.png", "Loss curves for each r",
                  "Top: test loss on unique data during training, per r (a damaging r may rise for a while: double "
                  "descent); bottom: the loss on the repeated subset, which falls below the unique loss as the subset "
                  "is memorised. Columns: the models trained.")


def draw(cfg: Any, r: dict[str, Any], ctx: RunContext) -> list[Figure]:
    return [_sweep(r, ctx), _curves(r, ctx)]
