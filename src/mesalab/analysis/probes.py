"""Linear probes: ridge regressions from a cached activation to a target, per layer and per position, fitted on one
set of sequences and scored on another (von Oswald et al. 2023b §4; reference/mesa.md §2.8).

The authors fit and score their probes on the same batch (in-sample); here a probe never sees the sequences it is
scored on, so a probe of pure noise scores R² ≈ 0 instead of the in-sample R² ≈ features / samples.

Every (layer, position) probe is one ridge regression with a bias; all of them are solved together as a batch of
small linear systems, so probing every layer × position of a deep model takes one `linalg.solve` call.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class ProbeScores(NamedTuple):
    """Held-out scores, one per probe: r2 = 1 − SSE / SST (SST around the held-out mean, pooled over target
    coordinates); mse = ½‖ŷ − y‖² averaged over held-out samples (the study losses' convention)."""

    r2: jax.Array
    mse: jax.Array


def with_bias(x: jax.Array) -> jax.Array:
    return jnp.concatenate([x, jnp.ones_like(x[..., :1])], axis=-1)


def fit_probes(features: jax.Array, targets: jax.Array, lam: float = 1e-3) -> jax.Array:
    """Ridge weights [..., f+1, k] for features [..., N, f] and targets [..., N, k] (leading axes are probes).
    λ is scaled by N so that its effect does not depend on how many samples there are."""
    x = with_bias(features)
    n = x.shape[-2]
    gram = jnp.einsum("...ni,...nj->...ij", x, x) + lam * n * jnp.eye(x.shape[-1])
    return jnp.linalg.solve(gram, jnp.einsum("...ni,...nk->...ik", x, targets))


def score_probes(weights: jax.Array, features: jax.Array, targets: jax.Array) -> ProbeScores:
    pred = jnp.einsum("...ni,...ik->...nk", with_bias(features), weights)
    sse = jnp.sum((pred - targets) ** 2, axis=(-2, -1))
    sst = jnp.sum((targets - jnp.mean(targets, axis=-2, keepdims=True)) ** 2, axis=(-2, -1))
    return ProbeScores(1.0 - sse / sst, 0.5 * sse / targets.shape[-2])


def probe(train_features: jax.Array, train_targets: jax.Array, test_features: jax.Array, test_targets: jax.Array,
          lam: float = 1e-3) -> ProbeScores:
    """Fit on the train sequences, score on the test sequences. Features [..., N, f], targets [..., N, k]; the
    leading axes (e.g. layer, position) index independent probes and must match between features and targets
    after broadcasting."""
    if train_features.shape[-1] != test_features.shape[-1]:
        raise ValueError(f"train features have {train_features.shape[-1]} dims, test features "
                         f"{test_features.shape[-1]}; they must come from the same site")
    return score_probes(fit_probes(train_features, train_targets, lam), test_features, test_targets)


def by_position(acts: jax.Array) -> jax.Array:
    """[B, T, f] batch-major activations -> [T, B, f], the layout `probe` expects (one probe per position)."""
    return jnp.swapaxes(acts, 0, 1)
