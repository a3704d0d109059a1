"""An LSTM sequence mixer (layer kind "lstm"): the recurrent baseline of Akyürek et al. 2024 (reference/icll.md §1.5).

The authors' LSTM layer (seq_icl `src/models/sequence/rnn/lstm.py`) is one `torch.nn.LSTM(d_model, d_model)` whose
hidden states are the layer's output, in a pre-LN residual stack without MLPs (`lm_simple_noffn`: here
TransformerConfig(attention="lstm", d_mlp=0, layer_norm=True)). The standard LSTM (Hochreiter & Schmidhuber 1997,
with a forget gate; PyTorch's gate order i, f, g, o), over positions t = 0, 1, … with h₋₁ = c₋₁ = 0:

    [i f g o]_t = x_t W_ih + h_{t−1} W_hh + b          (row vectors; W_ih, W_hh [d_model, 4·d_model])
    c_t = σ(f_t) ⊙ c_{t−1} + σ(i_t) ⊙ tanh(g_t)
    h_t = σ(o_t) ⊙ tanh(c_t)                            the layer's output at t

One bias b (PyTorch's b_ih + b_hh, which only ever appear summed). Initialisation follows the authors'
Keras-like `_reinitialize`: W_ih Glorot-uniform, W_hh orthogonal, b = 0 except the forget gate's 1; so
TransformerConfig.init / init_scale do not apply to this layer. Parameters: 8·d_model² + 4·d_model.

Sites (prefix blocks.{l}.lstm.): hook_c, hook_h [pos, d_model], the cell and hidden states after the scan. They
record what the rest of the network reads: an intervention on them changes the layer's output, not the recurrence.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp

from mesalab.models.hooks import Hooks


def glorot_uniform(key: jax.Array, fan_in: int, fan_out: int, shape: tuple[int, ...]) -> jax.Array:
    """U(±√(6 / (fan_in + fan_out))), torch.nn.init.xavier_uniform_."""
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    return jax.random.uniform(key, shape, minval=-bound, maxval=bound)


def orthogonal(key: jax.Array, rows: int, cols: int) -> jax.Array:
    """A [rows, cols] matrix with orthonormal columns (rows >= cols) or rows, torch.nn.init.orthogonal_."""
    a = jax.random.normal(key, (max(rows, cols), min(rows, cols)))
    q, r = jnp.linalg.qr(a)
    q = q * jnp.sign(jnp.diag(r))  # the sign fix that makes the draw uniform (Haar)
    return q if rows >= cols else q.T


class LSTM(eqx.Module):
    """The LSTM mixer: x [pos, d_model] -> h [pos, d_model]; causal by construction."""

    W_ih: jax.Array
    W_hh: jax.Array
    b: jax.Array
    kind: str = eqx.field(static=True, default="lstm")
    SITE_PREFIX = "lstm."  # its sites are blocks.{l}.lstm.hook_*
    SITES = ("lstm.hook_c", "lstm.hook_h")  # site suffixes under blocks.{l}., in forward order

    def __init__(self, d_model: int, *, key: jax.Array):
        k_ih, k_hh = jax.random.split(key)
        d4 = 4 * d_model
        # PyTorch's weight_ih is [4d, d] with fan_in d and fan_out 4d; ours is its transpose (row vectors).
        self.W_ih = glorot_uniform(k_ih, d_model, d4, (d_model, d4))
        # orthogonal_ on the [4d, d] weight_hh gives orthonormal columns there, i.e. orthonormal rows here.
        self.W_hh = orthogonal(k_hh, d4, d_model).T
        self.b = jnp.zeros(d4).at[d_model:2 * d_model].set(1.0)

    def __call__(self, x: jax.Array, hooks: Hooks, prefix: str, last_only: bool = False) -> jax.Array:
        """x: [pos, d_model] -> [pos, d_model]; with last_only, the last position's output [1, d_model] (the
        recurrence still runs over every position)."""
        d = x.shape[-1]
        # The input projection does not depend on the state: one matmul for all positions, outside the scan.
        x_proj = x @ self.W_ih + self.b

        def step(carry, xp):
            h, c = carry
            i, f, g, o = jnp.split(xp + h @ self.W_hh, 4, axis=-1)
            c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
            h = jax.nn.sigmoid(o) * jnp.tanh(c)
            return (h, c), (h, c)

        zero = jnp.zeros(d, x.dtype)
        _, (h, c) = jax.lax.scan(step, (zero, zero), x_proj)
        hooks(prefix + "hook_c", c)
        h = hooks(prefix + "hook_h", h)
        return h[-1:] if last_only else h
