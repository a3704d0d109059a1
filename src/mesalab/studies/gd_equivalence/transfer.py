"""Two transfer tests of the trained 1-layer LSA (von Oswald et al. 2023 §3; reference/mesa.md §1.6):

- out of distribution: scale the input range by α and score the trained layer and GD-1 (η* from training);
- iterated layer: apply the trained layer k times with damping λ, updating only the y slot (the authors'
  `y_update=True`), and compare with k GD steps at learning rate λ·η*.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from mesalab.algorithms import gd_predict
from mesalab.config import override
from mesalab.models.transformer import Transformer
from mesalab.tasks.regression import RegressionConfig
from mesalab.train.engine import member_of
from mesalab.train.loss import half_mse


def ood_scan(models: Transformer, task: RegressionConfig, eta: float, alphas, n: int, seed: int) -> dict[str, list]:
    """Loss of each ensemble member and of GD-1 when x ~ U(±α · x_half_width), for each α."""
    tf, gd = [], []
    for alpha in alphas:
        shifted = override(task, x_half_width=task.x_half_width * float(alpha))
        batch = shifted.sample(jax.random.PRNGKey(seed), n)
        x, y = batch.info["x"], batch.info["y"]
        preds = eqx.filter_vmap(lambda m: jax.vmap(m.predict_last)(batch.inputs)[:, 0])(models)
        tf.append([float(half_mse(p, y[:, -1])) for p in preds])
        gd.append(float(half_mse(gd_predict(x[:, :-1], y[:, :-1], x[:, -1], [eta]), y[:, -1])))
    return {"alphas": [float(a) for a in alphas], "tf": tf, "gd": gd}


def iterated(model: Transformer, iterations: int, damping: float) -> Transformer:
    """The trained 1-layer LSA applied `iterations` times with residual scale `damping`, writing only the y slot."""
    cfg = override(model.cfg, n_layers=iterations, residual_scale=damping)
    d = cfg.readout_start
    attn = model.blocks[0].attn
    attn = eqx.tree_at(lambda a: a.W_O, attn, attn.W_O.at[:, :, :d].set(0.0))  # y_update: x slots stay put
    stack = Transformer(cfg, key=jax.random.PRNGKey(0))
    return eqx.tree_at(lambda m: [b.attn for b in m.blocks], stack, [attn] * iterations)


def iteration_curves(models: Transformer, task: RegressionConfig, eta: float, iterations: int, damping: float,
                     n: int, seed: int) -> dict[str, list]:
    """Loss after k = 1 … iterations applications of each member's layer, and after k GD steps at damping · η."""
    batch = task.sample(jax.random.PRNGKey(seed), n)
    x, y = batch.info["x"], batch.info["y"]
    n_members = jax.tree_util.tree_leaves(eqx.filter(models, eqx.is_array))[0].shape[0]
    tf = []
    for i in range(n_members):
        deep = iterated(member_of(models, i), iterations, damping)

        def per_depth(tokens):  # readout after every layer, from one forward pass with a cache
            _, cache = deep.run_with_cache(tokens, "*hook_resid_post")
            return jnp.stack([deep.readout(cache[f"blocks.{k}.hook_resid_post"][-1])[0] for k in range(iterations)])

        preds = jax.vmap(per_depth)(batch.inputs)  # [n, iterations]
        tf.append([float(half_mse(preds[:, k], y[:, -1])) for k in range(iterations)])
    gd = [float(half_mse(gd_predict(x[:, :-1], y[:, :-1], x[:, -1], [damping * eta] * k), y[:, -1]))
          for k in range(1, iterations + 1)]
    return {"depth": list(range(1, iterations + 1)), "tf": tf, "gd": gd}

