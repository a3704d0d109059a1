"""K = 2…5-layer LSA stacks against K steps of GD and against GD++ (von Oswald et al. 2023 §4; reference/mesa.md
§1.4–1.7): deeper trained models beat plain GD by learning a curvature correction.

GD++ is fitted twice: to its optimum (L-BFGS; the verdicts are judged against it) and in the authors' way (Adam,
shown beside it; the review's S1-D2). Each trained stack is scored on the validation tasks and compared with both
algorithms twice: by loss, and by how alike the functions are (prediction difference and the cosine of ∂ŷ/∂x_q
against the exact LSA constructions of K-step GD and of GD++, `analysis.alignment.model_alignment`, the authors'
"model cos" and "preds diff").
"""

from __future__ import annotations

import functools
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from mesalab.algorithms import gd_plus_plus_predict, gd_predict, line_search_eta
from mesalab.algorithms.fit import fit_gd_plus_plus_adam, fit_gd_plus_plus_depths
from mesalab.analysis.alignment import model_alignment
from mesalab.config import override
from mesalab.constructions import gd_lsa, gd_plus_plus_lsa
from mesalab.models.config import TransformerConfig
from mesalab.models.transformer import Transformer
from mesalab.studies.gd_equivalence.config import ETA_FIT_SEED
from mesalab.studies.gd_equivalence.one_layer import eval_curve, validation
from mesalab.studies.protocol import RunContext
from mesalab.tasks.regression import RegressionConfig, sample_raw
from mesalab.train import TrainConfig, Trainer
from mesalab.train.config import adam_warmup_cosine
from mesalab.train.loss import half_mse


def depth_model(one_layer: TransformerConfig, layers: int) -> TransformerConfig:
    """The authors' deeper LSA: init scale divided by depth, activation clip 10 beyond 3 layers (§1.5)."""
    return override(one_layer, n_layers=layers, init_scale=one_layer.init_scale / layers,
                    clip=10.0 if layers > 3 else 0.0)


def depth_training(cfg: Any, layers: int) -> TrainConfig:
    """Adam with warm-up and cosine decay at peak deep_lr, times deep_lr_factor beyond 3 layers (the authors halve
    1e-3 to 5e-4)."""
    lr = cfg.deep_lr if layers <= 3 else cfg.deep_lr * cfg.deep_lr_factor
    return adam_warmup_cosine(cfg.deep_steps, cfg.deep_batch_size, lr, b2=cfg.b2, chunk_steps=cfg.chunk_steps,
                              eval_batch_size=cfg.eval_batch_size)


@functools.lru_cache(maxsize=4)
def baselines(task: RegressionConfig, one_layer: TransformerConfig, depths: tuple[int, ...], n: int, gdpp_steps: int,
              adam_steps: int, eta_fit_seed: int) -> dict[str, Any]:
    """What the depth comparison needs that training does not change (cached per configuration, so the null run
    reuses it): per depth, K-step GD at its line-searched η; GD++ fitted to its optimum (L-BFGS on the expected
    loss, algorithms/fit.py) and in the authors' way (Adam, `fit_gd_plus_plus_adam`); the losses of both on the
    validation tasks, and how closely the GD++ LSA construction reproduces `gd_plus_plus_predict`."""
    batch = validation(task, n)
    x, y = batch.info["x"], batch.info["y"]
    xc, yc, xq, yq = x[:, :-1], y[:, :-1], x[:, -1], y[:, -1]
    _, fx, fy = sample_raw(task, jax.random.PRNGKey(eta_fit_seed), n)  # η is fitted apart from validation
    fits = fit_gd_plus_plus_depths(task, depths, steps=gdpp_steps, seed=eta_fit_seed)
    out: dict[str, list] = {k: [] for k in ("gd", "gd_eta", "gdpp", "gdpp_eta", "gdpp_gamma", "gdpp_adam",
                                            "gdpp_adam_eta", "gdpp_adam_gamma", "gdpp_construction_diff")}
    for layers in depths:
        eta, _ = line_search_eta(fx[:, :-1], fy[:, :-1], fx[:, -1], fy[:, -1], steps=layers)
        etas, gammas = fits[layers]
        pred = gd_plus_plus_predict(xc, yc, xq, etas, gammas)
        plain = override(depth_model(one_layer, layers), clip=0.0)
        built = jax.vmap(gd_plus_plus_lsa(plain, task, etas, gammas).predict_last)(batch.inputs)[:, 0]
        a_etas, a_gammas = fit_gd_plus_plus_adam(task, [eta] * layers, steps=adam_steps, seed=eta_fit_seed)
        out["gd"].append(float(half_mse(gd_predict(xc, yc, xq, [eta] * layers), yq)))
        out["gd_eta"].append(eta)
        out["gdpp"].append(float(half_mse(pred, yq)))
        out["gdpp_eta"].append(np.asarray(etas).tolist())
        out["gdpp_gamma"].append(np.asarray(gammas).tolist())
        out["gdpp_adam"].append(float(half_mse(gd_plus_plus_predict(xc, yc, xq, a_etas, a_gammas), yq)))
        out["gdpp_adam_eta"].append(np.asarray(a_etas).tolist())
        out["gdpp_adam_gamma"].append(np.asarray(a_gammas).tolist())
        out["gdpp_construction_diff"].append(float(jnp.max(jnp.abs(built - pred)) / jnp.mean(jnp.abs(pred))))
    return out


def run_depths(cfg: Any, ctx: RunContext, task: RegressionConfig, one_layer: TransformerConfig) -> dict[str, Any]:
    """Train an ensemble per depth; score it against K-step GD and GD++ (`baselines`) on the validation tasks, by
    loss and by alignment with each algorithm's exact LSA construction."""
    batch = validation(task, cfg.n_validation)
    yq = batch.info["y"][:, -1]
    depths = tuple(cfg.depths)
    base = baselines(task, one_layer, depths, cfg.n_validation, cfg.gdpp_steps, cfg.gdpp_adam_steps, ETA_FIT_SEED)
    out: dict[str, Any] = {"depths": list(depths), **base, "tf": [], "seconds": [], "cos_gd": [], "cos_gdpp": [],
                           "pred_diff_gd": [], "pred_diff_gdpp": [], "history": []}
    for i, layers in enumerate(depths):
        trainer = Trainer(task, functools.partial(Transformer, depth_model(one_layer, layers)),
                          depth_training(cfg, layers))
        res = ctx.fit(trainer, cfg.seeds, f"lsa-{layers}")
        losses = eqx.filter_vmap(lambda m: half_mse(jax.vmap(m.predict_last)(batch.inputs)[:, 0], yq))(res.models)
        plain = override(depth_model(one_layer, layers), clip=0.0)  # the constructions need no activation clip
        refs = {"gd": gd_lsa(plain, task, base["gd_eta"][i]),
                "gdpp": gd_plus_plus_lsa(plain, task, base["gdpp_eta"][i], base["gdpp_gamma"][i])}
        for name, ref in refs.items():
            al = eqx.filter_vmap(lambda m: model_alignment(m, ref, batch.inputs, task.d))(res.models)
            out[f"cos_{name}"].append(np.asarray(al["sens_cos"]).tolist())
            out[f"pred_diff_{name}"].append(np.asarray(al["pred_diff"]).tolist())
        out["tf"].append(np.asarray(losses).tolist())
        out["seconds"].append(res.seconds)
        out["history"].append(eval_curve(res))
    return out
