"""Multi-head attention: linear (no softmax, no normalisation), softmax, or mesa; causal or not; with named sites.

The mesa kind (von Oswald et al. 2023b; reference/mesa.md §2.6) preconditions each query by the inverse of its
head's regularised key Gram matrix, q̃_t = (Σ_{t'≤t} k kᵀ + λI)⁻¹ q_t (site `hook_q_precond`, computed by
`models.mesa`), then attends linearly and causally with q̃ in place of q; so out_t is the ridge-regression
prediction Φ_t q_t of the values from the keys seen so far. Each head learns log λ (parameter `log_ridge`), so
λ = exp(log_ridge) stays positive; λ = 1 at init matches the authors' λ_s = 1 (their R_0 = λ_s·I, i.e. λ = 1/λ_s).
Weight decay (AdamW) applies to log_ridge like any parameter, so it pulls λ toward 1.

Rotary positions (`rope=True`; Su et al. 2021, as Singh et al. 2024 use, reference/induction.md §3.2): the sites
`hook_q` / `hook_k` hold the queries and keys before the rotation and `hook_rot_q` / `hook_rot_k` after it (the
TransformerLens names); the scores use the rotated ones. See `rope` for the convention.

Weights follow TransformerLens shapes: W_Q, W_K, W_V [head, d_model, d_head] and W_O [head, d_head, d_model],
acting on row vectors (q = x @ W_Q). `models.weights` gives the products W_KᵀW_Q and PW_V in the papers' column
convention.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from mesalab.models.hooks import Hooks
from mesalab.models.mesa import MESA_METHODS, check_finite


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


def rope(x: jax.Array, positions: jax.Array, base: float = 10000.0) -> jax.Array:
    """Rotate x [pos, head, d_head] by its positions [pos]: each adjacent pair (2j, 2j + 1) turns by the angle
    p·θ_j, θ_j = base^(−2j/d_head):  out_2j = x_2j cos − x_2j+1 sin,  out_2j+1 = x_2j sin + x_2j+1 cos.

    This is Singh et al.'s `apply_rope` (icl-dynamics `models.py`: sin/cos of p / base^(2(i//2)/d) repeated per
    pair, the pair rotated as (−x_odd, x_even)); so q_i·k_j depends on i and j only through i − j.
    """
    d = x.shape[-1]
    theta = base ** (-np.arange(0, d, 2) / d)  # [d/2]
    angle = positions.astype(jnp.float32)[:, None] * jnp.asarray(theta, jnp.float32)  # [pos, d/2]
    cos, sin = jnp.cos(angle)[:, None, :], jnp.sin(angle)[:, None, :]
    even, odd = x[..., 0::2], x[..., 1::2]
    return jnp.stack([even * cos - odd * sin, even * sin + odd * cos], axis=-1).reshape(x.shape).astype(x.dtype)


class Attention(eqx.Module):
    W_Q: jax.Array
    W_K: jax.Array
    W_V: jax.Array
    W_O: jax.Array | None
    log_ridge: jax.Array | None
    kind: str = eqx.field(static=True)
    causal: bool = eqx.field(static=True)
    keys_from: str = eqx.field(static=True)
    scaled: bool = eqx.field(static=True)
    mesa_method: str = eqx.field(static=True)
    rope_base: float | None = eqx.field(static=True, default=None)

    def __init__(self, d_model: int, n_heads: int, d_head: int, kind: str, causal: bool, keys_from: str,
                 scaled: bool, init: str, init_scale: float, mesa_ridge: float = 1.0, mesa_method: str = "scan",
                 out_proj: bool = True, rope_base: float | None = None, *, key: jax.Array):
        kq, kk, kv, ko = jax.random.split(key, 4)
        shape_in = (n_heads, d_model, d_head)
        self.W_Q = init_weight(kq, shape_in, d_model, init, init_scale)
        self.W_K = init_weight(kk, shape_in, d_model, init, init_scale)
        self.W_V = init_weight(kv, shape_in, d_model, init, init_scale)
        # Without an output projection the heads' outputs, concatenated, are added to the stream as they are
        # (Reddy 2024's model; n_heads·d_head = d_model). `W_O` is then None and `output_matrix` the identity.
        self.W_O = init_weight(ko, (n_heads, d_head, d_model), n_heads * d_head, init, init_scale) if out_proj else None
        self.kind, self.causal, self.keys_from, self.scaled = kind, causal, keys_from, scaled
        if kind == "mesa" and not mesa_ridge > 0:
            raise ValueError(f"mesa_ridge = {mesa_ridge!r} is not allowed; the ridge λ must be > 0")
        self.log_ridge = jnp.full(n_heads, math.log(mesa_ridge)) if kind == "mesa" else None
        self.mesa_method = mesa_method
        self.rope_base = rope_base  # None: no rotary positions

    def __call__(self, x: jax.Array, hooks: Hooks, prefix: str, last_only: bool = False) -> jax.Array:
        """x: [pos, d_model] -> [pos, d_model]; with last_only, only the last position's output [1, d_model]."""
        # A mesa query needs the Gram matrix of every key before it, so it always computes all positions.
        queries = x[-1:] if last_only and self.kind != "mesa" else x
        q = hooks(prefix + "hook_q", jnp.einsum("pm,hmd->phd", queries, self.W_Q))
        k = hooks(prefix + "hook_k", jnp.einsum("pm,hmd->phd", x, self.W_K))
        v = hooks(prefix + "hook_v", jnp.einsum("pm,hmd->phd", x, self.W_V))
        if self.rope_base is not None:
            pos = jnp.arange(x.shape[0])
            q = hooks(prefix + "hook_rot_q", rope(q, pos[x.shape[0] - q.shape[0]:], self.rope_base))
            k = hooks(prefix + "hook_rot_k", rope(k, pos, self.rope_base))
        if self.kind == "mesa":
            q = hooks(prefix + "hook_q_precond", self.precondition(q, k, v))
            if last_only:
                q = q[-1:]
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
        return jnp.einsum("qhd,hdm->qm", z, self.output_matrix)

    @property
    def output_matrix(self) -> jax.Array:
        """W_O [head, d_head, d_model]; the fixed split of the identity when the layer has no output projection."""
        if self.W_O is not None:
            return self.W_O
        n_heads, _, d_head = self.W_Q.shape
        return jnp.eye(n_heads * d_head, dtype=self.W_Q.dtype).reshape(n_heads, d_head, n_heads * d_head)

    @property
    def ridge(self) -> jax.Array:
        """λ per head (mesa only)."""
        return jnp.exp(self.log_ridge)

    def precondition(self, q: jax.Array, k: jax.Array, v: jax.Array) -> jax.Array:
        """q̃_t = (Σ_{t'≤t} k kᵀ + λI)⁻¹ q_t per head, [pos, head, d_head]."""
        fn = MESA_METHODS[self.mesa_method]
        check_finite(q, k, v)  # here, because inside the vmap below the values are tracers
        heads_first = lambda a: jnp.swapaxes(a, 0, 1)  # noqa: E731
        _, q_pre = jax.vmap(fn)(heads_first(q), heads_first(k), heads_first(v), self.ridge)
        return heads_first(q_pre)
