"""Fitting the few scalars of a hand-written algorithm by gradient descent on fresh tasks (the authors'
`pre_train_gd_hps`, which learns η and γ per layer for GD++; reference/mesa.md §1.4–1.5)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from mesalab.algorithms.gd import gd_plus_plus_predict
from mesalab.tasks.regression import RegressionConfig, sample_raw
from mesalab.train.loss import half_mse


def fit_gd_plus_plus(task: RegressionConfig, layers: int, *, init_eta: float, steps: int = 1000,
                     batch_size: int = 512, lr: float = 1e-3, seed: int = 0) -> tuple[jax.Array, jax.Array]:
    """Learn (η_l, γ_l) for each of `layers` GD++ steps with Adam; starts from η_l = init_eta, γ_l = 0.
    Returns (etas [layers], gammas [layers])."""
    params = {"eta": jnp.full((layers,), init_eta, jnp.float32), "gamma": jnp.zeros((layers,), jnp.float32)}
    # Adam moves every scalar by ~lr per step whatever its scale; η is O(1–10) and γ O(0.01), so γ is
    # parametrised ×0.01 to give both the same relative speed.
    tx = optax.adam(lr)

    def loss(p, key):
        _, x, y = sample_raw(task, key, batch_size)
        pred = gd_plus_plus_predict(x[:, :-1], y[:, :-1], x[:, -1], p["eta"], 0.01 * p["gamma"])
        return half_mse(pred, y[:, -1])

    @jax.jit
    def run(params):
        def step(carry, key):
            p, s = carry
            g = jax.grad(loss)(p, key)
            u, s = tx.update(g, s, p)
            return (optax.apply_updates(p, u), s), None

        (p, _), _ = jax.lax.scan(step, (params, tx.init(params)), jax.random.split(jax.random.PRNGKey(seed), steps))
        return p

    p = run(params)
    return p["eta"], 0.01 * p["gamma"]
