"""Online (recursive) least squares over a sequence, and one GD step, as next-state predictors for the dynamics task
(von Oswald et al. 2023b; reference/mesa.md §2.5, §2.10).

At position t the model has seen s_1 … s_t and must predict s_{t+1}. The pairs (s_{i−1}, s_i), i = 1 … t, with
s_0 := 0, are the in-context "training set" of a linear model s_i ≈ W s_{i−1}; the query is s_t.

- pairs="all": fit on all t pairs seen so far — the estimator a mesa layer with keys s_{i−1}, values s_i and
  query s_t computes; it is `models.mesa.mesa_solve`, so there is one formula for both.
- pairs="one_fewer": the authors' code (`auxiliary_models.py`) fits only i ≤ t−1, one pair behind. Their stored
  curve is 1.676 at t = 1, 0.086 at t = 10 (λ = 1e-3), against 1.512 and 0.0045 with all pairs.

Shapes: states [B, T+1, d] (s_1 … s_{T+1}); predictions [B, T, d] for s_2 … s_{T+1}.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mesalab.models.mesa import mesa_solve

PAIRS = ("all", "one_fewer")


def previous_states(states: jax.Array) -> jax.Array:
    """s_{t−1} for t = 1 … T (s_0 := 0), [B, T, d]."""
    s = states[:, :-1]
    return jnp.concatenate([jnp.zeros_like(s[:, :1]), s[:, :-1]], axis=1)


def causal_ridge(x: jax.Array, y: jax.Array, queries: jax.Array, lam: float) -> jax.Array:
    """Ridge fit on the pairs (x_i, y_i), i ≤ t, applied to queries_t: [B, T, d_x], [B, T, d_y], [B, T, d_x]."""
    return jax.vmap(lambda q, k, v: mesa_solve(q, k, v, lam)[0])(queries, x, y)


def ridge_predictions(states: jax.Array, lam: float = 1e-3, pairs: str = "all") -> jax.Array:
    """Per-position least-squares predictions of s_{t+1} (λ = 1e-3 is the authors' LSQ baseline)."""
    if pairs not in PAIRS:
        raise ValueError(f"pairs = {pairs!r} is not allowed; expected one of {PAIRS}")
    current = states[:, :-1]
    keys, values = previous_states(states), current
    if pairs == "one_fewer":  # shift the pairs one step later: position t sees pairs 1 … t−1
        keys = jnp.concatenate([jnp.zeros_like(keys[:, :1]), keys[:, :-1]], axis=1)
        values = jnp.concatenate([jnp.zeros_like(values[:, :1]), values[:, :-1]], axis=1)
    return causal_ridge(keys, values, current, lam)


def gd_step_direction(states: jax.Array) -> jax.Array:
    """The prediction of one unit-rate GD step from W_0 = 0 on Σ_i ½‖W s_{i−1} − s_i‖²:
    ΔW = Σ_{i≤t} s_i s_{i−1}ᵀ, prediction ΔW s_t = Σ_{i≤t} s_i (s_{i−1}·s_t). Linear in η, so GD-1 = η · this."""
    current = states[:, :-1]
    scores = jnp.tril(jnp.einsum("btd,bid->bti", current, previous_states(states)))
    return jnp.einsum("bti,bid->btd", scores, current)


def best_gd_eta(states: jax.Array, mask: jax.Array | None = None) -> jax.Array:
    """The η shared by all positions and sequences that minimises the squared next-state error (closed form,
    η* = Σ g·s_{t+1} / Σ g·g with g = `gd_step_direction`)."""
    g, target = gd_step_direction(states), states[:, 1:]
    w = jnp.ones(g.shape[:2]) if mask is None else mask
    return jnp.einsum("bt,btd,btd->", w, g, target) / jnp.einsum("bt,btd,btd->", w, g, g)


def gd_predictions(states: jax.Array, eta: float | jax.Array) -> jax.Array:
    """One GD step from W_0 = 0 with rate η, per position."""
    return eta * gd_step_direction(states)


def gd_from_init_predictions(states: jax.Array, eta: float | jax.Array, w0: jax.Array) -> jax.Array:
    """One GD step from W_0 on Σ_{i≤t} ½‖W s_{i−1} − s_i‖²: ŷ_t = W_0 s_t + η Σ_{i≤t} (s_i − W_0 s_{i−1})(s_{i−1}·s_t)."""
    current, prev = states[:, :-1], previous_states(states)
    scores = jnp.tril(jnp.einsum("btd,bid->bti", current, prev))
    g = jnp.einsum("bti,bid->btd", scores, current)
    h = jnp.einsum("bti,bid->btd", scores, prev)
    return (current - eta * h) @ w0.T + eta * g


def fit_gd_from_init(states: jax.Array, grid_points: int = 41) -> tuple[float, jax.Array]:
    """The (η, W_0) of one GD step that minimise the squared next-state error over all positions and sequences.

    For a fixed η the prediction is linear in W_0, so W_0 is a least-squares solve; η is searched on a grid of
    `grid_points` values in [0, 2η₀], η₀ the best rate from W_0 = 0 (the loss is smooth in η).
    """
    current, prev = states[:, :-1], previous_states(states)
    scores = jnp.tril(jnp.einsum("btd,bid->bti", current, prev))
    g = jnp.einsum("bti,bid->btd", scores, current).reshape(-1, states.shape[-1])
    h = jnp.einsum("bti,bid->btd", scores, prev).reshape(-1, states.shape[-1])
    x, y = current.reshape(-1, states.shape[-1]), states[:, 1:].reshape(-1, states.shape[-1])

    def fit(eta):
        w0_t = jnp.linalg.lstsq(x - eta * h, y - eta * g)[0]
        return jnp.mean(jnp.sum((x @ w0_t - eta * h @ w0_t + eta * g - y) ** 2, -1)), w0_t.T

    etas = jnp.linspace(0.0, 2.0 * best_gd_eta(states), grid_points)
    losses, w0s = jax.lax.map(fit, etas)
    best = int(jnp.argmin(losses))
    return float(etas[best]), w0s[best]
