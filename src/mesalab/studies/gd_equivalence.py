"""S1 gd-equivalence (von Oswald et al. 2023): a trained linear self-attention layer is one step of gradient descent
on in-context linear regression.

Measured here (DESIGN.md §4 S1, 1-layer part): the trained LSA's loss against GD-1 at the optimal η (closed form,
fitted on separate tasks), the agreement of predictions and of sensitivities ∂ŷ/∂x_q with the GD construction,
the trained weights against the construction up to the K-Q / V-P scale symmetry, and the loss of the
interpolated model. Deeper models and GD++, OOD scans, the iterated layer and the copying analysis are reported as
NOT RUN until they land.
"""

from __future__ import annotations

import functools
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from mesalab.algorithms import gd_one_step_predict, ols_predict, optimal_eta_one_step, ridge_predict
from mesalab.analysis.alignment import (
    alignment, interpolate_products, normalized_products, query_sensitivity, x_block_offdiag_ratio,
)
from mesalab.config import config, require, require_positive
from mesalab.constructions import gd_lsa
from mesalab.models.config import TransformerConfig
from mesalab.models.transformer import Transformer
from mesalab.studies import gd_equivalence_figures
from mesalab.studies.protocol import Claim, Experiment, Figure, RunContext, measured_claim, not_run
from mesalab.tasks.regression import RegressionConfig, sample_raw
from mesalab.train import TrainConfig, Trainer, member_of

NAME = "gd-equivalence"
SUMMARY = "one linear self-attention layer learns one step of gradient descent"
SOURCE = "von Oswald et al. 2023, Transformers learn in-context by gradient descent (ICML)"

# Thresholds, fixed before looking at results:
GD1_TOLERANCE = 0.02  # DESIGN.md §4 S1: trained loss within 2% of optimal GD-1
COSINE_MIN = 0.99  # DESIGN.md §4 S1: cosine of ∂ŷ/∂x_q (TF vs GD) ≥ 0.99
# reference/mesa.md §1.8 [M]: mean |ŷ_TF − ŷ_GD| = 0.021 with predictions O(0.6), i.e. ≈ 3.5%; we allow 10%.
PRED_DIFF_MAX = 0.10
WEIGHT_TOLERANCE = 0.05  # DESIGN.md §4 S1: scale × PW_V y-entry = −η*/N within 5%
# reference/mesa.md §1.8 [M]: x-block mean |off-diagonal| 0.004 vs diagonal 0.507 (0.8%); we allow 5%.
OFFDIAG_MAX = 0.05
INTERP_TOLERANCE = 0.02  # "the interpolated model has the same loss": within 2%, as the GD-1 claim
VALIDATION_SEED, ETA_FIT_SEED = 5, 6  # the authors' eval_rng = PRNGKey(5) (reference/mesa.md §1.5)
RIDGE_LAMBDA = 1e-3  # reference/mesa.md §1.7


@config
class Config:
    """d, n_context: task size; x_half_width: x ~ U(−x_half_width, x_half_width) (paper text 1.0, authors' code
    0.5); steps, batch_size, lr, b2, init_scale: Adam training of the LSA; seeds: ensemble members; n_validation:
    tasks used for every reported number (the paper's 10⁴)."""

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

    def __post_init__(self) -> None:
        require_positive(self, "d", "n_context", "x_half_width", "steps", "batch_size", "lr", "init_scale", "seeds",
                         "chunk_steps", "eval_batch_size", "n_validation")
        require(self, "seeds", isinstance(self.seeds, int), "a positive integer")


PRESETS = {
    "smoke": Config(steps=200, batch_size=512, seeds=2, chunk_steps=25, eval_batch_size=1024, n_validation=2048),
    "cpu": Config(),
    "paper": Config(steps=5000, seeds=8, chunk_steps=500, eval_batch_size=10_000),
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


def compare(model: Transformer, reference: Transformer, inputs: jax.Array, d: int) -> dict[str, jax.Array]:
    """Alignment of a model with a reference model (e.g. the GD construction) on a batch of token sequences."""
    pa, pb = jax.vmap(model.predict_last)(inputs)[:, 0], jax.vmap(reference.predict_last)(inputs)[:, 0]
    sa = query_sensitivity(lambda t: model.predict_last(t)[0], inputs, d)
    sb = query_sensitivity(lambda t: reference.predict_last(t)[0], inputs, d)
    return alignment(pa, pb, sa, sb)


def run(cfg: Config, ctx: RunContext) -> dict[str, Any]:
    exp = experiment(cfg)
    task, d, n = exp.task, cfg.d, cfg.n_context
    eta = fit_eta(task, cfg.n_validation)
    gd = gd_lsa(exp.model, task, eta)

    def track(model, batch, _ivs):  # alignment with the GD construction at every chunk boundary
        return compare(model, gd, batch.inputs, d)

    trainer = Trainer(task, functools.partial(Transformer, exp.model), exp.train, metrics_fn=track)
    result = trainer.fit(cfg.seeds, checkpoint_dir=ctx.checkpoint_dir("lsa"), resume=ctx.resume, progress=ctx.progress)
    ctx.add_metrics(result.history, "lsa")

    batch = task.sample(jax.random.PRNGKey(VALIDATION_SEED), cfg.n_validation)
    x, y = batch.info["x"], batch.info["y"]
    xc, yc, xq, yq = x[:, :-1], y[:, :-1], x[:, -1], y[:, -1]

    def loss_of(pred):
        return float(jnp.mean(0.5 * (pred - yq) ** 2))

    def per_member(model):
        pred = jax.vmap(model.predict_last)(batch.inputs)[:, 0]
        qk_n, ov_n, scale = normalized_products(model, d)
        mid = interpolate_products(model, gd, d)
        return {"loss": jnp.mean(0.5 * (pred - yq) ** 2), **compare(model, gd, batch.inputs, d),
                "qk_scale": scale, "offdiag_ratio": x_block_offdiag_ratio(qk_n, d), "ov_yy": ov_n[d, d],
                "interp_loss": jnp.mean(0.5 * (jax.vmap(mid.predict_last)(batch.inputs)[:, 0] - yq) ** 2)}

    members = {k: np.asarray(v).tolist() for k, v in eqx.filter_vmap(per_member)(result.models).items()}
    gd_pred = gd_one_step_predict(xc, yc, xq, eta)
    best = int(np.argsort(members["loss"])[len(members["loss"]) // 2])  # the median seed, for the heatmaps
    qk_n, ov_n, _ = normalized_products(member_of(result.models, best), d)
    return {
        "eta": eta, "gd_loss": loss_of(gd_pred), "zero_loss": loss_of(jnp.zeros_like(yq)),
        "ridge_loss": loss_of(ridge_predict(xc, yc, xq, RIDGE_LAMBDA)), "ols_loss": loss_of(ols_predict(xc, yc, xq)),
        "mean_abs_gd_pred": float(jnp.mean(jnp.abs(gd_pred))), "members": members, "train_seconds": result.seconds,
        "median_seed": best, "qk_trained": np.asarray(qk_n).tolist(), "ov_trained": np.asarray(ov_n).tolist(),
        "qk_construction": np.asarray(gd.blocks[0].attn.W_K[0] @ gd.blocks[0].attn.W_Q[0].T).tolist(),
        "ov_construction": np.asarray((gd.blocks[0].attn.W_V[0] @ gd.blocks[0].attn.W_O[0]).T).tolist(),
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
                       f"LSA ≈ GD-1 (GD-1 = {r['gd_loss']:.4f} at η* = {r['eta']:.3f}; x ~ U(±{cfg.x_half_width:g}))",
                       rel_loss, f"median ≤ +{GD1_TOLERANCE:.0%}", bool(np.median(rel_loss) <= GD1_TOLERANCE),
                       per_seed(rel_loss), unit="%"),
        measured_claim("predictions agree with GD-1: mean |ŷ_TF − ŷ_GD| relative to mean |ŷ_GD|", src,
                       "0.021 at predictions O(0.6) in a re-implementation (reference/mesa.md §1.8)", rel_pred,
                       f"median ≤ {PRED_DIFF_MAX:.0%}", bool(np.median(rel_pred) <= PRED_DIFF_MAX), per_seed(rel_pred, "{:.2%}"),
                       unit="%"),
        measured_claim("sensitivities agree: cosine of ∂ŷ_TF/∂x_q and ∂ŷ_GD/∂x_q", src, "cos ≈ 1", m["sens_cos"],
                       f"median ≥ {COSINE_MIN}", bool(np.median(m["sens_cos"]) >= COSINE_MIN), per_seed(m["sens_cos"], "{:.4f}")),
        measured_claim("W_KᵀW_Q x-block ∝ I: mean |off-diagonal| / mean |diagonal|", src,
                       "0.004 / 0.507 in a re-implementation (reference/mesa.md §1.8)", m["offdiag_ratio"],
                       f"median ≤ {OFFDIAG_MAX:.0%}", bool(np.median(m["offdiag_ratio"]) <= OFFDIAG_MAX),
                       per_seed(m["offdiag_ratio"], "{:.2%}"), unit="%"),
        measured_claim("scale × PW_V[y, y] equals −η*/N (relative error)", src,
                       f"−η*/N = {target:.4f}; the weights match the construction", weight_err,
                       f"median ≤ {WEIGHT_TOLERANCE:.0%}", bool(np.median(weight_err) <= WEIGHT_TOLERANCE),
                       "per seed: " + ", ".join(f"{v:.4f}" for v in m["ov_yy"]), unit="%"),
        measured_claim("the interpolated model (trained + construction)/2 has the trained loss (|relative change|)", src,
                       "same loss", rel_interp, f"median ≤ {INTERP_TOLERANCE:.0%}",
                       bool(np.median(rel_interp) <= INTERP_TOLERANCE), per_seed(rel_interp, "{:.2%}"), unit="%"),
    ]
    pending = "part of the S1 study issue; not implemented yet"
    rows += [
        not_run("K = 2…5 layers beat K steps of GD and match GD++", src, "TF ≈ GD++ < GD-K", "–", pending),
        not_run("out of distribution, TF and GD degrade together", src, "α ∈ [0.5, 2] input scaling", "–", pending),
        not_run("the iterated trained layer with damping 0.75 tracks GD at 0.75·η", src, "tracks", "–", pending),
    ]
    return rows


def figures(cfg: Config, results: dict[str, Any], ctx: RunContext) -> list[Figure]:
    return gd_equivalence_figures.draw(cfg, results, ctx)
