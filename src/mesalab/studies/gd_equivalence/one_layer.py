"""The 1-layer LSA of von Oswald et al. 2023 §3 against one GD step (reference/mesa.md §1.3–1.8).

The trained ensemble is scored on the validation tasks: its loss, its agreement with the exact GD-LSA construction at
the optimal η* (predictions, sensitivities ∂ŷ/∂x_q), its weights up to the K-Q / V-P scale, and the model
interpolated half-way to the construction. The baselines (η*, GD-1, ridge, OLS, the zero predictor, the
construction's own agreement with GD-1) do not depend on training; they are computed once per configuration
(`baselines`, cached), so the null run does not recompute them.
"""

from __future__ import annotations

import functools
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from mesalab.algorithms import gd_one_step_predict, ols_predict, optimal_eta_one_step, ridge_predict
from mesalab.analysis.alignment import interpolate_products, model_alignment, normalized_products
from mesalab.analysis.alignment import x_block_offdiag_ratio
from mesalab.constructions import gd_lsa
from mesalab.models.config import TransformerConfig
from mesalab.models.transformer import Transformer
from mesalab.models.weights import ov, qk
from mesalab.studies.gd_equivalence.config import ETA_FIT_SEED, RIDGE_LAMBDA, VALIDATION_SEED
from mesalab.studies.protocol import Experiment, RunContext
from mesalab.tasks.regression import RegressionConfig, sample_raw
from mesalab.train import TrainConfig, Trainer, member_of
from mesalab.train.loss import half_mse


def lsa_config(task: RegressionConfig, init_scale: float = 0.002) -> TransformerConfig:
    """von Oswald's LSA: one head, key size d+1, non-causal, keys/values from context only, ŷ = −(query y slot)."""
    width = task.d + 1
    return TransformerConfig(
        d_model=width, n_layers=1, n_heads=1, d_head=width, attention="linear", causal=False,
        keys_from="context", init="fan_in", init_scale=init_scale, readout_start=task.d, readout_size=1,
        readout_sign=-1.0,
    )


def experiment(cfg: Any) -> Experiment:
    task = RegressionConfig(d=cfg.d, n_context=cfg.n_context, x_half_width=cfg.x_half_width)
    train = TrainConfig(steps=cfg.steps, batch_size=cfg.batch_size, optimizer="adam", lr=cfg.lr, b2=cfg.b2,
                        chunk_steps=cfg.chunk_steps, eval_batch_size=cfg.eval_batch_size)
    return Experiment(task, lsa_config(task, cfg.init_scale), train)


def fit_eta(task: RegressionConfig, n: int) -> float:
    """η* for GD-1 in closed form, on tasks drawn apart from the validation tasks."""
    _, x, y = sample_raw(task, jax.random.PRNGKey(ETA_FIT_SEED), n)
    return float(optimal_eta_one_step(x[:, :-1], y[:, :-1], x[:, -1], y[:, -1]))


@functools.lru_cache(maxsize=4)
def validation(task: RegressionConfig, n: int):
    """The validation tasks (the authors' eval_rng = PRNGKey(5)): the same in the trained and the null run."""
    return task.sample(jax.random.PRNGKey(VALIDATION_SEED), n)


@functools.lru_cache(maxsize=4)
def baselines(task: RegressionConfig, model: TransformerConfig, n: int) -> dict[str, Any]:
    """Everything about the 1-layer comparison that training does not change (cached per configuration)."""
    batch = validation(task, n)
    x, y = batch.info["x"], batch.info["y"]
    xc, yc, xq, yq = x[:, :-1], y[:, :-1], x[:, -1], y[:, -1]
    eta = fit_eta(task, n)
    gd_pred = gd_one_step_predict(xc, yc, xq, eta)
    per_task = 0.5 * (gd_pred - yq) ** 2
    construction = jax.vmap(gd_lsa(model, task, eta).predict_last)(batch.inputs)[:, 0]
    loss = lambda pred: float(half_mse(pred, yq))  # noqa: E731
    return {
        "eta": eta, "gd_loss": loss(gd_pred), "zero_loss": loss(jnp.zeros_like(yq)),
        "ridge_loss": loss(ridge_predict(xc, yc, xq, RIDGE_LAMBDA)), "ols_loss": loss(ols_predict(xc, yc, xq)),
        "mean_abs_gd_pred": float(jnp.mean(jnp.abs(gd_pred))),
        # relative standard deviation of the per-task GD-1 loss: its standard error over n tasks is this / √n
        "gd_loss_rel_std": float(jnp.std(per_task) / jnp.mean(per_task)),
        # the exact GD-LSA construction against gd_one_step_predict, largest |difference| / mean |ŷ_GD|
        "construction_max_diff": float(jnp.max(jnp.abs(construction - gd_pred)) / jnp.mean(jnp.abs(gd_pred))),
    }


def eval_curve(res: Any) -> dict[str, list]:
    """The evaluation-loss history of a part: steps [S], loss [seed, S] and optimizer time [S] (the convergence rule
    reads it)."""
    c = res.curve("test_loss")
    return {"steps": c["steps"], "loss": c["values"], "time": c["time"]}


def run_one_layer(cfg: Any, ctx: RunContext) -> tuple[dict[str, Any], Any]:
    """Train the 1-layer ensemble and measure it; returns (results, trained models)."""
    exp = experiment(cfg)
    task, d = exp.task, cfg.d
    base = baselines(task, exp.model, cfg.n_validation)
    gd = gd_lsa(exp.model, task, base["eta"])

    def track(model, batch, _ivs):  # alignment with the GD construction at every chunk boundary
        return model_alignment(model, gd, batch.inputs, d)

    trainer = Trainer(task, functools.partial(Transformer, exp.model), exp.train, metrics_fn=track)
    result = ctx.fit(trainer, cfg.seeds, "lsa")
    batch = validation(task, cfg.n_validation)
    yq = batch.info["y"][:, -1]

    def per_member(model):
        pred = jax.vmap(model.predict_last)(batch.inputs)[:, 0]
        qk_n, ov_n, scale = normalized_products(model, d)
        mid = interpolate_products(model, gd, d)
        rest = jnp.abs(ov_n).at[d, d].set(0.0).max() / jnp.abs(ov_n[d, d])  # PW_V beyond its [y, y] entry
        qk_rest = jnp.abs(qk_n).at[:d, :d].set(0.0).max()  # W_KᵀW_Q outside the x-block (diagonal mean 1)
        return {"loss": half_mse(pred, yq), **model_alignment(model, gd, batch.inputs, d),
                "qk_scale": scale, "offdiag_ratio": x_block_offdiag_ratio(qk_n, d), "ov_yy": ov_n[d, d],
                "ov_rest": rest, "qk_rest": qk_rest,
                "interp_loss": half_mse(jax.vmap(mid.predict_last)(batch.inputs)[:, 0], yq)}

    members = {k: np.asarray(v).tolist() for k, v in eqx.filter_vmap(per_member)(result.models).items()}
    losses = np.nan_to_num(np.asarray(members["loss"], float), nan=np.inf)
    median = int(np.argsort(losses)[len(losses) // 2])  # the median seed, for the heatmaps
    qk_n, ov_n, _ = normalized_products(member_of(result.models, median), d)
    out = {
        **base, "members": members, "train_seconds": result.seconds, "history": eval_curve(result),
        "median_seed": median, "qk_trained": np.asarray(qk_n).tolist(), "ov_trained": np.asarray(ov_n).tolist(),
        "qk_construction": np.asarray(qk(gd, 0, 0)).tolist(), "ov_construction": np.asarray(ov(gd, 0, 0)).tolist(),
    }
    return out, result.models
