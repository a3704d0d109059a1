"""Gradient descent on the in-context squared loss (von Oswald et al. 2023; reference/mesa.md §1.4, §1.7).

The in-context loss is L(W) = (1/2N) Σ_i (W x_i − y_i)². One step from W_0 = 0 with learning rate η gives
W_1 = (η/N) Σ_i y_i x_iᵀ, so the query prediction is ŷ = (η/N) Σ_i y_i x_iᵀ x_q.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def gd_one_step_predict(x_ctx: jax.Array, y_ctx: jax.Array, x_q: jax.Array, eta: float | jax.Array) -> jax.Array:
    """One GD step from W_0 = 0, then predict at the query. x_ctx [B, N, d], y_ctx [B, N], x_q [B, d] -> [B]."""
    n = x_ctx.shape[-2]
    return (eta / n) * jnp.einsum("bn,bnd,bd->b", y_ctx, x_ctx, x_q)


def optimal_eta_one_step(x_ctx: jax.Array, y_ctx: jax.Array, x_q: jax.Array, y_q: jax.Array) -> jax.Array:
    """The η minimising Σ_b ½(ŷ_b(η) − y_b)² over a batch of tasks, in closed form.

    ŷ is linear in η (ŷ = η·c with c = gd_one_step_predict(..., 1)), so the optimum is η* = Σ c·y / Σ c².
    """
    c = gd_one_step_predict(x_ctx, y_ctx, x_q, 1.0)
    return jnp.sum(c * y_q) / jnp.sum(c * c)
