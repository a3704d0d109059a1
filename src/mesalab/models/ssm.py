"""A Mamba-style selective state-space mixer (layer kind "ssm"; Gu & Dao 2023, "Mamba: Linear-Time Sequence Modeling
with Selective State Spaces", Algorithm 2 and §3.6).

Why this SSM: Akyürek et al. 2024 compare against Mamba as their strongest non-attention model (reference/icll.md
§1.6: ≈ 0.85 greedy accuracy at N = 2.5k, against the Transformer's ≈ 0.93 and S4D's ≈ 0.53), and Mamba's
*selective* (input-dependent) Δ, B and C are what separates it from the fixed diagonal SSMs (S4D) that do poorly
there; so the selective scan is the closer match to the paper's comparison. Their layer is `mamba_ssm.Mamba` with
its defaults d_state 16, d_conv 4, expand 2 (seq_icl `src/models/sequence/rnn/mamba.py`), in a pre-LN residual stack
without MLPs (`lm_simple_noffn`: TransformerConfig(attention="ssm", d_mlp=0, layer_norm=True)). This module writes
that block from the paper's definition (not from the CUDA kernel):

    [x̃ z] = x W_in                                   x̃, z [pos, d_inner], d_inner = ssm_expand · d_model
    u     = SiLU(causal depthwise conv(x̃))            kernel ssm_conv per channel, with bias     (site hook_x)
    Δ     = softplus(u W_x,Δ W_dt + b_dt)              [pos, d_inner]; W_x,Δ: d_inner -> dt_rank  (site hook_delta)
    B, C  = u W_x,B,  u W_x,C                          [pos, d_state]                         (hook_B, hook_C)
    h_t   = exp(Δ_t A) ⊙ h_{t−1} + (Δ_t ⊙ u_t) B_tᵀ     [d_inner, d_state]; A = −exp(A_log), diagonal (hook_state)
    y_t   = h_t C_t + D ⊙ u_t                          [pos, d_inner]                              (site hook_y)
    out   = (y ⊙ SiLU(z)) W_out                        [pos, d_model]

A is discretised by zero-order hold (exp(ΔA)) and B by Euler (ΔB), as in Mamba's reference `selective_scan_ref`.
dt_rank = ⌈d_model / 16⌉. Initialisation is Mamba's: A_log = log(1 … d_state) in every channel (S4D-real), D = 1,
b_dt the inverse softplus of Δ₀ ~ log-uniform[0.001, 0.1], W_dt ~ U(±dt_rank^−½), the projections and the
convolution PyTorch's default U(±1/√fan_in); TransformerConfig.init / init_scale do not apply to this layer.
Parameters: d_model·2·d_inner + d_inner·(ssm_conv + 1) + d_inner·(dt_rank + 2·d_state) + (dt_rank + 1)·d_inner
+ d_inner·d_state + d_inner + d_inner·d_model (32 640 at d_model 64 with the defaults).

How the recurrence runs (TransformerConfig.ssm_scan). The states are d_state times larger than the layer's
activations, so storing them dominates the cost on a CPU (Mamba's kernel avoids it the same way, in SRAM):
  "fused" (default): one `lax.scan` whose step forms a_t = exp(Δ_t A), b_t = Δ_t u_t B_t and y_t = h_t C_t, so the
      states are never stored; the backward pass recomputes each step (`jax.checkpoint`). When hook_state is cached or
      intervened on, the states are materialised instead (by the sequential scan), as every site must be available.
  "sequential": materialise a and b for every position, then `lax.scan` h_t = a_t ⊙ h_{t−1} + b_t.
  "parallel": the same as a prefix scan, `lax.associative_scan` on the pairs (a, b).
All three give the same output (tests/test_mixers.py); benchmarks/mixers.py times them (2 layers, d_model 64,
batch 32, T = 256–512 on a 2-core CPU: "fused" ≈ 3.5× faster than the other two for forward + backward).

Sites (prefix blocks.{l}.ssm.): hook_x, hook_delta, hook_y [pos, d_inner]; hook_B, hook_C [pos, d_state];
hook_state [pos, d_inner, d_state], whose channel axis serves as the "head" axis of interventions (heads=… picks
channels). Like every site they hold what the rest of the network reads: intervening on hook_state changes y, not
later states. With "fused", hook_state exists only when it is cached or intervened on (a `Computed` intervention
elsewhere cannot read it from env).
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp

from mesalab.models.config import SSM_SCANS
from mesalab.models.hooks import Hooks



def _uniform(key: jax.Array, shape: tuple[int, ...], bound: float) -> jax.Array:
    return jax.random.uniform(key, shape, minval=-bound, maxval=bound)


def linear_recurrence(a: jax.Array, b: jax.Array, method: str = "parallel") -> jax.Array:
    """States h_t = a_t ⊙ h_{t−1} + b_t with h_{−1} = 0, over the leading (position) axis of a and b."""
    if method == "sequential":
        def step(h, ab):
            h = ab[0] * h + ab[1]
            return h, h
        return jax.lax.scan(step, jnp.zeros_like(b[0]), (a, b))[1]

    def combine(left, right):  # (a₁, b₁) then (a₂, b₂): h ↦ a₂(a₁h + b₁) + b₂
        return left[0] * right[0], right[0] * left[1] + right[1]
    return jax.lax.associative_scan(combine, (a, b))[1]


def fused_scan(delta: jax.Array, u: jax.Array, B: jax.Array, C: jax.Array, A: jax.Array) -> jax.Array:
    """y_t = h_t C_t with h_t = exp(Δ_t A) ⊙ h_{t−1} + (Δ_t ⊙ u_t) B_tᵀ, without storing the states: [pos, d_inner]."""
    @jax.checkpoint  # the backward recomputes a step's state from its carry rather than storing every state
    def step(h, inp):
        d, x, b, c = inp
        h = jnp.exp(d[:, None] * A) * h + (d * x)[:, None] * b[None, :]
        return h, h @ c
    # Not unrolled: unroll=8 saved ≈ 25% of this scan's time in isolation but quadrupled the compile time (≈ 3 s ->
    # 12 s for the 2-layer benchmark model), and compiling dominates short runs.
    return jax.lax.scan(step, jnp.zeros(A.shape, u.dtype), (delta, u, B, C))[1]


def causal_depthwise_conv(x: jax.Array, w: jax.Array, bias: jax.Array) -> jax.Array:
    """out_t = Σ_k w[:, k] ⊙ x_{t−K+1+k} + bias, x [pos, ch], w [ch, K]; zeros before the sequence (PyTorch's
    Conv1d(groups=ch, padding=K−1) cut to the first pos outputs, as Mamba does)."""
    k = w.shape[1]
    padded = jnp.concatenate([jnp.zeros((k - 1, x.shape[1]), x.dtype), x], axis=0)
    return sum(padded[j:j + x.shape[0]] * w[:, j] for j in range(k)) + bias


class SelectiveSSM(eqx.Module):
    """The selective SSM mixer: x [pos, d_model] -> [pos, d_model]; causal by construction."""

    W_in: jax.Array
    conv_w: jax.Array
    conv_b: jax.Array
    W_x: jax.Array
    W_dt: jax.Array
    b_dt: jax.Array
    A_log: jax.Array
    D: jax.Array
    W_out: jax.Array
    scan: str = eqx.field(static=True)
    kind: str = eqx.field(static=True, default="ssm")
    SITE_PREFIX = "ssm."  # its sites are blocks.{l}.ssm.hook_*
    SITES = ("ssm.hook_x", "ssm.hook_delta", "ssm.hook_B", "ssm.hook_C", "ssm.hook_state", "ssm.hook_y")

    def __init__(self, d_model: int, d_state: int = 16, expand: int = 2, d_conv: int = 4, scan: str = "fused",
                 *, key: jax.Array):
        if scan not in SSM_SCANS:
            raise ValueError(f"scan = {scan!r} is not allowed; expected one of {', '.join(map(repr, SSM_SCANS))}")
        d_inner, rank = expand * d_model, math.ceil(d_model / 16)
        k_in, k_cw, k_cb, k_x, k_dt, k_db, k_out = jax.random.split(key, 7)
        self.W_in = _uniform(k_in, (d_model, 2 * d_inner), 1 / math.sqrt(d_model))
        self.conv_w = _uniform(k_cw, (d_inner, d_conv), 1 / math.sqrt(d_conv))
        self.conv_b = _uniform(k_cb, (d_inner,), 1 / math.sqrt(d_conv))
        self.W_x = _uniform(k_x, (d_inner, rank + 2 * d_state), 1 / math.sqrt(d_inner))
        self.W_dt = _uniform(k_dt, (rank, d_inner), rank ** -0.5)
        dt0 = jnp.exp(jax.random.uniform(k_db, (d_inner,), minval=math.log(1e-3), maxval=math.log(1e-1)))
        dt0 = jnp.maximum(dt0, 1e-4)
        self.b_dt = dt0 + jnp.log(-jnp.expm1(-dt0))  # softplus(b_dt) = dt0
        self.A_log = jnp.log(jnp.tile(jnp.arange(1, d_state + 1, dtype=jnp.float32), (d_inner, 1)))
        self.D = jnp.ones(d_inner)
        self.W_out = _uniform(k_out, (d_inner, d_model), 1 / math.sqrt(d_inner))
        self.scan = scan

    @property
    def dims(self) -> tuple[int, int, int]:
        """(d_inner, d_state, dt_rank)."""
        return self.A_log.shape[0], self.A_log.shape[1], self.W_dt.shape[0]

    def __call__(self, x: jax.Array, hooks: Hooks, prefix: str, last_only: bool = False) -> jax.Array:
        """x: [pos, d_model] -> [pos, d_model]; with last_only, the last position's output [1, d_model] (the scan
        still runs over every position)."""
        d_inner, d_state, rank = self.dims
        xz = x @ self.W_in
        u, z = xz[:, :d_inner], xz[:, d_inner:]
        u = hooks(prefix + "hook_x", jax.nn.silu(causal_depthwise_conv(u, self.conv_w, self.conv_b)))
        proj = u @ self.W_x
        delta = hooks(prefix + "hook_delta", jax.nn.softplus(proj[:, :rank] @ self.W_dt + self.b_dt))
        B = hooks(prefix + "hook_B", proj[:, rank:rank + d_state])
        C = hooks(prefix + "hook_C", proj[:, rank + d_state:])
        A = -jnp.exp(self.A_log)  # [d_inner, d_state]
        site = prefix + "hook_state"
        if self.scan == "fused" and site not in hooks.wanted and site not in hooks.interventions:
            y = fused_scan(delta, u, B, C, A)
        else:
            decay = jnp.exp(delta[:, :, None] * A)  # [pos, d_inner, d_state]
            drive = (delta * u)[:, :, None] * B[:, None, :]
            h = hooks(site, linear_recurrence(decay, drive, "parallel" if self.scan == "parallel" else "sequential"))
            y = jnp.einsum("pin,pn->pi", h, C)
        y = hooks(prefix + "hook_y", y + self.D * u)
        out = y * jax.nn.silu(z)
        return (out[-1:] if last_only else out) @ self.W_out

