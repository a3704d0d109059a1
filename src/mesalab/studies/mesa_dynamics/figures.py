"""Figures of the mesa-dynamics study."""

from __future__ import annotations

from typing import Any

import numpy as np

from mesalab import figures as fig
from mesalab.studies.protocol import Figure, RunContext

SLOTS = ("pred", "s_t", "s_t", "s_{t−1}")


def draw(cfg: Any, r: dict[str, Any], ctx: RunContext) -> list[Figure]:

    out = []
    b = r["baselines"]
    lsq = np.mean(b["lsq_all" if cfg.lsq_pairs == "all" else "lsq_one_fewer"])
    lsq_label = f"least squares ({'all pairs' if cfg.lsq_pairs == 'all' else 'one pair fewer'})"
    positions = np.arange(1, cfg.seq_len + 1)
    models = {"default linear-2": r["default"], "linear-1-masked": r["one_layer"], **r["compare"]}

    f, ax = fig.new_axes("position t (tokens seen)", "test loss ½‖ŝ_{t+1} − s_{t+1}‖²", "Per-position loss")
    for name, part in models.items():
        curve = np.median(np.asarray(part["curve"]), axis=0)
        ax.plot(positions, curve, label=f"{name} (median of {len(part['curve'])} seeds)")
    ax.plot(positions, b["lsq_all"], "k--", label=f"least squares, all pairs (λ = {cfg.lsq_lambda:g})")
    ax.plot(positions, b["lsq_one_fewer"], "k:", label="least squares, one pair fewer (authors)")
    ax.plot(positions, b["gd1"], color="0.5", ls="-.", label=f"one GD step, η = {b['gd1_eta']:.3f}")
    ax.set_yscale("log")
    ax.legend(fontsize=7)
    fig.save(f, ctx.figures_dir / "per_position.png")
    out.append(Figure("per_position.png", "Per-position loss: models against least squares and GD",
                      "Least squares (dashed) drops to the noise floor after about d = 10 tokens; one GD step "
                      "(dash-dot) stays high. Trained models should fall between them, the mesa layer closest to "
                      "least squares."))

    metrics = ctx.metrics_frame()
    f, ax = fig.new_axes("training step", "test loss (mean over positions)", "Loss during training")
    for part in metrics.part.unique():
        rows = metrics[(metrics.part == part) & (metrics.metric == "test_loss")]
        fig.seed_band(ax, rows, "step", "value", part)
    ax.axhline(lsq, color="k", ls="--", label=lsq_label)
    ax.axhline(np.mean(b["gd1"]), color="0.5", ls="-.", label="one GD step")
    ax.set_yscale("log")
    ax.legend(fontsize=7)
    fig.save(f, ctx.figures_dir / "training.png")
    out.append(Figure("training.png", "Test loss during training",
                      "The default model leaves its initial plateau (≈ 1.67, the zero predictor) after a few hundred "
                      "steps; parts trained on a shorter schedule end earlier."))

    names = list(r["compare"])
    losses = [np.asarray(r["compare"][n]["loss"]) for n in names]
    f, ax = fig.new_axes("", "test loss (mean over positions)", "Mesa layer against attention stacks, trained alike")
    xs = np.arange(len(names))
    ax.bar(xs, [np.median(v) for v in losses], color=["tab:red" if "mesa" in n else "tab:blue" for n in names])
    for x, v in zip(xs, losses):
        ax.plot(np.full(v.shape, x), v, "k.", ms=4)
    ax.set_xticks(xs, [f"{n}\n{r['compare'][n]['params']} params" for n in names], fontsize=7)
    ax.axhline(lsq, color="k", ls="--", label=lsq_label)
    ax.legend()
    fig.save(f, ctx.figures_dir / "mesa_vs_depth.png")
    out.append(Figure("mesa_vs_depth.png", "Mesa layer against depth-matched attention",
                      "Bars are median seeds, dots single seeds; models with a mesa layer in red. A single mesa "
                      "layer should beat linear and softmax stacks with as many or more parameters."))

    qk, ov = np.asarray(r["default_qk"]), np.asarray(r["default_ov"])
    layers, heads = qk.shape[:2]
    f, axes = fig.subplots(2 * layers, heads, figsize=(2.6 * heads, 2.6 * 2 * layers), squeeze=False)
    width = qk.shape[-1]
    for layer in range(layers):
        for h in range(heads):
            for row, (mat, label) in enumerate(((qk, "W_KᵀW_Q"), (ov, "PW_V"))):
                ax = axes[2 * layer + row, h]
                m = mat[layer, h]
                lim = float(np.abs(m).max()) or 1.0
                ax.imshow(m, cmap="RdBu_r", vmin=-lim, vmax=lim)
                for edge in range(1, 4):
                    ax.axhline(edge * width / 4 - 0.5, color="k", lw=0.4)
                    ax.axvline(edge * width / 4 - 0.5, color="k", lw=0.4)
                ax.set_title(f"layer {layer + 1} head {h + 1}: {label}", fontsize=7)
                ax.set_xticks([width / 8 + i * width / 4 for i in range(4)], SLOTS, fontsize=6)
                ax.set_yticks([width / 8 + i * width / 4 for i in range(4)], SLOTS, fontsize=6)
    fig.save(f, ctx.figures_dir / "weights.png")
    out.append(Figure("weights.png", "Weight structure of the default model (median seed)",
                      "Each product is a 4 × 4 grid of 10 × 10 blocks over the token slots [pred, s_t, s_t, s_{t−1}] "
                      "(rows key/output slots, columns query/value slots). Blocks close to multiples of the identity "
                      "are what the compressed algorithm keeps; diagonals inside blocks show it."))

    a = r["one_layer"]["analysis"]
    qk1, ov1 = np.asarray(a["scalars_qk"]), np.asarray(a["scalars_ov"])  # [seed, head, 2, 2], [seed, head, 2]
    labels = [f"h{h + 1} {n}" for h in range(qk1.shape[1]) for n in ("α (s_i·s_t)", "η (s_{i−1}·s_t)",
                                                                       "β (s_i·s_{t−1})", "γ (s_{i−1}·s_{t−1})")]
    labels += [f"h{h + 1} {n}" for h in range(ov1.shape[1]) for n in ("p₁ (value s_i)", "p₂ (value s_{i−1})")]
    # qk rows are key slots (s_i, s_{i−1}), columns query slots (s_t, s_{t−1}).
    values = np.concatenate([qk1[:, :, [0, 1, 0, 1], [0, 0, 1, 1]].reshape(len(qk1), -1), ov1.reshape(len(ov1), -1)], 1)
    f, ax = fig.new_axes("", "value", "The 12 scalars of the 1-layer model (one dot per seed)")
    for i in range(values.shape[1]):
        ax.plot(np.full(values.shape[0], i), values[:, i], "o", ms=4, color="tab:blue")
    ax.set_xticks(range(len(labels)), labels, rotation=70, fontsize=6)
    ax.axhline(0, color="k", lw=0.5)
    fig.save(f, ctx.figures_dir / "compressed_1layer.png")
    out.append(Figure("compressed_1layer.png", "Compressed 1-layer algorithm",
                      "Per head, the four block scalars of W_KᵀW_Q over (key, query) slots and the two of PW_V into "
                      "the prediction slot. The η-terms (key s_{i−1}, query s_t, value s_i) together are one GD step "
                      "from W_0 = 0."))
    return out
