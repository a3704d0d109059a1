"""Linear self-attention stacks that approximate the preconditioned input A⁻¹ s with A = λI + Σ_i s_i s_iᵀ
(von Oswald et al. 2023b §4; reference/mesa.md §2.11): what a depth-limited mesa-optimizer can compute.

Both constructions read a sequence of tokens [u, w] (two slots of d): first d *regulariser tokens* √λ·e_j, then
the data s_1 … s_N, then the query s. Attention is linear, non-causal, and keys and values come from every token
but the query (`keys_from="context"`), so each layer sees Σ_i u_i u_iᵀ = λI + Σ s_i s_iᵀ = A exactly: the
regulariser tokens carry λ, which no attention-only layer could add to the query's own slot otherwise.

- `neumann_lsa`, term by term: K layers give the truncated series c⁻¹ Σ_{k=0}^{K} (I − A/c)^k s, error ρ^{K+1}
  with ρ = ‖I − A/c‖ (depth O(κ log 1/ε)). Layer k (1-based) keeps z_k = y_k − (k+1)c⁻¹ s in slot w with the
  Richardson step y_k = y_{k−1} + c⁻¹(s − A y_{k−1}); one head with query w + (k/c)·u, key u, value u and output
  −1/c into w computes it. The prediction reads y_K = w + (K+1)c⁻¹ u at the query.
- `newton_lsa`, by repeated squaring: Newton–Schulz M_{k+1} = 2M_k − M_k A M_k from M_0 = αI, so
  I − M_K A = (I − αA)^{2^K}: error ρ^{2^K}, depth O(log κ + log log 1/ε). Every token keeps w = M_k u / 2^k;
  one head with query w, key u, value w writes −2^{k−1}·(W_k A w) into w, and the prediction is 2^K·w. The
  product W_k A w shrinks like 4^{−k}, so in float32 it underflows beyond about 60 layers (measured: the error
  grows again at 64 layers); the construction has converged long before that.

The two are the same function as `algorithms.inverse.neumann_inverse` and `newton_schulz_inverse` (tested).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from mesalab.models.config import TransformerConfig
from mesalab.models.transformer import Transformer
from mesalab.models.weights import set_head


def preconditioning_tokens(states: jax.Array, query: jax.Array, lam: float, w_scale: float) -> jax.Array:
    """Tokens [d + N + 1, 2d] for data states [N, d] and a query [d]: regulariser tokens, data, query; the w slot
    starts as w_scale·u (0 for `neumann_lsa`, α for `newton_lsa`)."""
    d = states.shape[-1]
    u = jnp.concatenate([jnp.sqrt(lam) * jnp.eye(d, dtype=states.dtype), states, query[None]], axis=0)
    return jnp.concatenate([u, w_scale * u], axis=-1)


def _stack(d: int, layers: int) -> Transformer:
    cfg = TransformerConfig(d_model=2 * d, n_layers=layers, n_heads=1, d_head=d, attention="linear", causal=False,
                            keys_from="context", readout_start=d, readout_size=d)
    model = Transformer(cfg, key=jax.random.PRNGKey(0))
    return jax.tree_util.tree_map(lambda x: jnp.zeros_like(x) if eqx.is_array(x) else x, model)


def _slot(d: int, slot: int, scale: float = 1.0) -> jax.Array:
    """[2d, d]: reads slot (0 = u, 1 = w) of a token, times scale (row convention, q = e @ W)."""
    return jnp.zeros((2 * d, d)).at[slot * d + jnp.arange(d), jnp.arange(d)].set(scale)


def neumann_lsa(d: int, layers: int, scale: float) -> Transformer:
    """K = layers term-by-term Neumann steps with c = scale; read the result with `neumann_readout`."""
    model = _stack(d, layers)
    for k in range(1, layers + 1):
        w_q = _slot(d, 1) + _slot(d, 0, k / scale)
        w_o = _slot(d, 1, -1.0 / scale).T
        model = set_head(model, k - 1, 0, W_Q=w_q, W_K=_slot(d, 0), W_V=_slot(d, 0), W_O=w_o)
    return model


def neumann_readout(out: jax.Array, layers: int, scale: float) -> jax.Array:
    """y_K = z_K + (K+1)/c · s from the query token's output [2d]."""
    d = out.shape[-1] // 2
    return out[..., d:] + (layers + 1) / scale * out[..., :d]


def newton_lsa(d: int, layers: int) -> Transformer:
    """K = layers Newton–Schulz steps; tokens must start with w = α·u (`preconditioning_tokens(..., w_scale=α)`)."""
    model = _stack(d, layers)
    for k in range(layers):
        model = set_head(model, k, 0, W_Q=_slot(d, 1), W_K=_slot(d, 0), W_V=_slot(d, 1),
                         W_O=_slot(d, 1, -(2.0 ** (k - 1))).T)
    return model


def newton_readout(out: jax.Array, layers: int) -> jax.Array:
    """M_K s = 2^K · w of the query token's output [2d]."""
    d = out.shape[-1] // 2
    return 2.0**layers * out[..., d:]
