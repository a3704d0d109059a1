"""Figures of the induction-circuits study (matplotlib's object-oriented API, through mesalab.figures)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from mesalab import figures as fig
from mesalab.studies.induction_circuits.parts import CONDITIONS, PHASE_LOSS, VARIANTS
from mesalab.studies.protocol import Figure, RunContext

LN2 = math.log(2)
COLORS = dict(zip(CONDITIONS, ("black", "tab:gray", "tab:blue", "tab:green", "tab:orange", "tab:red")))


def band(ax, steps: list, curves: list, label: str, color: str | None = None, scale: float = 1.0) -> None:
    """Every member's curve as a mean line with a ±1 std band."""
    frame = pd.DataFrame([(s, v / scale) for c in curves for s, v in zip(steps, c)], columns=["step", "value"])
    if not frame.empty:
        fig.seed_band(ax, frame, "step", "value", label, color)


def loss_curves(cfg: Any, r: dict[str, Any], ctx: RunContext) -> Figure:
    f, axes = fig.subplots(1, 2, figsize=(12, 4.2), sharey=True)
    for ax, variant in zip(axes, VARIANTS):
        for c, label in CONDITIONS.items():
            part = r["conditions"].get(f"{c}/{variant}")
            if part is not None:
                band(ax, part["steps"], part["curves"]["test_loss"], label, COLORS[c], LN2)
        ax.axhline(1.0, color="black", ls=":", lw=1, label="ln 2 (a random context label)")
        ax.axhline(PHASE_LOSS / LN2, color="tab:purple", ls="--", lw=1, label="0.4·ln 2 (phase change)")
        ax.set(xlabel="step", ylabel="training-distribution loss / ln 2", title=VARIANTS[variant])
    axes[0].legend(fontsize=7)
    fig.save(f, ctx.figures_dir / "loss.png")
    return Figure("loss.png", "Loss per clamped condition (Fig. 3 / 5b)",
                  "The unclamped model should sit near ln 2, then drop below 0.4·ln 2 (the phase change); each clamp "
                  "that provides a subcircuit (perfect layer 1, match, copy) should drop earlier. Bands: ±1 standard "
                  "deviation over seeds. Right: the same with all layer-2 heads (perfect copy and layer 1 + copy "
                  "write logits from the kept head alone, so they appear only on the left).")


def head_scores(cfg: Any, r: dict[str, Any], ctx: RunContext) -> Figure:
    part = r["conditions"]["none/all"]
    f, (ax1, ax2) = fig.subplots(1, 2, figsize=(12, 4.2))
    colors = [f"C{i}" for i in range(cfg.n_heads)]
    for h in range(cfg.n_heads):
        band(ax1, part["steps"], part["curves"].get(f"induction_h{h}", []), f"head {h}", colors[h])
        band(ax2, part["steps"], part["curves"].get(f"prev_token_h{h}", []), f"head {h}", colors[h])
    ax1.axhline(0.0, color="black", ls=":", lw=1)
    ax1.set(xlabel="step", ylabel="attention on correct − incorrect label",
            title="Layer-2 induction strength per head (unclamped, all heads)")
    ax2.set(xlabel="step", ylabel="mean attention i → i − 1", title="Layer-1 previous-token score per head")
    ax1.legend(fontsize=7, ncol=2)
    fig.save(f, ctx.figures_dir / "heads.png")
    return Figure("heads.png", "Per-head induction strength and previous-token score over training",
                  "Several layer-2 heads should gain induction strength together at the phase change (additive, "
                  "diverse heads), while layer-1 heads become previous-token heads that feed them.")


def keep_one(cfg: Any, r: dict[str, Any], ctx: RunContext) -> Figure:
    h = r["heads"]
    keep = np.asarray(h["keep_one"], float)  # [seed, head]
    f, ax = fig.subplots(figsize=(8, 4.2))
    heads = np.arange(keep.shape[1]) if keep.ndim == 2 else np.arange(0)
    if keep.size:
        ax.bar(heads, keep.mean(axis=0), color="tab:blue", alpha=0.6, label="only this layer-2 head kept (mean)")
        for s, row in enumerate(keep):
            ax.plot(heads, row, "o", color="black", ms=3, label="per seed" if s == 0 else None)
        ax.axhline(float(np.mean(h["full"])), color="tab:green", lw=1.5, label="full model (mean)")
        ax.axhline(float(np.mean(h["ablate_strongest"])), color="tab:red", lw=1.5, ls="--",
                   label="strongest head ablated (mean)")
    ax.axhline(0.5, color="black", ls=":", lw=1, label="chance (0.5)")
    ax.set(xlabel="layer-2 head", ylabel="accuracy", ylim=(0, 1.05), xticks=heads,
           title="Keep-one-head accuracy of the final unclamped models")
    ax.legend(fontsize=7)
    fig.save(f, ctx.figures_dir / "keep_one.png")
    return Figure("keep_one.png", "Keep-one-head accuracy bars",
                  "Several heads should each score well above chance alone, the best within a few points of the full "
                  "model, and ablating the strongest should leave accuracy high: the heads are additive and redundant.")


def scaling(cfg: Any, r: dict[str, Any], ctx: RunContext) -> Figure:
    f, axes = fig.subplots(1, 2, figsize=(11, 4.2))
    for ax, key, what in ((axes[0], "classes", "classes (layer 1 + copy clamped)"),
                          (axes[1], "labels", "labels (perfect match clamped)")):
        g = r[key]
        budget = g["steps"][-1] if g["steps"] else 0
        phase = np.asarray(g["phase"], float)  # [point, seed]
        for s in range(phase.shape[1] if phase.ndim == 2 else 0):
            y = phase[:, s]
            ax.plot(g["grid"], np.where(np.isfinite(y), y, budget), "-o", ms=4, alpha=0.6,
                    label=f"seed {s}")
            never = ~np.isfinite(y)
            ax.plot(np.asarray(g["grid"])[never], np.full(never.sum(), budget), "x", color="black", ms=8)
        ax.axhline(budget, color="black", ls=":", lw=1, label="budget (×: no phase change)")
        ax.set(xlabel=f"number of {key}", ylabel="phase-change step", title=f"Phase change against {what}",
               xticks=g["grid"])
        ax.legend(fontsize=7)
    fig.save(f, ctx.figures_dir / "scaling.png")
    return Figure("scaling.png", "Phase-change time against classes and labels (Fig. 6)",
                  "With layer 1 and copying clamped, only matching is left to learn: it should form later with more "
                  "classes. With matching clamped, only copying is left: it should form later with more labels.")


def toy(cfg: Any, r: dict[str, Any], ctx: RunContext) -> Figure:
    f, ax = fig.subplots(figsize=(6.4, 4.0))
    for name, loss in r["toy"]["loss"].items():
        ax.plot(np.arange(len(loss)), loss, label="no clamp" if name == "none" else f"{name} clamped")
    ax.set(xlabel="GD step", ylabel="loss", yscale="log", title="Rank-1 toy model (Fig. 5a)")
    ax.legend()
    fig.save(f, ctx.figures_dir / "toy.png")
    return Figure("toy.png", "The toy model of the phase change (a check)",
                  "Three multiplicatively interacting vectors: plain GD sits on a plateau, then drops; clamping c, or "
                  "b and c, to their true values shortens or removes the plateau.")


def draw(cfg: Any, r: dict[str, Any], ctx: RunContext) -> list[Figure]:
    return [loss_curves(cfg, r, ctx), head_scores(cfg, r, ctx), keep_one(cfg, r, ctx), scaling(cfg, r, ctx),
            toy(cfg, r, ctx)]
