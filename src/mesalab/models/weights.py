"""Per-layer, per-head weight accessors in the papers' column-vector convention, and head surgery.

With a token e as a column vector, von Oswald et al. write the attention score of query token j on key token i as
e_iᵀ W_Kᵀ W_Q e_j and the value written back as P W_V e_i. mesalab stores TransformerLens row-vector weights
(q = e @ W_Q), so W_Q(paper) = W_Q(mesalab)ᵀ and:

    qk(model, l, h) = W_Kᵀ W_Q  [d_model, d_model]   rows index key-token features, columns query-token features
    ov(model, l, h) = P W_V     [d_model, d_model]   rows index output features, columns value-token features
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from mesalab.models.transformer import Transformer


def attention(model: Transformer, layer: int, head: int | None = None):
    """Layer `layer`'s attention module, with a clear error for a layer out of range, a head out of range, or a
    mixer without query/key/value weights (an LSTM, a selective SSM or a hard-wired n-gram layer)."""
    n = len(model.blocks)
    if not -n <= layer < n:
        raise ValueError(f"layer = {layer} is out of range; the model has {n} layers (0 … {n - 1})")
    attn = model.blocks[layer].attn
    if not hasattr(attn, "W_Q"):
        raise ValueError(f"layer {layer} is a {type(attn).__name__}, which has no attention weights (W_Q, W_K, W_V, "
                         "W_O); the weight accessors apply to softmax, linear and mesa layers")
    if head is not None and not -attn.W_Q.shape[0] <= head < attn.W_Q.shape[0]:
        raise ValueError(f"head = {head} is out of range; layer {layer} has {attn.W_Q.shape[0]} heads")
    return attn


def W_Q(model: Transformer, layer: int, head: int) -> jax.Array:
    """[d_model, d_head] (row convention: q = e @ W_Q)."""
    return attention(model, layer, head).W_Q[head]


def W_K(model: Transformer, layer: int, head: int) -> jax.Array:
    return attention(model, layer, head).W_K[head]


def W_V(model: Transformer, layer: int, head: int) -> jax.Array:
    return attention(model, layer, head).W_V[head]


def W_O(model: Transformer, layer: int, head: int) -> jax.Array:
    """[d_head, d_model]; the papers' projection P is W_Oᵀ (a slice of the identity without an output projection)."""
    return attention(model, layer, head).output_matrix[head]


def qk(model: Transformer, layer: int, head: int) -> jax.Array:
    """W_Kᵀ W_Q in the papers' convention: score(query j, key i) = e_iᵀ · qk · e_j."""
    return W_K(model, layer, head) @ W_Q(model, layer, head).T


def ov(model: Transformer, layer: int, head: int) -> jax.Array:
    """P W_V in the papers' convention: the update written to a token is P W_V e_i (times the attention weight)."""
    return (W_V(model, layer, head) @ W_O(model, layer, head)).T


def all_qk(model: Transformer) -> jax.Array:
    """[layer, head, d_model, d_model] stack of `qk`."""
    attns = [attention(model, i) for i in range(len(model.blocks))]
    return jnp.stack([jnp.einsum("hmd,hnd->hmn", a.W_K, a.W_Q) for a in attns])


def all_ov(model: Transformer) -> jax.Array:
    """[layer, head, d_model, d_model] stack of `ov`."""
    attns = [attention(model, i) for i in range(len(model.blocks))]
    return jnp.stack([jnp.einsum("hmd,hdn->hnm", a.W_V, a.output_matrix) for a in attns])


def remove_head(model: Transformer, layer: int, head: int) -> Transformer:
    """Surgery: a copy of `model` whose head writes nothing (its rows of W_O are zero; its W_V when the layer has
    no output projection)."""
    attn = attention(model, layer, head)
    if attn.W_O is None:
        return eqx.tree_at(lambda m: m.blocks[layer].attn.W_V, model, attn.W_V.at[head].set(0.0))
    return eqx.tree_at(lambda m: m.blocks[layer].attn.W_O, model, attn.W_O.at[head].set(0.0))


def set_head(model: Transformer, layer: int, head: int, *, W_Q=None, W_K=None, W_V=None, W_O=None) -> Transformer:
    """Surgery: a copy of `model` with some of one head's matrices replaced (row convention, per-head shapes)."""
    attn = attention(model, layer, head)
    for name, new in (("W_Q", W_Q), ("W_K", W_K), ("W_V", W_V), ("W_O", W_O)):
        if new is not None:
            old = getattr(attn, name)
            if old is None:
                raise ValueError(f"set_head: layer {layer} has no output projection (TransformerConfig.out_proj = "
                                 "False), so W_O cannot be set")
            if new.shape != old.shape[1:]:
                raise ValueError(f"set_head: {name} must have shape {old.shape[1:]}, got {tuple(new.shape)}")
            attn = eqx.tree_at(lambda a, n=name: getattr(a, n), attn, old.at[head].set(new))
    return eqx.tree_at(lambda m: m.blocks[layer].attn, model, attn)
