"""Linear models on deep data representations (von Oswald et al. 2023 §5; reference/mesa.md §1.2, §1.5).

On in-context sine regression (tasks/sine.py) an input MLP feature map followed by one linear self-attention layer
("MLP + LSA", trained end to end) is compared with "MLP + GD": the same MLP and embedding trained under a *fixed*
attention head that does one GD step on the embedded features (constructions.gd_step_head at the authors' η = 0.1;
only the MLP and embedding learn, as in the authors' pre_train_gd_hps with train_gd_whitening=False). The paper's
finding is that the trained MLP + LSA reaches the loss of MLP + GD: the layer does GD on learned features.

Model (the authors' non_linear_regression notebook): tokens [x, y] → linear embedding to width 40 → residual MLP
40 → 160 → 40 (GELU) → 1 LSA layer, 1 head, key size 40, keys and values from the context only; ŷ = −(last
feature of the query). Both models use fan-in init 0.002. Training: MLP + LSA with AdamW (lr 1e-3, b2 0.98,
global-norm clip 100); MLP + GD with Adam (lr 3e-4, b2 0.999, clip 100), the authors' gd_lr and optimiser.

Controls, none of them trained: the zero predictor; the context mean of y; E[y | x_q] under the task prior (the best
predictor that ignores the context: amp·sin(x_q + phase) averaged over the prior, A·cos x_q + B·sin x_q); and one
GD step on the raw x at its optimal η (closed form): what a linear attention layer without the feature map can do
(§3), which cannot fit a sine.
"""

from __future__ import annotations

import functools
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from mesalab.algorithms import gd_one_step_predict, optimal_eta_one_step
from mesalab.constructions import gd_step_head
from mesalab.models.config import TransformerConfig
from mesalab.models.transformer import Transformer
from mesalab.studies.gd_equivalence.config import ETA_FIT_SEED, VALIDATION_SEED
from mesalab.studies.gd_equivalence.one_layer import eval_curve
from mesalab.studies.protocol import RunContext
from mesalab.tasks.sine import SineRegressionConfig, sample_raw
from mesalab.train import TrainConfig, Trainer
from mesalab.train.engine import as_members, init_models
from mesalab.train.loss import half_mse

GD_ETA = 0.1  # the authors' fixed learning rate of the GD head (reference/mesa.md §1.5)


def mlp_lsa_config(task: SineRegressionConfig, width: int = 40, hidden: int = 160,
                   init_scale: float = 0.002) -> TransformerConfig:
    """Embedding [x, y] → width, residual input MLP width → hidden → width, one LSA layer, ŷ = −(last feature)."""
    return TransformerConfig(
        d_model=width, n_layers=1, n_heads=1, d_head=width, attention="linear", causal=False, keys_from="context",
        d_in=task.token_width, d_input_mlp=hidden, init="fan_in", init_scale=init_scale, readout_start=width - 1,
        readout_size=1, readout_sign=-1.0,
    )


def attention_weights(model: Transformer):
    """The attention head's matrices: what MLP + GD keeps frozen."""
    attn = model.blocks[0].attn
    return attn.W_Q, attn.W_K, attn.W_V, attn.W_O


def task_of(cfg: Any) -> SineRegressionConfig:
    return SineRegressionConfig(n_context=cfg.n_context)


@functools.lru_cache(maxsize=4)
def validation(task: SineRegressionConfig, n: int):
    return task.sample(jax.random.PRNGKey(VALIDATION_SEED), n)


@functools.lru_cache(maxsize=4)
def baselines(task: SineRegressionConfig, n: int) -> dict[str, float]:
    """The untrained controls on the validation tasks (cached: the null run reuses them)."""
    batch = validation(task, n)
    x, y = batch.info["x"][..., None], batch.info["y"]
    xc, yc, xq, yq = x[:, :-1], y[:, :-1], x[:, -1], y[:, -1]
    _, _, fx, fy = sample_raw(task, jax.random.PRNGKey(ETA_FIT_SEED), n)  # η fitted on other tasks
    eta = float(optimal_eta_one_step(fx[:, :-1, None], fy[:, :-1], fx[:, -1, None], fy[:, -1]))
    amp, phase, _, _ = sample_raw(task, jax.random.PRNGKey(ETA_FIT_SEED + 1), 1 << 16)
    a, b = float(jnp.mean(amp * jnp.sin(phase))), float(jnp.mean(amp * jnp.cos(phase)))  # E[y | x] = a cos x + b sin x
    loss = lambda pred: float(half_mse(pred, yq))  # noqa: E731
    return {"zero_loss": loss(jnp.zeros_like(yq)), "mean_loss": loss(jnp.mean(yc, axis=1)),
            "prior_loss": loss(a * jnp.cos(xq[:, 0]) + b * jnp.sin(xq[:, 0])),
            "raw_gd_loss": loss(gd_one_step_predict(xc, yc, xq, eta)), "raw_gd_eta": eta}


def context_label_sensitivity(model: Transformer, tokens: jax.Array) -> jax.Array:
    """∂ŷ/∂y_i for the N context labels [N]: how the prediction weighs each context example."""
    return jax.grad(lambda t: model.predict_last(t)[0])(tokens)[:-1, 1]


@eqx.filter_jit
def compare(lsa: Transformer, gd: Transformer, batch) -> dict[str, jax.Array]:
    """Per seed pair (leading member axis): both losses on the validation tasks and, shown but not judged, the
    relative prediction difference and the cosine of their sensitivities to the context labels."""
    yq = batch.info["y"][:, -1]

    def preds(models):
        return eqx.filter_vmap(lambda m: jax.vmap(m.predict_last)(batch.inputs)[:, 0])(models)

    def sens(models):
        return eqx.filter_vmap(lambda m: jax.vmap(functools.partial(context_label_sensitivity, m))(batch.inputs))(models)

    p_lsa, p_gd = preds(lsa), preds(gd)
    s_lsa, s_gd = sens(lsa), sens(gd)
    cos = jnp.sum(s_lsa * s_gd, -1) / (jnp.linalg.norm(s_lsa, axis=-1) * jnp.linalg.norm(s_gd, axis=-1) + 1e-12)
    return {"loss": jnp.mean(0.5 * (p_lsa - yq) ** 2, -1), "gd_loss": jnp.mean(0.5 * (p_gd - yq) ** 2, -1),
            "pred_diff": jnp.mean(jnp.abs(p_lsa - p_gd), -1) / jnp.mean(jnp.abs(p_gd), -1),
            "sens_cos": jnp.mean(cos, -1)}


def run_nonlinear(cfg: Any, ctx: RunContext) -> dict[str, Any]:
    """Train MLP + LSA and MLP + GD (cfg.seeds members each) and score both on the validation tasks."""
    task = task_of(cfg)
    model_cfg = mlp_lsa_config(task, cfg.nonlinear_width, 4 * cfg.nonlinear_width, cfg.init_scale)
    make = functools.partial(Transformer, model_cfg)
    steps = cfg.nonlinear_steps
    common = dict(steps=steps, batch_size=cfg.nonlinear_batch_size, clip_norm=100.0,
                  chunk_steps=min(cfg.chunk_steps, steps), eval_batch_size=cfg.eval_batch_size,
                  schedule=cfg.nonlinear_schedule)
    if cfg.nonlinear_schedule == "warmup_cosine":
        common["warmup_steps"] = min(200, steps // 10)
    lsa = Trainer(task, make, TrainConfig(optimizer="adamw", lr=cfg.nonlinear_lr, b2=cfg.b2,
                                          end_lr=cfg.nonlinear_lr / 10, **common))
    res_lsa = ctx.fit(lsa, cfg.seeds, "nonlinear-lsa")
    # MLP + GD: the same model and seeds, its head set to one GD step at η = 0.1 and frozen.
    members = as_members(cfg.seeds)
    init = eqx.filter_vmap(lambda m: gd_step_head(m, GD_ETA, task.n_context))(init_models(make, members))
    gd = Trainer(task, make, TrainConfig(optimizer="adam", lr=cfg.nonlinear_gd_lr, b2=0.999,
                                        end_lr=cfg.nonlinear_gd_lr / 10, **common),
                 frozen=attention_weights)
    res_gd = ctx.fit(gd, members, "nonlinear-mlp-gd", init=init)

    batch = validation(task, cfg.n_validation)
    members_out = {k: np.asarray(v).tolist() for k, v in compare(res_lsa.models, res_gd.models, batch).items()}
    return {**baselines(task, cfg.n_validation), "members": members_out, "gd_eta": GD_ETA,
            "history": eval_curve(res_lsa), "gd_history": eval_curve(res_gd),
            "seconds": [res_lsa.seconds, res_gd.seconds], "steps": cfg.nonlinear_steps}
