"""Matrix-inverse approximations used as least-squares solvers (reference/mesa.md §2.10–2.11): what a stack of
linear-attention layers could compute in place of an exact inverse of A = SSᵀ + λI (symmetric positive definite).

- truncated Neumann series: A⁻¹ ≈ c⁻¹ Σ_{k=0}^{K} (I − A/c)^k, valid when ‖I − A/c‖ < 1 (c > λ_max/2 suffices for
  SPD A); error ρ^{K+1}, so K = O(κ log 1/ε) terms.
- Newton–Schulz: X_0 = I / tr(A), X ← X(2I − AX); the residual I − AX squares every step (quadratic tail).
- Chebyshev semi-iteration: the Neumann recursion with step sizes and momentum chosen from the spectrum bounds
  [lo, hi]; error ~ 2((√κ − 1)/(√κ + 1))^K instead of ((κ − 1)/κ)^K.

All take A [..., d, d] and return X ≈ A⁻¹ [..., d, d]. `ridge_with_inverse` turns one into a per-position
least-squares predictor for sequences.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp


def neumann_inverse(a: jax.Array, terms: int, scale: float | jax.Array | None = None) -> jax.Array:
    """c⁻¹ Σ_{k=0}^{terms} (I − A/c)^k; c defaults to the largest eigenvalue of A (the authors' fixed default is
    c = 70 for the dynamics task)."""
    eye = jnp.eye(a.shape[-1], dtype=a.dtype)
    c = jnp.linalg.eigvalsh(a)[..., -1:, None] if scale is None else jnp.asarray(scale, a.dtype)
    m = eye - a / c
    term, total = eye, eye
    for _ in range(terms):
        term = term @ m
        total = total + term
    return total / c


def newton_schulz_inverse(a: jax.Array, steps: int, alpha: float | None = None) -> jax.Array:
    """X_{k+1} = X_k (2I − A X_k) from X_0 = αI; α defaults to 1 / tr(A) (converges for any SPD A), and a fixed α
    (what a fixed-weight network can use) needs α < 2 / λ_max(A)."""
    eye = jnp.eye(a.shape[-1], dtype=a.dtype)
    x = eye * (1 / jnp.trace(a, axis1=-2, axis2=-1)[..., None, None] if alpha is None else alpha)
    for _ in range(steps):
        x = x @ (2 * eye - a @ x)
    return x


def chebyshev_inverse(a: jax.Array, steps: int, lo: jax.Array | None = None, hi: jax.Array | None = None) -> jax.Array:
    """Chebyshev semi-iteration for A X = I with eigenvalue bounds lo ≤ λ(A) ≤ hi (default: the exact extremes).

    Saad, "Iterative Methods for Sparse Linear Systems", Alg. 12.1, with X_0 = 0 and residual R = I − A X.
    """
    eye = jnp.eye(a.shape[-1], dtype=a.dtype)
    if lo is None or hi is None:
        eig = jnp.linalg.eigvalsh(a)
        lo = eig[..., :1, None] if lo is None else lo
        hi = eig[..., -1:, None] if hi is None else hi
    theta = (hi + lo) / 2
    delta = jnp.maximum((hi - lo) / 2, 1e-6 * theta)  # lo = hi (A = cI) would divide by zero
    sigma = theta / delta
    rho = 1 / sigma
    d = eye / theta
    x = jnp.zeros_like(a)
    r = jnp.broadcast_to(eye, a.shape)
    for _ in range(steps):
        x = x + d
        r = r - a @ d
        rho_next = 1 / (2 * sigma - rho)
        d = rho_next * rho * d + (2 * rho_next / delta) * r
        rho = rho_next
    return x


def ridge_with_inverse(
    x: jax.Array, y: jax.Array, queries: jax.Array, lam: float, inverse: Callable[[jax.Array], jax.Array],
) -> jax.Array:
    """Like `least_squares.causal_ridge`, with (Σ_{i≤t} x_i x_iᵀ + λI)⁻¹ replaced by `inverse` of it:
    prediction_t = (Σ_{i≤t} y_i x_iᵀ) inverse(G_t) q_t. Shapes [B, T, d_x], [B, T, d_y], [B, T, d_x]."""
    gram = jnp.cumsum(jnp.einsum("bti,btj->btij", x, x), axis=1) + lam * jnp.eye(x.shape[-1])
    s = jnp.cumsum(jnp.einsum("btv,btk->btvk", y, x), axis=1)
    return jnp.einsum("btvk,btkj,btj->btv", s, inverse(gram), queries)
