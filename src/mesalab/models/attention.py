"""Multi-head attention: linear (no softmax, no normalisation) or softmax; causal or not; with named sites.

Weights follow TransformerLens shapes: W_Q, W_K, W_V [head, d_model, d_head] and W_O [head, d_head, d_model],
acting on row vectors (q = x @ W_Q). `models.weights` gives the products W_KᵀW_Q and PW_V in the papers' column
convention.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp

from mesalab.models.hooks import Hooks


def init_weight(key: jax.Array, shape: tuple[int, ...], fan_in: int, init: str, scale: float) -> jax.Array:
    """Normal(0, scale²) or fan-in scaled truncated normal (Haiku's VarianceScaling, used by von Oswald et al.)."""
    if init == "normal":
        return scale * jax.random.normal(key, shape)
    # Truncated at ±2σ; 0.8796 restores the variance lost to truncation.
    std = math.sqrt(scale / fan_in) / 0.87962566103423978
    return std * jax.random.truncated_normal(key, -2.0, 2.0, shape)


def attention_mask(seq_len: int, causal: bool, keys_from: str) -> jax.Array:
    """[query, key] booleans: which keys each query may read."""
    mask = jnp.ones((seq_len, seq_len), bool)
    if causal:
        mask = jnp.tril(mask)
    if keys_from == "context":
        mask = mask.at[:, -1].set(False)
    return mask


class Attention(eqx.Module):
    W_Q: jax.Array
    W_K: jax.Array
    W_V: jax.Array
    W_O: jax.Array
    kind: str = eqx.field(static=True)
    causal: bool = eqx.field(static=True)
    keys_from: str = eqx.field(static=True)
    scaled: bool = eqx.field(static=True)

    def __init__(self, d_model: int, n_heads: int, d_head: int, kind: str, causal: bool, keys_from: str,
                 scaled: bool, init: str, init_scale: float, *, key: jax.Array):
        kq, kk, kv, ko = jax.random.split(key, 4)
        shape_in = (n_heads, d_model, d_head)
        self.W_Q = init_weight(kq, shape_in, d_model, init, init_scale)
        self.W_K = init_weight(kk, shape_in, d_model, init, init_scale)
        self.W_V = init_weight(kv, shape_in, d_model, init, init_scale)
        self.W_O = init_weight(ko, (n_heads, d_head, d_model), n_heads * d_head, init, init_scale)
        self.kind, self.causal, self.keys_from, self.scaled = kind, causal, keys_from, scaled

    def __call__(self, x: jax.Array, hooks: Hooks, prefix: str, last_only: bool = False) -> jax.Array:
        """x: [pos, d_model] -> [pos, d_model]; with last_only, only the last position's output [1, d_model]."""
        queries = x[-1:] if last_only else x
        q = hooks(prefix + "hook_q", jnp.einsum("pm,hmd->phd", queries, self.W_Q))
        k = hooks(prefix + "hook_k", jnp.einsum("pm,hmd->phd", x, self.W_K))
        v = hooks(prefix + "hook_v", jnp.einsum("pm,hmd->phd", x, self.W_V))
        scores = jnp.einsum("qhd,khd->hqk", q, k)
        if self.scaled:
            scores = scores / math.sqrt(q.shape[-1])
        mask = attention_mask(x.shape[0], self.causal, self.keys_from)
        if last_only:
            mask = mask[-1:]
        if self.kind == "softmax":
            scores = hooks(prefix + "hook_attn_scores", jnp.where(mask, scores, jnp.finfo(scores.dtype).min))
            pattern = jax.nn.softmax(scores, axis=-1)
            # A query with no readable key (keys_from="context" with one token) reads nothing; the finite fill above
            # keeps its gradient free of NaN.
            pattern = jnp.where(mask.any(-1)[None, :, None], pattern, 0.0)
        else:
            scores = hooks(prefix + "hook_attn_scores", jnp.where(mask, scores, 0.0))
            pattern = scores
        pattern = hooks(prefix + "hook_pattern", pattern)
        z = hooks(prefix + "hook_z", jnp.einsum("hqk,khd->qhd", pattern, v))
        return jnp.einsum("qhd,hdm->qm", z, self.W_O)
