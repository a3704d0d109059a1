"""Figures of the language-modelling study: loss against tokens and perplexity bars, ICL score, tokens/s and λ."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mesalab import figures as fig
from mesalab.studies.protocol import Figure, RunContext


def _bars(ax, names: list[str], per_seed: list[np.ndarray], ylabel: str, title: str) -> None:
    """Mean ± std over seeds as bars, every seed as a dot."""
    x = np.arange(len(names))
    means = [np.nanmean(v) if np.isfinite(v).any() else np.nan for v in per_seed]
    stds = [np.nanstd(v, ddof=1) if np.isfinite(v).sum() > 1 else 0.0 for v in per_seed]
    ax.bar(x, means, yerr=stds, color=[f"C{i}" for i in range(len(names))], alpha=0.6, capsize=4)
    for i, v in enumerate(per_seed):
        ax.plot(np.full(len(v), i), v, "k.", ms=4)
    ax.set_xticks(x, names, rotation=30, ha="right", fontsize=8)
    ax.set(ylabel=ylabel, title=title)


def draw(cfg: Any, r: dict[str, Any], ctx: RunContext) -> list[Figure]:
    models = r["models"]
    names = list(models)
    tokens_per_step = r["tokens_per_step"]

    f, axes = fig.subplots(1, 2, figsize=(12, 4.2))
    ax = axes[0]
    for i, name in enumerate(names):
        c = models[name]["curve"]
        frame = pd.DataFrame([(s * tokens_per_step, v) for seed in c["values"] for s, v in zip(c["steps"], seed)],
                             columns=["tokens", "loss"])
        fig.seed_band(ax, frame, "tokens", "loss", name, f"C{i}")
    ax.axhline(r["unigram_loss"], color="gray", ls="--", lw=1, label="unigram model")
    ax.set(xlabel="training tokens (bytes) per model", ylabel="validation loss (nats/byte)",
           title="Validation loss against tokens")
    ax.legend(fontsize=7)
    _bars(axes[1], names, [np.exp(np.asarray(models[n]["val_loss"])) for n in names], "validation perplexity (per byte)",
          f"Perplexity at the token budget (unigram: {np.exp(r['unigram_loss']):.2f})")
    fig.save(f, ctx.figures_dir / "loss.png")

    early, late = r["icl_positions"]
    f, axes = fig.subplots(1, 2, figsize=(12, 4.2))
    ax = axes[0]
    for i, name in enumerate(names):
        pos = np.asarray(models[name]["position_loss"], float)
        ax.plot(np.arange(1, pos.shape[1] + 1), pos.mean(0), color=f"C{i}", label=name)
    for p in (early, late):
        ax.axvline(p, color="gray", ls=":", lw=1)
    ax.set(xlabel="token position in the context", ylabel="validation loss (nats/byte, mean over seeds)",
           title="Loss against context position", xscale="log")
    ax.legend(fontsize=7)
    _bars(axes[1], names, [np.asarray(models[n]["icl_score"], float) for n in names],
          f"ICL score: loss at token {late} − token {early} (nats)", "In-context learning score (negative: ICL)")
    fig.save(f, ctx.figures_dir / "icl.png")

    f, axes = fig.subplots(1, 2, figsize=(12, 4.2))
    speed = [np.asarray([models[n]["tokens_per_s"]], float) for n in names]
    _bars(axes[0], names, speed, "training tokens/s per seed", "Throughput (seeds trained together)")
    ax = axes[1]
    mesa = [n for n in names if models[n]["ridge"]]
    for i, name in enumerate(mesa):
        ridge = np.asarray(models[name]["ridge"], float)  # [seed, mesa layer, head]
        for layer in range(ridge.shape[1]):
            vals = ridge[:, layer].ravel()
            ax.plot(np.full(vals.size, i + 0.15 * layer), vals, "o", color=f"C{layer}", ms=4,
                    label=f"mesa layer {layer + 1}" if i == 0 else None)
    ax.set_xticks(range(len(mesa)), mesa, rotation=30, ha="right", fontsize=8)
    ax.set(ylabel="learned ridge λ (every head and seed)", title="Learned mesa λ per layer", yscale="log")
    if mesa:
        ax.legend(fontsize=7)
    fig.save(f, ctx.figures_dir / "speed.png")
    return [
        Figure("loss.png", "Validation loss and perplexity",
               "Left: validation loss on fixed held-out windows against training tokens, per model (mean ± std over "
               "seeds); the dashed line is the unigram model. Right: perplexity e^loss at the equal token budget, "
               "bars the seed mean ± std, dots the seeds."),
        Figure("icl.png", "In-context learning",
               f"Left: loss at each context position (mean over seeds); the dotted lines mark tokens {early} and "
               f"{late}. Right: Olsson's ICL score, loss at token {late} minus token {early}: more negative means the "
               "model predicts later bytes better from the context it has read."),
        Figure("speed.png", "Throughput and learned ridges",
               "Left: training tokens/s per seed (all seeds vmapped in one program, first chunk's compilation left "
               "out). Right: the learned ridge λ of every mesa head, per layer."),
    ]
