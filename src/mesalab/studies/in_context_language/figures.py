"""Figures of the in-context-language-learning study: learning curves against N, n-gram-head score maps, training."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mesalab import figures as fig
from mesalab.studies.in_context_language.measure import ORDERS
from mesalab.studies.protocol import Figure, RunContext


def _curves(r: dict[str, Any]) -> Figure:
    f, axes = fig.subplots(1, 2, figsize=(11, 4))
    for ax, key, label in ((axes[0], "accuracy", "greedy DFA accuracy ↑"), (axes[1], "tvd", "TVD to the DFA ↓")):
        for i, model in enumerate(r["models"]):
            rows = [(int(n), s[key]) for n, seeds in r["by_model"][model]["metrics"].items() for s in seeds]
            fig.seed_band(ax, pd.DataFrame(rows, columns=["N", key]), "N", key, model, f"C{i}")
        for line in ax.get_lines():  # a learning curve has a few sizes only: mark them
            line.set_marker("o")
        for order, style in (("2", ":"), ("3", "--")):
            ax.axhline(r["baselines"][order][key], ls=style, color="black", lw=1, label=f"in-context {order}-gram")
        ax.set(xlabel="training prompts N", ylabel=label, xscale="log", title=label[:-2])
        ax.set_xticks(r["grid"], [f"{n:,}" for n in r["grid"]])
        ax.minorticks_off()
        ax.legend(fontsize=7)
    return f


def _heads(r: dict[str, Any]):
    """One panel per (model with softmax heads or n-gram layers, n): the first seed's scores at the largest N."""
    top = str(r["grid"][-1])
    models = [m for m in r["models"] if r["by_model"][m]["heads"][top][0]["layers"]]
    if not models:
        return None
    f, axes = fig.subplots(len(models), len(ORDERS), figsize=(3.2 * len(ORDERS), 2.4 * len(models)), squeeze=False)
    for row, model in zip(axes, models):
        h = r["by_model"][model]["heads"][top][0]
        names = [f"L{layer} {kind}" for layer, kind in h["layers"]]
        for ax, n in zip(row, ORDERS):
            table = h["scores"][str(n)]
            width = max(len(t) for t in table)
            grid = np.full((len(table), width), np.nan)
            for i, t in enumerate(table):
                grid[i, :len(t)] = t
            im = ax.imshow(grid, vmin=0, vmax=1, cmap="viridis", aspect="auto")
            for (i, j), v in np.ndenumerate(grid):
                if np.isfinite(v):
                    ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="white" if v < 0.6 else "k")
            ax.set(title=f"{model}: {n}-gram score", xlabel="head", xticks=range(width), yticks=range(len(names)))
            ax.set_yticklabels(names, fontsize=7)
        f.colorbar(im, ax=row[-1])
    return f


def _training(r: dict[str, Any]) -> Figure:
    f, ax = fig.subplots(1, 1, figsize=(6, 4))
    for i, model in enumerate(r["models"]):
        curves = [c for cs in r["by_model"][model]["curves"].values() for c in cs]
        frame = pd.DataFrame([(s, v) for c in curves for s, v in zip(r["steps"], c)], columns=["step", "loss"])
        fig.seed_band(ax, frame, "step", "loss", model, f"C{i}")
    ax.set(xlabel="step", ylabel="loss on training prompts (per letter)", title="Training")
    ax.legend(fontsize=7)
    return f


def draw(cfg: Any, r: dict[str, Any], ctx: RunContext) -> list[Figure]:
    out = []
    fig.save(_curves(r), ctx.figures_dir / "learning_curves.png")
    out.append(Figure("learning_curves.png", "Accuracy and TVD against the training-set size N",
                      "Greedy DFA accuracy (left) and TVD to the true next-token distribution (right) on held-out "
                      "DFAs, one line per model (mean ± std over seeds); the in-context 2- and 3-gram models dotted "
                      "and dashed. The paper's transformer rises above every other model and reaches the 3-gram."))
    heads = _heads(r)
    if heads is not None:
        fig.save(heads, ctx.figures_dir / "ngram_heads.png")
        out.append(Figure("ngram_heads.png", "n-gram-head scores", "Attention mass of every softmax head (and "
                          "hard-wired n-gram layer) on the tokens that follow earlier occurrences of the (n − 1)-gram "
                          "ending at the query, n = 2, 3, 4, at the largest N (first seed). An n-gram head scores "
                          "near 1; a hard-wired layer of order k scores exactly 1 at n = k + 1."))
    fig.save(_training(r), ctx.figures_dir / "training.png")
    out.append(Figure("training.png", "Training", "The engine's loss on training prompts during training, every N "
                      "and seed of each model (mean ± std); the findings are measured on held-out DFAs instead."))
    return out
