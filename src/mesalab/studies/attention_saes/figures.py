"""Figures of the attention-saes study: the L0 / loss-recovered Pareto curve, the head-attribution matrix, the
feature families per head, and the checkpoint timeline against the training loss."""

from __future__ import annotations

from typing import Any

import numpy as np

from mesalab import figures as fig
from mesalab.studies.attention_saes.families import FAMILIES
from mesalab.studies.in_context_language.claims import HEAD_SCORE
from mesalab.studies.protocol import Figure, RunContext


def pareto(cfg: Any, r: dict[str, Any], ctx: RunContext) -> Figure:
    layers = list(r["saes"])
    f, axes = fig.subplots(1, len(layers), figsize=(5.5 * len(layers), 4), squeeze=False)
    for ax, layer in zip(axes[0], layers):
        for i, s in enumerate(r["saes"][layer]):
            l0, rec = np.asarray(s["l0"]), np.asarray(s["loss_recovered"])
            order = np.argsort(l0)
            ax.plot(l0[order], rec[order], "o-", color=f"C{i}", label=f"model {i}")
            ax.plot(l0[s["chosen"]], rec[s["chosen"]], "*", ms=14, color=f"C{i}")
        ax.axhline(0.8, color="gray", ls="--", lw=1, label="80% (Kissane, GPT-2 Small)")
        ax.axvline(20, color="gray", ls=":", lw=1, label="L0 = 20")
        ax.set(xscale="log", xlabel="L0 (features firing per token)", ylabel="loss recovered vs zero ablation",
               title=f"Layer {layer} hook_z SAEs")
        ax.legend(fontsize=7)
    fig.save(f, ctx.figures_dir / "pareto.png")
    return Figure("pareto.png", "Sparsity against faithfulness",
                  "Each point an SAE of the ensemble (λ = c·E‖x‖ over the grid, both seeds), per base model; the star "
                  "is the SAE the findings read (best loss recovered at L0 ≤ 20). Up and to the left is better.")


def attribution(cfg: Any, r: dict[str, Any], ctx: RunContext) -> Figure:
    per = r["saes"][str(cfg.layer)]
    n = len(per)
    f, axes = fig.subplots(1, n, figsize=(4.5 * n, 4), squeeze=False)
    for i, (ax, s) in enumerate(zip(axes[0], per)):
        counts = np.asarray(s["per_head"], float)          # [head, family]
        im = ax.imshow(counts.T, aspect="auto", cmap="viridis")
        ax.set(xlabel="layer-1 head" if cfg.layer == 1 else "head", yticks=range(len(FAMILIES)),
               yticklabels=FAMILIES, title=f"model {i}: single-head features")
        for h in r["heads"]["marked"][i]:
            ax.axvline(h, color="white", lw=0.5, ls=":")
        f.colorbar(im, ax=ax)
    fig.save(f, ctx.figures_dir / "families_per_head.png")
    return Figure("families_per_head.png", "Feature families per head",
                  "Counts of single-head features (≥ 50% of decoder norm² in one head) of each family, by the head "
                  "they sit in, for the layer the findings read; dotted lines mark the heads S6 marks as induction "
                  "heads. A column with two or more coloured rows is a polysemantic head.")


def head_matrix(cfg: Any, r: dict[str, Any], ctx: RunContext) -> Figure:
    per = r["saes"][str(cfg.layer)]
    f, axes = fig.subplots(2, len(per), figsize=(4.5 * len(per), 8), squeeze=False)
    for i, (ax, s) in enumerate(zip(axes[0], per)):
        att = np.asarray(s["attribution"]).reshape(-1, len(r["heads"]["keep_one"][i]))
        order = np.lexsort((-att.max(1), att.argmax(1))) if att.size else np.arange(0)
        im = ax.imshow(att[order], aspect="auto", cmap="magma", vmin=0, vmax=1, interpolation="nearest")
        ax.set(xlabel="head", ylabel="live feature (by top head)", title=f"model {i}: decoder norm² share per head")
        f.colorbar(im, ax=ax)
    for i, (ax, s) in enumerate(zip(axes[1], per)):
        family = np.asarray(s["family"])
        live = np.flatnonzero(family >= 0)
        ax.hist([np.asarray(s["attribution_max"])[live[family[live] == k]] for k in range(len(FAMILIES))],
                bins=np.linspace(0, 1, 11), stacked=True, label=list(FAMILIES))
        ax.axvline(0.5, color="gray", ls="--", lw=1)
        ax.set(xlabel="largest head share of decoder norm²", ylabel="live features", title=f"model {i}")
        ax.legend(fontsize=7)
    fig.save(f, ctx.figures_dir / "head_attribution.png")
    return Figure("head_attribution.png", "Head attribution of the features",
                  "Top: the head-attribution matrix of the chosen SAE (Kissane's weight-based head attribution): "
                  "each live feature's share of decoder norm² per head, features grouped by their top head. A "
                  "single-head dictionary is a block staircase; rows spread across heads are multi-head features. "
                  "Bottom: each live feature's largest share, stacked by family; right of the dashed line: "
                  "single-head features. Random unit rows over 8 heads sit near 1/8–1/3.")


def timeline(cfg: Any, r: dict[str, Any], ctx: RunContext) -> Figure | None:
    tl = r.get("timeline")
    if not tl:
        return None
    f, ax = fig.subplots(1, 1, figsize=(7, 4))
    twin = ax.twinx()
    for i, shares in enumerate(tl["induction_share"]):
        ax.plot(tl["steps"], shares, "o-", color=f"C{i}", label=f"model {i}: induction family share")
        twin.plot(r["base"]["steps"], r["base"]["test_loss"][i], color=f"C{i}", alpha=0.35, lw=1)
        if np.isfinite(r["base"]["phase"][i]):
            ax.axvline(r["base"]["phase"][i], color=f"C{i}", ls=":", lw=1)
    ax.axhline(0.05, color="gray", ls="--", lw=1)
    ax.set(xlabel="training step of the base model", ylabel="induction features / live features",
           title="SAEs on training checkpoints")
    twin.set(ylabel="test loss (faint)")
    ax.legend(fontsize=7)
    fig.save(f, ctx.figures_dir / "timeline.png")
    return Figure("timeline.png", "When the induction family appears",
                  "An SAE on each checkpoint of each base model; the share of its live features in the induction "
                  "family (dots), the test loss (faint) and S6's phase-change step (dotted). The dashed line is the "
                  "5% a family needs.")


def s8_model(cfg: Any, r: dict[str, Any], ctx: RunContext) -> Figure | None:
    """The S8 part (s8_from_run): its SAEs' Pareto points and, per head, the n-gram-head score and n-gram features."""
    s8 = r.get("s8")
    if not s8 or not s8.get("per_seed"):
        return None
    f, (left, right) = fig.subplots(1, 2, figsize=(11, 4))
    width = 0.8 / len(s8["per_seed"])
    for i, s in enumerate(s8["per_seed"]):
        l0, rec = np.asarray(s["l0"]), np.asarray(s["loss_recovered"])
        order = np.argsort(l0)
        left.plot(l0[order], rec[order], "o-", color=f"C{i}", label=f"model {i}")
        left.plot(l0[s["chosen"]], rec[s["chosen"]], "*", ms=14, color=f"C{i}")
        heads = np.arange(len(s["head_score"]))
        right.bar(heads + (i - (len(s8["per_seed"]) - 1) / 2) * width, s["head_score"], width, color=f"C{i}",
                  label=f"model {i}: n-gram-head score (n-gram features {', '.join(f'{c:.0f}' for c in s['ngram_by_head'])})")
    left.set(xscale="log", xlabel="L0 (features firing per token)", ylabel="loss recovered vs zero ablation",
             title=f"S8 transformer, layer {s8['per_seed'][0]['layer']} hook_z SAEs")
    left.legend(fontsize=7)
    right.axhline(HEAD_SCORE, color="gray", ls="--", lw=1, label=f"{HEAD_SCORE}: an n-gram head (S8's threshold)")
    right.set(xlabel="head", ylabel="n-gram-head score", ylim=(0, 1), xticks=heads, title="Heads of that layer")
    right.legend(fontsize=7)
    fig.save(f, ctx.figures_dir / "s8_model.png")
    return Figure("s8_model.png", "SAEs on the S8 transformer",
                  f"The S8 run {s8['from_run']}: left, each SAE of the ensemble on the last layer's hook_z (the star is "
                  "the one the ngram-family row reads); right, each head's n-gram-head score, with the n-gram-"
                  "continuation features attributed to each head in the legend. ngram-family needs a head above "
                  "the dashed line.")


def draw(cfg: Any, r: dict[str, Any], ctx: RunContext) -> list[Figure]:
    out = [pareto(cfg, r, ctx), head_matrix(cfg, r, ctx), attribution(cfg, r, ctx), timeline(cfg, r, ctx),
           s8_model(cfg, r, ctx)]
    return [x for x in out if x is not None]
