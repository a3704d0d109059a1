"""S1 gd-equivalence (von Oswald et al. 2023): a trained linear self-attention layer is one step of gradient descent
on in-context linear regression, and deeper stacks beat plain GD.

Measured here (DESIGN.md §4 S1): the trained 1-layer LSA's loss against GD-1 at the optimal η (closed form, fitted
on separate tasks); agreement of predictions and of sensitivities ∂ŷ/∂x_q with the GD construction; the trained
weights against the construction up to the K-Q / V-P scale symmetry; the interpolated model; out-of-distribution
input scales and the iterated layer with damping (transfer.py); 2–5-layer stacks against K-step GD
and learned GD++ (depth.py); and the interleaved-token model whose first layer should learn to
copy (copying.py).
"""

from __future__ import annotations

import functools
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from mesalab.algorithms import gd_one_step_predict, ols_predict, optimal_eta_one_step, ridge_predict
from mesalab.analysis.alignment import interpolate_products, normalized_products, x_block_offdiag_ratio
from mesalab.analysis.alignment import model_alignment
from mesalab.config import config, require, require_positive
from mesalab.constructions import gd_lsa
from mesalab.models.config import TransformerConfig
from mesalab.models.transformer import Transformer
from mesalab.studies.gd_equivalence import depth
from mesalab.studies.gd_equivalence import figures as gd_equivalence_figures
from mesalab.studies.gd_equivalence import transfer
from mesalab.studies.gd_equivalence.copying import run_copying
from mesalab.studies.protocol import Claim, Experiment, Figure, RunContext, measured_claim, not_run
from mesalab.tasks.regression import RegressionConfig, sample_raw
from mesalab.models.weights import ov, qk
from mesalab.train import TrainConfig, Trainer, member_of
from mesalab.train.loss import half_mse

NAME = "gd-equivalence"
SUMMARY = "one linear self-attention layer learns one step of gradient descent"
SOURCE = "von Oswald et al. 2023, Transformers learn in-context by gradient descent (ICML)"

# Thresholds, fixed before looking at results. Each is applied to the median seed (the per-seed values are printed
# beside it), so one seed stuck on a plateau does not decide a claim about what training finds.
GD1_TOLERANCE = 0.02  # DESIGN.md §4 S1: trained loss within 2% of optimal GD-1
COSINE_MIN = 0.99  # DESIGN.md §4 S1: cosine of ∂ŷ/∂x_q (TF vs GD) ≥ 0.99
# reference/mesa.md §1.8 [M]: mean |ŷ_TF − ŷ_GD| = 0.021 with predictions O(0.6), i.e. ≈ 3.5%; we allow 10%.
PRED_DIFF_MAX = 0.10
WEIGHT_TOLERANCE = 0.05  # DESIGN.md §4 S1: scale × PW_V y-entry = −η*/N within 5%
# reference/mesa.md §1.8 [M]: x-block mean |off-diagonal| 0.004 vs diagonal 0.507 (0.8%); we allow 5%.
OFFDIAG_MAX = 0.05
INTERP_TOLERANCE = 0.02  # "the interpolated model has the same loss": within 2%, as the GD-1 claim
# The paper shows the OOD and iterated-layer loss curves of TF and GD on top of each other (reference/mesa.md
# §1.6); we call them "together" when, for the median seed, no point differs by more than 10%.
TRANSFER_GAP = 0.10
# "matches GD++" (DESIGN.md §4 S1): the trained stack's loss within 10% of learned GD++, either side.
GDPP_MATCH = 0.10
# A copying head reads mostly one token: we ask the neighbour's sensitivity to be at least twice that of the token
# itself and of every other context token.
COPY_DOMINANCE = 2.0
VALIDATION_SEED, ETA_FIT_SEED = 5, 6  # the authors' eval_rng = PRNGKey(5) (reference/mesa.md §1.5)
RIDGE_LAMBDA = 1e-3  # reference/mesa.md §1.7
PAPER_GD1_LOSS = 0.208  # GD-1 at the optimal η for x ~ U(±0.5), d = N = 10 (reference/mesa.md §1.7); ×4 for U(±1)


@config
class Config:
    """d, n_context: task size; x_half_width: x ~ U(−x_half_width, x_half_width) (paper text 1.0, authors' code
    0.5); steps, batch_size, lr, b2, init_scale: Adam training of the LSA; seeds: ensemble members; n_validation:
    tasks used for every reported number (the paper's 10⁴). depths: the deeper stacks; deep_*: their training
    (deep_lr_factor multiplies the peak rate beyond 3 layers; the authors halve it);
    gdpp_steps: the most L-BFGS iterations per start fitting GD++'s (η, γ) per layer (algorithms/fit.py);
    ood_points: input scales α in [0.5, 2]; iterations, damping: the trained layer iterated with residual scale
    `damping`."""

    d: int = 10
    n_context: int = 10
    x_half_width: float = 0.5
    steps: int = 2000
    batch_size: int = 2048
    lr: float = 1e-3
    b2: float = 0.98
    init_scale: float = 0.002
    seeds: int = 4
    chunk_steps: int = 250
    eval_batch_size: int = 4096
    n_validation: int = 10_000
    depths: tuple[int, ...] = (2, 3, 4, 5)
    # The cpu recipe of the deep stacks (median of 4 seeds against fitted GD++, K = 2…5): 4k steps at batch 512
    # gave +0.8%, +45%, +370%, +1388% at peak 3e-3 and +3.2%, +49%, +27%, +189% at 2e-2 (halved beyond 3 layers),
    # with single seeds swinging ±50% at K = 3 on float rounding alone; 2k steps at batch 1024 (the same sequences)
    # at 1e-2 for every depth gave −3%, −2%, +32%, +300%. Longer runs at batch 2048 (one seed each): K = 4 reached
    # 0.0158 (−10%) after 4k steps and 0.0157 (−11%) after 12k; K = 5 0.0088–0.0113 (+42–82%) after 4k and 0.0074
    # (+19%) after 12k, ten minutes for that one seed. Matching GD++ beyond 3 layers is a GPU budget.
    deep_steps: int = 2000
    deep_batch_size: int = 1024
    deep_lr: float = 1e-2
    deep_lr_factor: float = 1.0
    gdpp_steps: int = 2000
    ood_points: int = 7
    iterations: int = 20
    damping: float = 0.75
    copy_steps: int = 4000
    copy_batch_size: int = 512
    copy_lr: float = 3e-3
    # Fan-in init scale 1.0: at the authors' 0.01 the interleaved model stayed on its initial plateau (½·MSE 0.43,
    # the zero predictor) for 3k steps at batch 256, all 4 seeds; at 1.0 all 4 reached 0.217–0.231 (GD-1: 0.208).
    copy_init_scale: float = 1.0
    copy_pos_dim: int = 10

    def __post_init__(self) -> None:
        require_positive(self, "d", "n_context", "x_half_width", "steps", "batch_size", "lr", "init_scale", "seeds",
                         "chunk_steps", "eval_batch_size", "n_validation", "deep_steps", "deep_batch_size",
                         "deep_lr", "deep_lr_factor", "gdpp_steps", "ood_points", "iterations", "damping",
                         "copy_batch_size", "copy_lr", "copy_init_scale", "copy_pos_dim")
        require(self, "copy_steps", isinstance(self.copy_steps, int) and self.copy_steps >= 0,
                "an integer >= 0 (0: skip the interleaved-token model)")
        require(self, "depths", all(isinstance(k, int) and k >= 2 for k in self.depths),
                "a tuple of integers >= 2 (possibly empty)")
        require(self, "seeds", isinstance(self.seeds, int), "a positive integer")


PRESETS = {
    "smoke": Config(steps=200, batch_size=512, seeds=2, chunk_steps=25, eval_batch_size=1024, n_validation=2048,
                    depths=(2,), deep_steps=100, deep_batch_size=128, gdpp_steps=200, ood_points=3, iterations=3,
                    copy_steps=100, copy_batch_size=128),
    "cpu": Config(copy_steps=3000, copy_batch_size=256),
    # The paper's sizes (reference/mesa.md §1.5): 5k steps for one layer, 50k for deeper stacks, batch 2048, lr 1e-3.
    "paper": Config(steps=5000, seeds=8, chunk_steps=500, eval_batch_size=10_000, deep_steps=50_000,
                    deep_batch_size=2048, deep_lr=1e-3, deep_lr_factor=0.5, gdpp_steps=30_000, ood_points=51,
                    iterations=50,
                    copy_steps=10_000, copy_batch_size=2048),
}


def lsa_config(task: RegressionConfig, init_scale: float = 0.002) -> TransformerConfig:
    """von Oswald's LSA: one head, key size d+1, non-causal, keys/values from context only, ŷ = −(query y slot)."""
    width = task.d + 1
    return TransformerConfig(
        d_model=width, n_layers=1, n_heads=1, d_head=width, attention="linear", causal=False,
        keys_from="context", init="fan_in", init_scale=init_scale, readout_start=task.d, readout_size=1,
        readout_sign=-1.0,
    )


def experiment(cfg: Config) -> Experiment:
    task = RegressionConfig(d=cfg.d, n_context=cfg.n_context, x_half_width=cfg.x_half_width)
    train = TrainConfig(steps=cfg.steps, batch_size=cfg.batch_size, optimizer="adam", lr=cfg.lr, b2=cfg.b2,
                        chunk_steps=cfg.chunk_steps, eval_batch_size=cfg.eval_batch_size)
    return Experiment(task, lsa_config(task, cfg.init_scale), train)


def fit_eta(task: RegressionConfig, n: int) -> float:
    """η* for GD-1 in closed form, on tasks drawn apart from the validation tasks."""
    _, x, y = sample_raw(task, jax.random.PRNGKey(ETA_FIT_SEED), n)
    return float(optimal_eta_one_step(x[:, :-1], y[:, :-1], x[:, -1], y[:, -1]))


def run(cfg: Config, ctx: RunContext) -> dict[str, Any]:
    exp = experiment(cfg)
    task, d = exp.task, cfg.d
    eta = fit_eta(task, cfg.n_validation)
    gd = gd_lsa(exp.model, task, eta)

    def track(model, batch, _ivs):  # alignment with the GD construction at every chunk boundary
        return model_alignment(model, gd, batch.inputs, d)

    trainer = Trainer(task, functools.partial(Transformer, exp.model), exp.train, metrics_fn=track)
    result = trainer.fit(cfg.seeds, checkpoint_dir=ctx.checkpoint_dir("lsa"), resume=ctx.resume, progress=ctx.progress)
    ctx.add_metrics(result.history, "lsa")

    batch = task.sample(jax.random.PRNGKey(VALIDATION_SEED), cfg.n_validation)
    x, y = batch.info["x"], batch.info["y"]
    xc, yc, xq, yq = x[:, :-1], y[:, :-1], x[:, -1], y[:, -1]

    def loss_of(pred):
        return float(half_mse(pred, yq))

    def per_member(model):
        pred = jax.vmap(model.predict_last)(batch.inputs)[:, 0]
        qk_n, ov_n, scale = normalized_products(model, d)
        mid = interpolate_products(model, gd, d)
        return {"loss": half_mse(pred, yq), **model_alignment(model, gd, batch.inputs, d),
                "qk_scale": scale, "offdiag_ratio": x_block_offdiag_ratio(qk_n, d), "ov_yy": ov_n[d, d],
                "interp_loss": half_mse(jax.vmap(mid.predict_last)(batch.inputs)[:, 0], yq)}

    members = {k: np.asarray(v).tolist() for k, v in eqx.filter_vmap(per_member)(result.models).items()}
    ood = transfer.ood_scan(result.models, task, eta, np.linspace(0.5, 2.0, cfg.ood_points), cfg.n_validation,
                            VALIDATION_SEED)
    iters = transfer.iteration_curves(result.models, task, eta, cfg.iterations, cfg.damping, cfg.n_validation,
                                      VALIDATION_SEED)
    deep = depth.run_depths(cfg, ctx, task, exp.model, batch, ETA_FIT_SEED) if cfg.depths else None
    copying = run_copying(cfg, ctx, VALIDATION_SEED) if cfg.copy_steps else None
    gd_pred = gd_one_step_predict(xc, yc, xq, eta)
    best = int(np.argsort(members["loss"])[len(members["loss"]) // 2])  # the median seed, for the heatmaps
    qk_n, ov_n, _ = normalized_products(member_of(result.models, best), d)
    return {
        "eta": eta, "gd_loss": loss_of(gd_pred), "zero_loss": loss_of(jnp.zeros_like(yq)),
        "ridge_loss": loss_of(ridge_predict(xc, yc, xq, RIDGE_LAMBDA)), "ols_loss": loss_of(ols_predict(xc, yc, xq)),
        "mean_abs_gd_pred": float(jnp.mean(jnp.abs(gd_pred))), "members": members, "train_seconds": result.seconds,
        "ood": ood, "iterated": iters, "depth": deep, "copying": copying,
        "median_seed": best, "qk_trained": np.asarray(qk_n).tolist(), "ov_trained": np.asarray(ov_n).tolist(),
        "qk_construction": np.asarray(qk(gd, 0, 0)).tolist(), "ov_construction": np.asarray(ov(gd, 0, 0)).tolist(),
    }


def claims(cfg: Config, r: dict[str, Any]) -> list[Claim]:
    src = "von Oswald et al. 2023 §3, Fig. 2; DESIGN.md §4 S1"
    m = {k: np.asarray(v) for k, v in r["members"].items()}
    target = -r["eta"] / cfg.n_context
    rel_loss = m["loss"] / r["gd_loss"] - 1.0
    rel_pred = m["pred_diff"] / r["mean_abs_gd_pred"]
    weight_err = np.abs(m["ov_yy"] - target) / abs(target)
    rel_interp = np.abs(m["interp_loss"] / m["loss"] - 1.0)
    per_seed = lambda v, f="{:+.2%}": "per seed: " + ", ".join(f.format(x) for x in v)  # noqa: E731
    rows = [
        measured_claim("trained 1-layer LSA test loss within 2% of optimal one-step GD (excess over GD-1)", src,
                       f"LSA ≈ GD-1; GD-1 ≈ {PAPER_GD1_LOSS * (cfg.x_half_width / 0.5) ** 2:.3f} for x ~ U(±{cfg.x_half_width:g}) "
        f"(measured here {r['gd_loss']:.4f} at η* = {r['eta']:.3f})",
                       rel_loss, f"|median seed| ≤ {GD1_TOLERANCE:.0%}", bool(abs(np.median(rel_loss)) <= GD1_TOLERANCE),
                       per_seed(rel_loss), unit="%"),
        measured_claim("predictions agree with GD-1: mean |ŷ_TF − ŷ_GD| relative to mean |ŷ_GD|", src,
                       "0.021 at predictions O(0.6) in a re-implementation (reference/mesa.md §1.8)", rel_pred,
                       f"median seed ≤ {PRED_DIFF_MAX:.0%}", bool(np.median(rel_pred) <= PRED_DIFF_MAX), per_seed(rel_pred, "{:.2%}"),
                       unit="%"),
        measured_claim("sensitivities agree: cosine of ∂ŷ_TF/∂x_q and ∂ŷ_GD/∂x_q", src, "cos ≈ 1", m["sens_cos"],
                       f"median seed ≥ {COSINE_MIN}", bool(np.median(m["sens_cos"]) >= COSINE_MIN), per_seed(m["sens_cos"], "{:.4f}")),
        measured_claim("W_KᵀW_Q x-block ∝ I: mean |off-diagonal| / mean |diagonal|", src,
                       "0.004 / 0.507 in a re-implementation (reference/mesa.md §1.8)", m["offdiag_ratio"],
                       f"median seed ≤ {OFFDIAG_MAX:.0%}", bool(np.median(m["offdiag_ratio"]) <= OFFDIAG_MAX),
                       per_seed(m["offdiag_ratio"], "{:.2%}"), unit="%"),
        measured_claim("scale × PW_V[y, y] equals −η*/N (relative error)", src,
                       f"−η*/N = {target:.4f}; the weights match the construction", weight_err,
                       f"median seed ≤ {WEIGHT_TOLERANCE:.0%}", bool(np.median(weight_err) <= WEIGHT_TOLERANCE),
                       "per seed: " + ", ".join(f"{v:.4f}" for v in m["ov_yy"]), unit="%"),
        measured_claim("the interpolated model (trained + construction)/2 has the trained loss (|relative change|)", src,
                       "same loss", rel_interp, f"median seed ≤ {INTERP_TOLERANCE:.0%}",
                       bool(np.median(rel_interp) <= INTERP_TOLERANCE), per_seed(rel_interp, "{:.2%}"), unit="%"),
    ]
    ood_gap = transfer.relative_gap(np.asarray(r["ood"]["tf"]), np.asarray(r["ood"]["gd"])[:, None])
    it_gap = transfer.relative_gap(np.asarray(r["iterated"]["tf"]).T, np.asarray(r["iterated"]["gd"])[:, None])
    rows += [
        measured_claim("out of distribution (x range × α, α ∈ [0.5, 2]) TF and GD-1 degrade together: largest "
                       "|L_TF / L_GD − 1| over α", src, "the OOD loss curves of TF and GD coincide", ood_gap,
                       f"median seed ≤ {TRANSFER_GAP:.0%}", bool(np.median(ood_gap) <= TRANSFER_GAP),
                       per_seed(ood_gap, "{:.2%}"), unit="%"),
        measured_claim(f"the trained layer iterated {cfg.iterations}× with damping {cfg.damping} tracks GD at "
                       f"{cfg.damping}·η*: largest |L_TF / L_GD − 1| over depth", src,
                       "tracks GD at 0.75·η (BLOG needed 0.70)", it_gap, f"median seed ≤ {TRANSFER_GAP:.0%}",
                       bool(np.median(it_gap) <= TRANSFER_GAP), per_seed(it_gap, "{:.2%}"), unit="%"),
    ]
    rows += depth_claims(r["depth"], src)
    rows.append(copy_claim(r.get("copying"), src))
    return rows


def copy_claim(copying: dict[str, Any] | None, src: str) -> Claim:
    claim = ("interleaved tokens: layer 1 (softmax) copies y_i into x_i's token: sensitivity of its output at x_i "
             "to the next token over the largest of own / any other context token")
    paper = "the first layer learns to copy the neighbouring token (the induction-head link)"
    threshold = f"median seed ≥ {COPY_DOMINANCE:g}×"
    if copying is None:
        return not_run(claim, src, paper, threshold, "copy_steps = 0")
    s = np.asarray(copying["sensitivity"])  # [seeds, (own, next, other)]
    ratio = s[:, 1] / np.maximum(s[:, 0], s[:, 2])
    detail = "per seed (own, next, largest other): " + "; ".join(f"{a:.3g}, {b:.3g}, {c:.3g}" for a, b, c in s)
    return measured_claim(claim, src, paper, ratio, threshold, bool(np.median(ratio) >= COPY_DOMINANCE), detail)


def depth_text(ks: list[int]) -> str:
    return f"{ks[0]}-layer" if len(ks) == 1 else "K-layer (K = " + ", ".join(map(str, ks)) + ")"


def depth_claims(deep: dict[str, Any] | None, src: str) -> list[Claim]:
    """One row for "beats K-step GD" over all depths, one "matches GD++" row per depth (so a depth that needs a
    longer budget shows as that depth), and one row for which algorithm the stacks compute more alike."""
    if deep is None:
        return [not_run("deeper LSA beats K steps of GD and matches GD++", src, "TF ≈ GD++ < GD-K", "–",
                        "no depths configured")]
    ks = deep["depths"]
    tf = [np.asarray(v) for v in deep["tf"]]
    vs_gd = np.asarray([np.median(v) for v in tf]) / np.asarray(deep["gd"]) - 1.0
    detail = lambda v: "median seed per K: " + ", ".join(f"K={k}: {x:+.1%}" for k, x in zip(ks, v))  # noqa: E731
    rows = [Claim(f"{depth_text(ks)} LSA beats K steps of GD (largest median L_TF / L_GD-K − 1 over K)", src,
                  "TF < GD-K for every K", float(vs_gd.max()), None, "< 0 for every K",
                  "PASS" if bool(np.all(vs_gd < 0)) else "FAIL", detail(vs_gd), "%")]
    for k, losses, gdpp, eta, gamma in zip(ks, tf, deep["gdpp"], deep["gdpp_eta"], deep["gdpp_gamma"]):
        rel = losses / gdpp - 1.0
        rows.append(measured_claim(
            f"{k}-layer LSA matches GD++ with learned (η, γ) per layer: L_TF / L_GD++ − 1 (negative: better than "
            "GD++)", src, f"TF ≈ GD++ (fitted here: ½·MSE {gdpp:.4f})", rel, f"|median seed| ≤ {GDPP_MATCH:.0%}",
            bool(abs(np.median(rel)) <= GDPP_MATCH),
            "per seed: " + ", ".join(f"{x:+.1%}" for x in rel) + "; GD++ η: "
            + ", ".join(f"{e:.3g}" for e in eta) + ", γ: " + ", ".join(f"{g:.3g}" for g in gamma), unit="%"))
    if "cos_gdpp" in deep:
        cos_pp = np.asarray([np.median(v) for v in deep["cos_gdpp"]])
        cos_gd = np.asarray([np.median(v) for v in deep["cos_gd"]])
        margin = cos_pp - cos_gd
        rows.append(Claim(
            f"{depth_text(ks)} LSA computes a function closer to GD++ than to K-step GD: cosine of ∂ŷ/∂x_q "
            "with the GD++ construction minus that with the K-step GD construction (smallest median over K)", src,
            "trained stacks align with GD++ (curvature correction) rather than plain GD", float(margin.min()), None,
            "> 0 for every K", "PASS" if bool(np.all(margin > 0)) else "FAIL",
            "median seed per K, cos with GD++ / with GD-K: " + ", ".join(
                f"K={k}: {a:.4f} / {b:.4f}" for k, a, b in zip(ks, cos_pp, cos_gd))))
    return rows


def figures(cfg: Config, results: dict[str, Any], ctx: RunContext) -> list[Figure]:
    return gd_equivalence_figures.draw(cfg, results, ctx)
