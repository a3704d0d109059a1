"""Metrics of SAEs on attention outputs (Kissane et al. 2024; /work/shared/reference/induction.md §5.3; code
ckkissane/attention-output-saes `common/utils.py`; SAELens `evals.py`).

- L0: mean number of non-zero features per token.
- Feature frequency and dead fraction: the share of tokens on which each feature fires; a feature is dead when its
  frequency is ≤ a threshold (0: never fired; Kissane also logs < 1e-6 and < 1e-5).
- Explained variance: 1 − Σ‖x − x̂‖² / Σ‖x − x̄‖², pooled over tokens, x̄ the per-dimension mean of the batch
  (SAELens's "legacy" per-batch form; Kissane's training loop does not compute it).
- Loss recovered: (L_zero − L_SAE) / (L_zero − L_clean), where L is the model's own loss (`train.loss.default_loss`:
  cross-entropy or ½·MSE, the task's loss_kind), L_zero has the site zero-ablated and L_SAE has it replaced by the
  SAE's reconstruction — Kissane's "recons score" / SAELens's ce_loss_score with zero ablation as the baseline. The
  replacement is an intervention (`sae_replacement`, a `hooks.Computed`), so it runs inside the model's forward.
- Head attribution: for a hook_z SAE, the share of each decoder row's squared norm in each head's d_head block
  (Kissane's weight-based head attribution; rows are unit norm, so the shares sum to 1).
- Direct feature attribution (DFA) to source positions: hook_z is z[q, h] = Σ_s pattern[h, q, s] v[s, h], so the
  encoder's input term z·W_enc[:, i] splits linearly over source positions s (and heads h):
  DFA[q, s, h] = pattern[h, q, s] · v[s, h] · W_enc[h block, i]. Summed over s and h it is the pre-activation
  less b_enc[i] plus b_dec·W_enc[:, i] (the bias terms are not attributed), as in Kissane's DFA, which decomposes the
  feature's pre-activation by source position through the attention pattern.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import equinox as eqx
import jax
import jax.numpy as jnp

from mesalab.analysis.sae import SAE, site_activations
from mesalab.models import hooks
from mesalab.train.loss import default_loss


def l0(f: jax.Array) -> jax.Array:
    """Mean count of non-zero features per token, f [..., tokens, d_sae] -> [...]."""
    return jnp.mean(jnp.sum(f > 0, axis=-1), axis=-1)


def feature_frequency(f: jax.Array) -> jax.Array:
    """Share of tokens on which each feature fires, f [..., tokens, d_sae] -> [..., d_sae]."""
    return jnp.mean(f > 0, axis=-2)


def dead_fraction(frequency: jax.Array, threshold: float = 0.0) -> jax.Array:
    """Share of features whose frequency is ≤ threshold, [..., d_sae] -> [...]."""
    return jnp.mean(frequency <= threshold, axis=-1)


def explained_variance(x: jax.Array, x_hat: jax.Array) -> jax.Array:
    """1 − Σ‖x − x̂‖² / Σ‖x − x̄‖² over tokens [..., tokens, d_in] -> [...]."""
    resid = jnp.sum((x - x_hat) ** 2, axis=(-2, -1))
    total = jnp.sum((x - jnp.mean(x, axis=-2, keepdims=True)) ** 2, axis=(-2, -1))
    return 1.0 - resid / total


def head_attribution(w_dec: jax.Array, n_heads: int) -> jax.Array:
    """[..., d_sae, n_heads]: each decoder row's squared norm per head block over its total (a hook_z SAE's d_in is
    n_heads·d_head, heads outermost as in the concatenation)."""
    blocks = w_dec.reshape(*w_dec.shape[:-1], n_heads, w_dec.shape[-1] // n_heads)
    sq = jnp.sum(blocks ** 2, axis=-1)
    return sq / jnp.sum(sq, axis=-1, keepdims=True)


def _reconstruct(x: jax.Array, env: Any, sae: SAE) -> jax.Array:
    flat = x.reshape(x.shape[0], -1)
    return sae(flat)[0].reshape(x.shape)


def sae_replacement(sae: SAE, positions: Any = None) -> hooks.Computed:
    """An intervention that replaces a site's activation [pos, ...] by the SAE's reconstruction (trailing axes
    flattened to d_in, e.g. hook_z's heads concatenated), optionally at some positions only."""
    idx = None if positions is None else jnp.atleast_1d(jnp.asarray(positions, jnp.int32))
    return hooks.Computed(_reconstruct, sae, positions=idx)


def loss_recovered(model: Any, sae: SAE, batch: Any, site: str, *, loss_fn: Callable | None = None,
                   task: Any = None, positions: Any = None) -> dict[str, jax.Array]:
    """Clean, zero-ablation and SAE losses of the model on a batch and the share of loss recovered,
    (L_zero − L_SAE) / (L_zero − L_clean). loss_fn(model, batch, interventions) defaults to the task's own loss.
    positions: where the site is replaced and ablated (None: everywhere)."""
    loss_fn = loss_fn or default_loss(task)
    clean = loss_fn(model, batch, None)
    zero = loss_fn(model, batch, {site: hooks.zero_ablate(positions=positions)})
    with_sae = loss_fn(model, batch, {site: sae_replacement(sae, positions)})
    return {"loss_clean": clean, "loss_zero": zero, "loss_sae": with_sae,
            "loss_recovered": (zero - with_sae) / (zero - clean)}


def evaluate(model: Any, saes: SAE, task: Any, site: str, *, key: jax.Array, batch_size: int = 256,
             positions: tuple[int, ...] = (), loss_fn: Callable | None = None,
             dead_threshold: float = 0.0) -> dict[str, jax.Array]:
    """Every scalar metric of a stacked ensemble of SAEs (leading member axis) on one batch drawn from `task`:
    {l0, mse, explained_variance, dead_fraction, loss_clean, loss_zero, loss_sae, loss_recovered}, each [E]."""
    program = _evaluation(task, site, batch_size, tuple(positions), loss_fn, float(dead_threshold))
    return program(model, saes, key)


@functools.lru_cache(maxsize=32)
def _evaluation(task: Any, site: str, batch_size: int, positions: tuple[int, ...], loss_fn: Callable | None,
                dead_threshold: float) -> Callable:
    def program(model, saes, key):
        batch = task.sample(key, batch_size)
        x = site_activations(model, site, batch.inputs, positions)

        def one(sae: SAE) -> dict[str, jax.Array]:
            x_hat, f = sae(x)
            out = {"l0": l0(f), "mse": jnp.mean(jnp.sum((x - x_hat) ** 2, axis=-1)),
                   "explained_variance": explained_variance(x, x_hat),
                   "dead_fraction": dead_fraction(feature_frequency(f), dead_threshold)}
            lr = loss_recovered(model, sae, batch, site, loss_fn=loss_fn, task=task, positions=positions or None)
            return out | lr

        return jax.vmap(one)(saes)

    return eqx.filter_jit(program)


def dfa_from_cache(pattern: jax.Array, v: jax.Array, sae: SAE, feature: int | jax.Array) -> jax.Array:
    """DFA[q, s, h] of one feature on one sequence from its attention pattern [head, q, s] and values [s, head,
    d_head] (see the module docstring)."""
    n_heads, d_head = v.shape[-2], v.shape[-1]
    w = sae.W_enc[:, feature].reshape(n_heads, d_head)
    return jnp.einsum("hqs,sh->qsh", pattern, jnp.einsum("shd,hd->sh", v, w))


def dfa_by_source(pattern: jax.Array, v: jax.Array, w_enc: jax.Array) -> jax.Array:
    """DFA of every feature at once, summed over heads: [..., q, s, d_sae] from patterns [..., head, q, s], values
    [..., s, head, d_head] and the encoder W_enc [head·d_head, d_sae] (dfa_from_cache for all features; leading batch
    axes broadcast)."""
    w = w_enc.reshape(v.shape[-2], v.shape[-1], -1)
    return jnp.einsum("...hqs,...shf->...qsf", pattern, jnp.einsum("...shd,hdf->...shf", v, w))


def direct_feature_attribution(model: Any, sae: SAE, layer: int, tokens: jax.Array,
                               feature: int | jax.Array) -> dict[str, jax.Array]:
    """DFA of one feature of an SAE on `blocks.{layer}.attn.hook_z`, for one sequence tokens [pos, d_in]:
    {"dfa": [q, s, h], "pre": the feature's pre-activation [q], "bias": its unattributed part b_enc − b_dec·W_enc}."""
    prefix = f"blocks.{layer}.attn."
    _, cache = model.run_with_cache(tokens, [prefix + "hook_pattern", prefix + "hook_v", prefix + "hook_z"])
    z = cache[prefix + "hook_z"].reshape(tokens.shape[0], -1)
    bias = sae.b_enc[feature] - sae.b_dec @ sae.W_enc[:, feature]
    return {"dfa": dfa_from_cache(cache[prefix + "hook_pattern"], cache[prefix + "hook_v"], sae, feature),
            "pre": sae.pre(z)[:, feature], "bias": bias}
