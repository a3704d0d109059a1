"""Figures of the induction-classification study."""

from __future__ import annotations

from typing import Any

import numpy as np

from mesalab import figures as fig
from mesalab.studies.induction_classification.claims import ic_jumps
from mesalab.studies.induction_classification.claims_sweeps import identifiable_eps
from mesalab.studies.induction_heads.figures import attention_grid, band, shade
from mesalab.studies.protocol import Figure, RunContext


def draw(cfg: Any, r: dict[str, Any], ctx: RunContext) -> list[Figure]:

    main, n = r["main"], cfg.n_pairs
    windows = [(t.t10, t.t90) for t in ic_jumps(main, n) if np.isfinite(t.t10)]
    out = []

    f, (ax1, ax2) = fig.subplots(1, 2, figsize=(11, 4))
    for metric, label, color in (("ic_accuracy", "IC (novel classes)", "tab:blue"),
                                 ("ic2_accuracy", "IC2 (labels swapped)", "tab:purple"),
                                 ("iw_accuracy", "IW (in weights)", "tab:orange")):
        band(ax1, main, metric, label, color)
    if "control" in r:
        band(ax1, r["control"], "ic_accuracy", f"IC with L = N = {n}", "tab:gray")
    for level, text in ((1 / n, "1/N"), (1 / cfg.n_labels, "1/L")):
        ax1.axhline(level, color="black", ls=":", lw=1)
        ax1.text(0, level, text, va="bottom", fontsize=8)
    shade(ax1, windows)
    ax1.set(xlabel="step", ylabel="accuracy", title="Test sets over training (shaded: each seed's jump)")
    ax1.legend(fontsize=8)
    for metric, label, color in (("ila1", "ILA1: label → its item, layer 1", "tab:orange"),
                                 ("tila2", "TILA2: query → matching label, layer 2", "tab:red"),
                                 ("tla2", "TLA2: query → all labels, layer 2", "tab:green"),
                                 ("cla", "CLA: probability on context labels", "tab:brown")):
        band(ax2, main, metric, label, color)
    shade(ax2, windows)
    ax2.set(xlabel="step", ylabel="value", title="Progress measures on IC")
    ax2.legend(fontsize=8)
    fig.save(f, ctx.figures_dir / "training.png")
    out.append(Figure("training.png", "Accuracy and progress measures over training",
                      "IC accuracy should creep from 1/L toward 1/N, then jump (shaded); the L = N control should stay "
                      "at 1/N. Progress measures should start moving before the jump."))

    maps = main["patterns"]
    attention_grid(maps, ctx)
    match = [i for i, lab in enumerate(maps["labels"]) if lab == maps["target"]]
    out.append(Figure("attention.png", "Attention before and after the transition (seed 0, one IC sequence)",
                      "After training, layer 1 should send each label's attention to its item, and layer 2 the "
                      f"query's to the matching label (here ℓ{', ℓ'.join(str(i + 1) for i in match)})."))

    if r["burst"]:
        f, ax = fig.new_axes("burstiness B (0: non-bursty)", "final accuracy", "Burstiness trades IWL for ICL")
        bs = [p["burstiness"] for p in r["burst"]]
        for metric, label, color in (("ic_accuracy", "IC", "tab:blue"), ("iw_accuracy", "IW", "tab:orange")):
            vals = [np.asarray([c[-1] for c in p["curves"][metric]]) for p in r["burst"]]
            ax.errorbar(bs, [v.mean() for v in vals], yerr=[v.std() for v in vals], marker="o", color=color,
                        label=label, capsize=3)
        ax.set_xticks(bs)
        ax.legend()
        fig.save(f, ctx.figures_dir / "burstiness.png")
        out.append(Figure("burstiness.png", "Data dependence: burstiness",
                          "IC accuracy should rise with B and IW accuracy fall (mean ± std over seeds)."))

    phase = r.get("phase", {})
    if phase:
        out.append(_phase_figure(cfg, r, phase, ctx))

    if r.get("transience"):
        out.append(_transience_figure(cfg, r["transience"], ctx))

    ph = r["phenomenology"]
    f, (ax1, ax2) = fig.subplots(1, 2, figsize=(11, 4))
    cs = ax1.contourf(ph["xis"], ph["alphas"], np.asarray(ph["landscape"]), levels=30, cmap="viridis")
    f.colorbar(cs, ax=ax1, label="loss")
    path = np.asarray(ph["flows"]["l_gt_n"]["params"])
    ax1.plot(path[:, 2], path[:, 1], color="white", lw=1.5, label="gradient flow (β free)")
    ax1.set(xlabel="ξ (classifier overlap)", ylabel="α (match strength)", title="Three-logit landscape at β = 2",
            xlim=(0, max(ph["xis"])), ylim=(0, max(ph["alphas"])))
    ax1.legend(fontsize=8)
    for key, color in (("l_gt_n", "tab:blue"), ("l_eq_n", "tab:gray")):
        flow = ph["flows"][key]
        ax2.plot(flow["time"], flow["loss"], color=color, label=f"L = {flow['n_labels']}, N = {n}")
    ax2.set(xlabel="time (gradient flow)", ylabel="loss", title="Plateau, cliff and the L = N saddle")
    ax2.legend()
    fig.save(f, ctx.figures_dir / "phenomenology.png")
    out.append(Figure("phenomenology.png", "The phenomenological model",
                      "Left: the loss over (ξ, α) with the flow's path from the origin (β moves too, so the path is a "
                      "projection). Right: from the origin the L > N loss plateaus, then falls off a cliff; with L = N "
                      "it never moves."))
    return out


def _phase_figure(cfg: Any, r: dict[str, Any], phase: dict[str, Any], ctx: RunContext) -> Figure:

    f, axes = fig.subplots(1, 4, figsize=(17, 3.8))
    if "classes" in phase and r["burst"]:
        bs = phase["classes"]["burstiness"]
        ks = [cfg.burst_classes, phase["classes"]["n_classes"]]
        for ax, key, title in ((axes[0], "ic", "IC accuracy"), (axes[1], "iw", "IW accuracy")):
            grid = np.asarray([[np.mean([c[-1] for c in p["curves"][f"{key}_accuracy"]]) for p in r["burst"]],
                               [np.mean(v) for v in phase["classes"][key]]])
            im = ax.imshow(grid, cmap="viridis", vmin=0, vmax=1, aspect="auto")
            for (i, j), v in np.ndenumerate(grid):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", color="white" if v < 0.6 else "black", fontsize=8)
            ax.set_xticks(range(len(bs)), [str(b) for b in bs])
            ax.set_yticks(range(2), [str(k) for k in ks])
            ax.grid(False)
            ax.set(xlabel="burstiness B", ylabel="classes K", title=f"{title}, K × B")
        f.colorbar(im, ax=axes[1])
    for ax, field, label in ((axes[2], "eps", "within-class noise ε"), (axes[3], "zipf_alpha", "Zipf exponent α")):
        if field not in phase:
            ax.set_visible(False)
            continue
        values = phase[field]["values"]
        for key, color in (("ic", "tab:blue"), ("iw", "tab:orange")):
            v = np.asarray(phase[field][key])
            ax.errorbar(values, v.mean(1), yerr=v.std(1), marker="o", capsize=3, color=color, label=key.upper())
        if field == "eps":
            ax.axvline(identifiable_eps(cfg.dim), color="gray", ls=":", label="class identifiable below")
        ax.set(xlabel=label, ylabel="final accuracy", title=f"B = {cfg.phase_burstiness}, K = {cfg.burst_classes}",
               ylim=(-0.05, 1.05))
        ax.legend()
    fig.save(f, ctx.figures_dir / "phase.png")
    return Figure("phase.png", "Phase diagrams: classes × burstiness, noise ε and Zipf α",
                  "Final IC and IW accuracy (mean over seeds). Chan et al. find ICL rising with B, K and ε, IWL "
                  "falling with B, and a Zipf exponent near 1 allowing both. The dotted line marks the ε beyond which "
                  "items of one class overlap less than unrelated items (1/(1+ε²) < 1/√D). The ε and α points are "
                  "evaluated on test sets drawn at each member's own ε or α; the K × B grid on its own task's test "
                  "sets.")


def _transience_figure(cfg: Any, part: dict[str, Any], ctx: RunContext) -> Figure:
    f, axes = fig.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, key, title in ((axes[0], "no_l2", "without L2"), (axes[1], "l2", f"with L2 (λ = {part['l2']['l2']})")):
        band(ax, part[key], "ic_accuracy", "ICL: IC (novel classes)", "tab:blue")
        band(ax, part[key], "iw_accuracy", "IWL: IW (no exemplar in context)", "tab:orange")
        ax.axhline(part["baseline"], color="black", ls=":", lw=1)
        ax.set(xlabel="step", ylabel="accuracy", title=f"Transience {title}")
        ax.legend(fontsize=8)
    fig.save(f, ctx.figures_dir / "transience.png")
    return Figure("transience.png", "Transience of ICL (Singh et al. 2023)",
                  "Without L2, IC accuracy should rise, then fall back toward 1/N (dotted) as IW accuracy takes over; "
                  "with L2 it should stay up.")
