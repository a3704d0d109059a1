"""Gradient descent on the in-context squared loss (von Oswald et al. 2023; reference/mesa.md §1.4, §1.7).

The in-context loss is L(W) = (1/2N) Σ_i (W x_i − y_i)². A GD step is W ← W − (η/N) Σ_i (W x_i − y_i) x_iᵀ.
Shapes: x_ctx [B, N, d], y_ctx [B, N], x_q [B, d]; predictions [B].
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from mesalab.train.loss import half_mse

# The authors' line-search grid for η (`scan_lrs`: 0.001, 0.101, …, 24.901; reference/mesa.md §1.7).
ETA_GRID = np.arange(0.001, 25.0, 0.1)


def gd_weights(x_ctx: jax.Array, y_ctx: jax.Array, etas, w0: jax.Array | None = None) -> jax.Array:
    """W after len(etas) GD steps (step k uses etas[k]) from w0 (default 0). Returns [B, d]."""
    n = x_ctx.shape[-2]
    w = jnp.zeros(x_ctx.shape[::2]) if w0 is None else jnp.broadcast_to(w0, x_ctx.shape[::2])
    for eta in jnp.atleast_1d(jnp.asarray(etas)):
        resid = jnp.einsum("bnd,bd->bn", x_ctx, w) - y_ctx
        w = w - (eta / n) * jnp.einsum("bn,bnd->bd", resid, x_ctx)
    return w


def gd_predict(x_ctx: jax.Array, y_ctx: jax.Array, x_q: jax.Array, etas, w0: jax.Array | None = None) -> jax.Array:
    """The query prediction after len(etas) GD steps."""
    return jnp.einsum("bd,bd->b", gd_weights(x_ctx, y_ctx, etas, w0), x_q)


def gd_one_step_predict(x_ctx: jax.Array, y_ctx: jax.Array, x_q: jax.Array, eta: float | jax.Array) -> jax.Array:
    """One GD step from W_0 = 0: ŷ = (η/N) Σ_i y_i x_iᵀ x_q."""
    return gd_predict(x_ctx, y_ctx, x_q, jnp.asarray([eta]))


def optimal_eta_one_step(x_ctx: jax.Array, y_ctx: jax.Array, x_q: jax.Array, y_q: jax.Array) -> jax.Array:
    """The η minimising Σ_b ½(ŷ_b(η) − y_b)² over a batch of tasks, in closed form.

    ŷ is linear in η (ŷ = η·c with c = gd_one_step_predict(..., 1)), so the optimum is η* = Σ c·y / Σ c².
    """
    c = gd_one_step_predict(x_ctx, y_ctx, x_q, 1.0)
    return jnp.sum(c * y_q) / jnp.sum(c * c)


def line_search_eta(x_ctx, y_ctx, x_q, y_q, steps: int = 1, grid=ETA_GRID) -> tuple[float, float]:
    """The authors' protocol: the best η on `grid`, shared by all `steps` steps; returns (η, ½·MSE at η)."""
    losses = jax.lax.map(
        lambda eta: half_mse(gd_predict(x_ctx, y_ctx, x_q, jnp.full((steps,), eta)), y_q),
        jnp.asarray(grid, jnp.float32))
    best = int(jnp.nanargmin(losses))
    return float(grid[best]), float(losses[best])


def gd_plus_plus_predict(x_ctx: jax.Array, y_ctx: jax.Array, x_q: jax.Array, etas, gammas) -> jax.Array:
    """GD++: per layer, a GD step on the current inputs and the input transform x ← (I − γ XᵀX) x for every
    token (context and query), both computed from the layer's input (von Oswald et al. 2023 §4, "curvature
    correction"; reference/mesa.md §1.4). γ = 0 everywhere is plain GD.

    Written, like the construction, on token states: s_j starts as y_j for context tokens and 0 for the query;
    each layer sets s_j ← s_j − (η/N) Σ_i s_i x_iᵀ x_j, and the prediction is −s_q.
    """
    n = x_ctx.shape[-2]
    x, xq, s, sq = x_ctx, x_q, y_ctx, jnp.zeros_like(y_ctx[:, 0])
    for eta, gamma in zip(jnp.atleast_1d(jnp.asarray(etas)), jnp.atleast_1d(jnp.asarray(gammas))):
        gram_ctx = jnp.einsum("bnd,bmd->bnm", x, x)  # x_iᵀ x_j
        gram_q = jnp.einsum("bnd,bd->bn", x, xq)
        s, sq = s - (eta / n) * jnp.einsum("bi,bij->bj", s, gram_ctx), sq - (eta / n) * jnp.einsum("bi,bi->b", s, gram_q)
        x, xq = x - gamma * jnp.einsum("bid,bij->bjd", x, gram_ctx), xq - gamma * jnp.einsum("bid,bi->bd", x, gram_q)
    return -sq
