"""Ridge regression and least squares fitted to the in-context pairs of each sequence (the optimal estimators that
GD and trained transformers are measured against). Shapes: x_ctx [B, N, d], y_ctx [B, N], x_q [B, d] -> [B]."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def ridge_weights(x_ctx: jax.Array, y_ctx: jax.Array, lam: float) -> jax.Array:
    """w = (XᵀX + λI)⁻¹ Xᵀy per sequence, [B, d]."""
    d = x_ctx.shape[-1]
    gram = jnp.einsum("bnd,bne->bde", x_ctx, x_ctx) + lam * jnp.eye(d)
    return jnp.linalg.solve(gram, jnp.einsum("bnd,bn->bd", x_ctx, y_ctx)[..., None])[..., 0]


def ridge_predict(x_ctx: jax.Array, y_ctx: jax.Array, x_q: jax.Array, lam: float) -> jax.Array:
    return jnp.einsum("bd,bd->b", ridge_weights(x_ctx, y_ctx, lam), x_q)


def ols_predict(x_ctx: jax.Array, y_ctx: jax.Array, x_q: jax.Array) -> jax.Array:
    """Minimum-norm least squares (pseudo-inverse), exact when N ≥ d and XᵀX is invertible."""
    w = jnp.einsum("bdn,bn->bd", jnp.linalg.pinv(x_ctx), y_ctx)
    return jnp.einsum("bd,bd->b", w, x_q)
