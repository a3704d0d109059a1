"""Figures of the induction-heads study."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mesalab import figures as fig
from mesalab.studies.protocol import Figure, RunContext


def shade(ax, windows) -> None:
    """Shade each seed's 10%→90% window of its jump."""
    for lo, hi in windows:
        ax.axvspan(lo, hi, color="tab:blue", alpha=0.08)


def band(ax, part: dict[str, Any], metric: str, label: str, color: str) -> None:
    """One metric of a part, every seed, as a mean line with a ±1 std band."""
    frame = pd.DataFrame([(s, v) for c in part["curves"][metric] for s, v in zip(part["steps"], c)],
                         columns=["step", metric])
    fig.seed_band(ax, frame, "step", metric, label, color)


def attention_grid(maps: dict[str, Any], ctx: RunContext, bos: bool = False) -> None:
    """attention.png: layer 1 and 2 patterns (columns) at initialisation and after training (rows) of one
    sequence [BOS] x₁ ℓ₁ … x_N ℓ_N x_q; maps[name] = [layer-1 pattern, layer-2 pattern]."""

    f, axes = fig.subplots(2, 2, figsize=(8, 7.5))
    n = len(maps["initial"][0]) - int(bos)
    ticks = ["BOS"] * int(bos) + [f"x{i // 2 + 1}" if i % 2 == 0 else f"ℓ{i // 2 + 1}" for i in range(n - 1)] + ["x_q"]
    n += int(bos)
    for row, name in enumerate(("initial", "trained")):
        for layer in range(2):
            ax = axes[row, layer]
            ax.imshow(np.asarray(maps[name][layer]), cmap="Blues", vmin=0, vmax=1)
            ax.set_xticks(range(n), ticks, fontsize=6, rotation=90)
            ax.set_yticks(range(n), ticks, fontsize=6)
            ax.grid(False)
            ax.set(title=f"{name}, layer {layer + 1}", xlabel="key", ylabel="query")
    fig.save(f, ctx.figures_dir / "attention.png")


def draw(cfg: Any, r: dict[str, Any], ctx: RunContext) -> list[Figure]:

    from mesalab.analysis.transitions import rise_from

    two, one = r["two"], r["one"]
    f, (ax1, ax2) = fig.subplots(1, 2, figsize=(11, 4))
    band(ax1, two, "accuracy", "2 layers", "tab:blue")
    band(ax1, one, "accuracy", "1 layer", "tab:gray")
    ax1.axhline(1 / cfg.n_pairs, color="black", ls=":", lw=1, label="1/N (a random context label)")
    windows = [(t.t10, t.t90) for t in rise_from(two["steps"], two["curves"]["accuracy"], 1 / cfg.n_pairs)
               if np.isfinite(t.t10)]
    shade(ax1, windows)
    ax1.set(xlabel="step", ylabel="copying accuracy", title="In-context copying (shaded: 10%→90% of each jump)")
    ax1.legend()
    for metric, label, color in (("prev_token_l1", "previous-token score, layer 1", "tab:orange"),
                                 ("prefix_matching_l2", "prefix matching on repeated random tokens, layer 2", "tab:red"),
                                 ("task_induction_l2", "attention on the matching label (task sequences), layer 2",
                                  "tab:purple"),
                                 ("copying_l2", "copying score (Olsson), layer 2", "tab:green"),
                                 ("ov_eigen_l2", "OV-eigenvalue score, layer 2", "tab:olive")):
        band(ax2, two, metric, label, color)
    shade(ax2, windows)
    ax2.set(xlabel="step", ylabel="score", title="Head scores of the 2-layer model")
    ax2.legend(fontsize=8)
    fig.save(f, ctx.figures_dir / "training.png")
    out = [Figure("training.png", "Copying accuracy and head scores over training",
                  "The 2-layer model's accuracy should sit near 1/N, then jump; its layer-2 prefix-matching score on "
                  "Olsson's repeated random tokens (the judged induction score) should jump in the same window "
                  "(shaded), after the layer-1 previous-token score has started to rise. The 1-layer control should "
                  "stay near 1/N. Bands: ±1 standard deviation over seeds around the mean.")]

    attention_grid(two["patterns"], ctx, bos=cfg.bos)
    out.append(Figure("attention.png", "Attention patterns at initialisation and after training (seed 0)",
                      "After training, layer 1 should put each label's attention on its item (the sub-diagonal) and "
                      "layer 2 the query's attention on the label of the matching item."))
    return out
