"""The hard-wired n-gram layer of Akyürek et al. 2024 (layer kinds "ngram1", "ngram2", "ngram3", …; §1.7 of
reference/icll.md; seq_icl `src/models/sequence/rnn/ngram.py`, functions `induction_head` and class `Ngram`).

An attention layer whose pattern is fixed by the token ids, not learned. With order k (the kind "ngram<k>", their
config key `ngram: k`) and tokens x_0 … x_{T−1}:

    match(t, s) = [s < t] · Π_{i=0}^{k−1} [x_{t−i} = x_{s−i}]      (and s − k + 1 ≥ 0: the whole k-gram exists)
    A[t, j]     = match(t, j − 1) · [j < t]                         the token *after* each earlier match
    a[t, j]     = A[t, j] / Σ_j' A[t, j']                           uniform; a row without a match is all zero
    z_t         = Σ_j a[t, j] h_j                                    h: the layer's input (the normed stream)
    out_t       = z_t W_O + b_O + h_t W_skip + b_skip                their `t0(h0) + t1(h1)`, two d_model × d_model
                                                                     linear maps with biases, no gating

So z_t averages the representations of the tokens that followed earlier occurrences of the k tokens ending at t:
an in-context (k+1)-gram next-token estimate in representation space; "ngram1" is the induction-head pattern
(attend to the token after the previous occurrence of the current token). The output is the layer's update to the
residual stream like any mixer's (the Block adds it), as in their pre-LN `Block`. Parameters: 2·(d_model² + d_model).
Initialisation is PyTorch's nn.Linear default U(±1/√d_model), as theirs; TransformerConfig.init does not apply.

Token ids. The layer reads the model's input tokens from the forward pass's environment, `hooks.env["tokens"]`
[pos, d_in] — the same place `Computed` interventions read them (models.computed) — so it keeps the mixer call
signature and needs no extra argument through the stack. Two positions hold the same token when their input rows are
exactly equal, which for one-hot inputs (REGBENCH, the copying tasks) is equality of the ids, and needs no
vocabulary size. The authors match raw `input_ids` including padding; so does this layer (padding comes after the
prompt, and the pattern is causal, so it never reaches a prompt token).

Sites (prefix blocks.{l}.attn., the attention names, so analyses of attention patterns read it unchanged):
hook_pattern [1, query_pos, key_pos] (one head), hook_z [pos, 1, d_model] (the averaged input, before W_O).
Intervening on hook_pattern replaces the fixed pattern, as for attention.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp

from mesalab.models.config import ngram_order  # noqa: F401  (re-exported: the kind's order k)
from mesalab.models.hooks import Hooks


def same_token(tokens: jax.Array) -> jax.Array:
    """[pos, pos] booleans: input rows s and t are identical (the same token id for one-hot inputs)."""
    return jnp.all(tokens[:, None, :] == tokens[None, :, :], axis=-1)


def ngram_pattern(tokens: jax.Array, k: int) -> jax.Array:
    """The n-gram head's pattern a [query_pos, key_pos] for order k (see the module docstring): uniform over the
    positions that follow an earlier occurrence of the k tokens ending at the query; all-zero rows where none do."""
    n = tokens.shape[0]
    eq = same_token(tokens)
    below = jnp.tril(jnp.ones((n, n), bool), k=-1)  # s < t
    match = eq & below
    for i in range(1, k):
        # [x_{t−i} = x_{s−i}]: eq shifted down-right by i; False where t − i or s − i is before the sequence.
        match = match & jnp.pad(eq[: n - i, : n - i], ((i, 0), (i, 0)))
    after = jnp.pad(match[:, : n - 1], ((0, 0), (1, 0))) & below  # A[t, j] = match(t, j − 1), j < t
    counts = after.sum(axis=-1, keepdims=True)
    return jnp.where(after, 1.0 / jnp.maximum(counts, 1), 0.0).astype(jnp.float32)


class NGram(eqx.Module):
    """The hard-wired n-gram layer of order k: x [pos, d_model] -> [pos, d_model]; reads hooks.env["tokens"]."""

    W_O: jax.Array
    b_O: jax.Array
    W_skip: jax.Array
    b_skip: jax.Array
    order: int = eqx.field(static=True)
    kind: str = eqx.field(static=True)
    SITE_PREFIX = "attn."  # its sites are blocks.{l}.attn.hook_*
    SITES = ("attn.hook_pattern", "attn.hook_z")

    def __init__(self, d_model: int, order: int, *, key: jax.Array):
        if not (isinstance(order, int) and order >= 1):
            raise ValueError(f"order = {order!r} is not allowed; expected an integer >= 1")
        bound = 1 / math.sqrt(d_model)
        k1, k2, k3, k4 = jax.random.split(key, 4)
        u = lambda k, shape: jax.random.uniform(k, shape, minval=-bound, maxval=bound)  # noqa: E731
        self.W_O, self.b_O = u(k1, (d_model, d_model)), u(k2, (d_model,))
        self.W_skip, self.b_skip = u(k3, (d_model, d_model)), u(k4, (d_model,))
        self.order, self.kind = order, f"ngram{order}"

    def __call__(self, x: jax.Array, hooks: Hooks, prefix: str, last_only: bool = False) -> jax.Array:
        """x: [pos, d_model] -> [pos, d_model]; with last_only, the last position's output [1, d_model]."""
        tokens = hooks.env.get("tokens")
        if tokens is None or tokens.shape[0] != x.shape[0]:
            raise ValueError(f"the {self.kind} layer at {prefix!r} needs the model's input tokens in hooks.env['tokens'] "
                             "([pos, d_in]); build Hooks with tokens=x, as Transformer does")
        pattern = ngram_pattern(tokens, self.order).astype(x.dtype)
        if last_only:
            pattern, h = pattern[-1:], x[-1:]
        else:
            h = x
        pattern = hooks(prefix + "hook_pattern", pattern[None])  # [1, query, key]
        z = hooks(prefix + "hook_z", jnp.einsum("hqk,km->qhm", pattern, x))  # [query, 1, d_model]
        return z[:, 0] @ self.W_O + self.b_O + h @ self.W_skip + self.b_skip
