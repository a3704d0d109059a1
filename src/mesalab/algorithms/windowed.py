"""In-context baselines for sliding-window sequential functions (tasks/sequential.py; issue 20 part B).

At pair t the learner has seen (x_1, ỹ_1) … (x_{t−1}, ỹ_{t−1}) (the shown labels, some replaced by noise) and the
input x_t, and predicts y_t:

- `windowed_least_squares`: least squares on the window features φ_i = [x_{i−k+1}; …; x_i] of the earlier pairs,
  applied to φ_t — the Bayes-optimal learner's estimator as the ridge λ → 0 when no label is replaced (the ridge
  solver is `models.mesa.mesa_solve`, through `least_squares.causal_ridge`, so there is one formula).
- the same with `window=1`: least squares on the last input only, blind to the window (the issue's second baseline).
- `no_context`: predict 0, the mean of y: what a learner that ignores the context can do best (error Var(y) = 1).

Predictions are [B, N]; errors are squared, per position (Garg et al.'s metric, reference/icll.md §4.2).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mesalab.algorithms.least_squares import causal_ridge
from mesalab.tasks.sequential import windows


def windowed_least_squares(x: jax.Array, shown: jax.Array, window: int, lam: float = 1e-6) -> jax.Array:
    """Predictions of y_t from the pairs before t: x [B, N, d], shown labels [B, N] -> [B, N] (0 at t = 1)."""
    phi = windows(x, window)                                   # [B, N, k·d]
    earlier_phi = jnp.concatenate([jnp.zeros_like(phi[:, :1]), phi[:, :-1]], axis=1)
    earlier_y = jnp.concatenate([jnp.zeros_like(shown[:, :1]), shown[:, :-1]], axis=1)[..., None]
    # Fitting on pairs i <= t of the shifted arrays is fitting on the real pairs i < t (a zero pair adds nothing).
    return causal_ridge(earlier_phi, earlier_y, phi, lam)[..., 0]


def no_context(x: jax.Array) -> jax.Array:
    return jnp.zeros(x.shape[:2], x.dtype)


def squared_errors(pred: jax.Array, y: jax.Array) -> jax.Array:
    """Per-sequence, per-position squared error [B, N]."""
    return jnp.square(pred - y)


__all__ = ["no_context", "squared_errors", "windowed_least_squares"]
