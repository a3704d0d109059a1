"""Which input tokens a site reads: Jacobian norms of a cached activation with respect to every input token."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def token_sensitivity(model, tokens: jax.Array, site: str) -> jax.Array:
    """[pos_out, pos_in]: ‖∂ site[pos_out] / ∂ tokens[pos_in]‖ (Frobenius) for one sequence [pos, d_in]."""
    def act(t):
        return model.run_with_cache(t, [site])[1][site].reshape(t.shape[0], -1)

    jac = jax.jacrev(act)(tokens)  # [pos_out, features, pos_in, d_in]
    return jnp.sqrt(jnp.sum(jac**2, axis=(1, 3)))


def own_previous_other(norms: jax.Array, first: int = 2) -> jax.Array:
    """[3]: the mean over positions t ≥ first of the sensitivity to token t itself, to token t − 1, and the mean
    over the other tokens before t (causal models read nothing after t)."""
    t = norms.shape[0]
    pos = jnp.arange(first, t)
    own = norms[pos, pos]
    prev = norms[pos, pos - 1]
    earlier = jnp.tril(jnp.ones((t, t)), k=-2)[pos]  # tokens 0 … t−2
    other = jnp.sum(norms[pos] * earlier, -1) / jnp.maximum(jnp.sum(earlier, -1), 1.0)
    return jnp.stack([own.mean(), prev.mean(), other.mean()])
