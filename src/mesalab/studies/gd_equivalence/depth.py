"""K = 2…5-layer LSA stacks against K steps of GD and against GD++ (von Oswald et al. 2023 §4; reference/mesa.md
§1.4–1.7): deeper trained models beat plain GD by learning a curvature correction.

Each trained stack is scored on the validation tasks and compared with both algorithms twice: by loss, and by how
alike the functions are (prediction difference and the cosine of ∂ŷ/∂x_q against the exact LSA constructions of
K-step GD and of GD++, `analysis.alignment.model_alignment`, the authors' "model cos" and "preds diff").
"""

from __future__ import annotations

import functools
from typing import Any

import equinox as eqx
import jax
import numpy as np

from mesalab.algorithms import gd_plus_plus_predict, gd_predict, line_search_eta
from mesalab.algorithms.fit import fit_gd_plus_plus_depths
from mesalab.analysis.alignment import model_alignment
from mesalab.config import override
from mesalab.constructions import gd_lsa, gd_plus_plus_lsa
from mesalab.models.config import TransformerConfig
from mesalab.models.transformer import Transformer
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


def run_depths(cfg: Any, ctx: RunContext, task: RegressionConfig, one_layer: TransformerConfig,
               validation, eta_fit_seed: int) -> dict[str, Any]:
    """Train an ensemble per depth; score it, K-step GD (one line-searched η) and learned GD++ on `validation`.
    GD++'s (η, γ) are fitted for all depths at once (each depth starts from the one above; algorithms/fit.py)."""
    x, y = validation.info["x"], validation.info["y"]
    xc, yc, xq, yq = x[:, :-1], y[:, :-1], x[:, -1], y[:, -1]
    _, fx, fy = sample_raw(task, jax.random.PRNGKey(eta_fit_seed), x.shape[0])  # η is fitted apart from validation
    out: dict[str, Any] = {"depths": list(cfg.depths), "tf": [], "gd": [], "gd_eta": [], "gdpp": [], "gdpp_eta": [],
                           "gdpp_gamma": [], "seconds": [], "cos_gd": [], "cos_gdpp": [], "pred_diff_gd": [],
                           "pred_diff_gdpp": []}
    gdpp_fits = fit_gd_plus_plus_depths(task, cfg.depths, steps=cfg.gdpp_steps, seed=eta_fit_seed)
    for layers in cfg.depths:
        trainer = Trainer(task, functools.partial(Transformer, depth_model(one_layer, layers)), depth_training(cfg, layers))
        res = trainer.fit(cfg.seeds, checkpoint_dir=ctx.checkpoint_dir(f"lsa-{layers}"), resume=ctx.resume,
                          progress=ctx.progress)
        ctx.add_metrics(res.history, f"lsa-{layers}")
        losses = eqx.filter_vmap(lambda m: half_mse(jax.vmap(m.predict_last)(validation.inputs)[:, 0], yq))(res.models)
        eta, _ = line_search_eta(fx[:, :-1], fy[:, :-1], fx[:, -1], fy[:, -1], steps=layers)
        gd_loss = float(half_mse(gd_predict(xc, yc, xq, [eta] * layers), yq))
        etas, gammas = gdpp_fits[layers]
        gdpp = float(half_mse(gd_plus_plus_predict(xc, yc, xq, etas, gammas), yq))
        plain = override(depth_model(one_layer, layers), clip=0.0)  # the constructions need no activation clip
        refs = {"gd": gd_lsa(plain, task, eta), "gdpp": gd_plus_plus_lsa(plain, task, etas, gammas)}
        for name, ref in refs.items():
            al = eqx.filter_vmap(lambda m: model_alignment(m, ref, validation.inputs, task.d))(res.models)
            out[f"cos_{name}"].append(np.asarray(al["sens_cos"]).tolist())
            out[f"pred_diff_{name}"].append(np.asarray(al["pred_diff"]).tolist())
        out["tf"].append(np.asarray(losses).tolist())
        out["gd"].append(gd_loss)
        out["gd_eta"].append(eta)
        out["gdpp"].append(gdpp)
        out["gdpp_eta"].append(np.asarray(etas).tolist())
        out["gdpp_gamma"].append(np.asarray(gammas).tolist())
        out["seconds"].append(res.seconds)
    return out
