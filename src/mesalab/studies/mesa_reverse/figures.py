"""Figures of the mesa-reverse-engineering study."""

from __future__ import annotations

from typing import Any

import numpy as np

from mesalab import figures as fig
from mesalab.studies.mesa_reverse.claims import S_NEXT_EARLY, precond_early
from mesalab.studies.protocol import Figure, RunContext


def draw(cfg: Any, r: dict[str, Any], ctx: RunContext) -> list[Figure]:

    out = []
    deep = r["deep"][-1]
    tail = slice(cfg.seq_len // 2, None)
    f, (ax1, ax2) = fig.subplots(1, 2, figsize=(11, 4))
    sites = ["embed"] + [f"layer {i + 1}" for i in range(deep["layers"])]
    for target, color in (("s_next", "tab:blue"), ("preconditioned", "tab:red"), ("s_t", "tab:gray")):
        r2 = np.asarray([p[target] for p in deep["probes"]])  # [seed, site, T]
        ax1.plot(sites, np.median(r2[:, :, tail].mean(-1), 0), "o-", color=color, label=target)
        ax2.plot(np.arange(r2.shape[-1]), np.median(r2[:, -1], 0), color=color, label=target)
    for (lo, hi), color in ((S_NEXT_EARLY, "tab:blue"), (precond_early(cfg.d), "tab:red")):
        ax2.axvspan(lo - 0.5, hi - 0.5, color=color, alpha=0.1)  # the early windows of the context findings
    ax1.set(xlabel="site", ylabel=f"held-out R² (positions ≥ {cfg.seq_len // 2})", title="Probes against depth")
    ax2.set(xlabel="position t (0-based)", ylabel="held-out R² (last layer)", title="Probes against context",
            ylim=(-0.1, 1.05))
    ax1.legend()
    fig.save(f, ctx.figures_dir / "probes.png")
    out.append(Figure("probes.png", f"Linear probes of the {deep['layers']}-layer model (median seed)",
                      "Left: R² of s_{t+1} and of the preconditioned input should rise from the embedding to the last "
                      "layer. Right: at the last layer they should rise with the number of tokens seen; the shaded "
                      "spans are the early windows the context findings compare with (blue: s_{t+1}, red: "
                      "preconditioned)."))

    f, (ax, ax2) = fig.subplots(1, 2, figsize=(11, 4))
    for part in r["deep"]:
        curve = np.median(np.asarray(part["interpolation"]), 0)
        a = np.linspace(0, 1, curve.size)
        ax.plot(a, curve, "o-", label=f"{part['layers']} layers: {part['params']} → {part['compressed_params']} params")
    ax.set(xlabel="mix a (0 = trained products, 1 = CompressedAlg)", ylabel="test loss (mean over positions)",
           title="Static interpolation")
    ax.legend()
    if "retrained" in deep:
        re = deep["retrained"]
        for i, curve in enumerate(re["test_loss"]):
            ax2.plot(re["steps"], curve, color="tab:purple", alpha=0.7, label="retrained ½ learned + ½ frozen" if i == 0
                     else None)
        ax2.axhline(np.median(deep["loss"]), color="black", ls="--", label="trained model (median seed)")
        ax2.axhline(np.median(deep["compressed_loss"]), color="tab:green", ls=":", label="CompressedAlg (median)")
        ax2.set(xlabel="step", ylabel="test loss", title=f"Retraining with frozen compressed heads, {deep['layers']} "
                "layers")
        ax2.legend()
    fig.save(f, ctx.figures_dir / "compressed.png")
    out.append(Figure("compressed.png", "Trained against compressed weights",
                      "Left: loss along the straight path between each model's products and their block-diagonal "
                      "means; a flat line means the 16 + 16 scalars per head carry what the model computes. Right: a "
                      "fresh model whose heads average their own products with the frozen compressed ones, trained "
                      "with the original budget (the authors' interpolation experiment)."))

    raw = r["raw"]
    f, (ax1, ax2) = fig.subplots(1, 2, figsize=(11, 4))
    for k in ("s_t-1", "s_t-2", "s_t-3", "s_next"):
        r2 = np.median(np.asarray([s[k] for s in raw["r2"]]), 0)
        lag = int(k[-1]) if k != "s_next" else 0
        ax1.plot(np.arange(lag + 1, cfg.seq_len + 1), r2[lag:], label=k)
    ax1.set(xlabel="position t", ylabel="held-out R² from layer 1", title="What layer 1 holds", ylim=(-0.1, 1.05))
    ax1.legend()
    sens = np.asarray(raw["sensitivity"])
    ax2.bar(["own", "previous", "other (mean)"], np.median(sens, 0), color=["tab:gray", "tab:red", "tab:blue"])
    ax2.set(ylabel="‖∂ layer-1 output / ∂ token‖", title="Layer-1 sensitivity")
    fig.save(f, ctx.figures_dir / "copying.png")
    out.append(Figure("copying.png", f"The mesa dataset of {raw['model']}",
                      "Layer 1 should hold the previous state s_{t−1} next to s_t (R² near 1) and read the previous "
                      "token far more than older ones: it builds the (s_{t−1}, s_t) pairs a mesa-optimizer needs."))

    n = r["neumann"]
    f, ax = fig.new_axes("layers K", "relative error ‖ŷ − A⁻¹s‖ / ‖A⁻¹s‖", "Preconditioning by depth")
    for pos, k, e_n, e_s in zip(n["positions"], n["kappa"], n["neumann"], n["newton"]):
        line = ax.plot(n["depths"], e_n, "--", label=f"term by term, t = {pos} (κ ≈ {k:.3g})")
        ax.plot(n["depths"], np.maximum(e_s, 1e-12), "-", color=line[0].get_color(), label=f"squaring, t = {pos}")
    ax.set_yscale("log")
    ax.legend(fontsize=7)
    fig.save(f, ctx.figures_dir / "neumann.png")
    out.append(Figure("neumann.png", "Neumann series term by term against repeated squaring",
                      "Dashed: error falls like ρ^K, slowly when A is badly conditioned. Solid: after a phase of "
                      "about log κ layers the error falls like ρ^(2^K) down to float32 round-off."))

    if deep["fewshot"]:
        f, ax = fig.new_axes("example i (i − 1 seen before)", "½‖ŷ_i − y_i‖²", "Few-shot regression")
        for key, style in (("plain", "-"), ("eos_untuned", ":"), ("eos", "-"), ("prefix", "-")):
            if key not in deep["fewshot"][0]:
                continue
            curve = np.median(np.asarray([s[key] for s in deep["fewshot"]]), 0)
            ax.plot(np.arange(1, curve.size + 1), curve, style, label=key)
        ax.plot(np.arange(1, len(deep["fewshot_lsq"]) + 1), deep["fewshot_lsq"], "k--", label="least squares")
        ax.set_yscale("log")
        ax.legend()
        fig.save(f, ctx.figures_dir / "fewshot.png")
        out.append(Figure("fewshot.png", f"Few-shot regression with the {deep['layers']}-layer dynamics model",
                          "The plain [x, y] format feeds the model half noisy pairs; a tuned EOS token (and prompt) "
                          "should lower the loss toward least squares (dashed). Dotted: the separator untuned (the "
                          "format without tuning)."))
    return out
