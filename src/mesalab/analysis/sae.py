"""Sparse autoencoders (SAEs) on attention outputs, trained as a vmapped ensemble on activations streamed from a
frozen model (Kissane et al. 2024, "Interpreting attention layer outputs with sparse autoencoders";
/work/shared/reference/induction.md §5; code ckkissane/attention-output-saes `common/torch_modules/autoencoder.py`,
`train.py`, `common/utils.py`; SAELens `saes/standard_sae.py`).

The SAE (reference §5.2):

    f = ReLU((x − b_dec) W_enc + b_enc),     x̂ = f W_dec + b_dec,
    loss = ‖x − x̂‖² (summed over d_in, averaged over tokens) + λ·Σ_i f_i·w_i (averaged over tokens),

with w_i = 1 (Kissane) or w_i = ‖W_dec[i]‖ (SAELens's StandardSAE, `l1_weighting="decoder_norm"`). x is one layer's
`blocks.{l}.attn.hook_z` [pos, head, d_head] concatenated over heads, d_in = n_heads·d_head (reference §5.1). The
decoder rows are kept at unit norm: before each optimizer step the gradient component parallel to each row is
removed, after it the rows are renormalised (Kissane's `make_decoder_weights_and_grad_unit_norm` renormalises just
before the step instead, so his forward pass sees the rows as the previous step left them, off unit norm by one
step's update; here every forward pass sees unit rows, as SAELens's `set_decoder_norm_to_unit_norm` after the step). Because the
rows are unit norm after every step, the two L1 weightings give the same loss and the same projected gradient;
the option exists so the loss reads as SAELens's does. Adam with β₁ = 0, β₂ = 0.9999 (lr 1.2e-3); W_enc and W_dec
Kaiming-uniform, W_dec rows then normalised, biases zero (b_dec's geometric-median init is not offered).

Learning rate: Kissane's "cosine_warmup" runs a cosine from 0.1·lr up to lr over the first 1000 steps, then stays at
lr; after every resampling that found dead features the warm-up restarts (train.py steps the scheduler back to its
minimum). Here `warmup_steps` / `warmup_from` give the same shape, restarting per member after its resamplings.

Resampling (Kissane's "anthropic" scheme, `common/utils.py:anthropic_resample`, after Anthropic's "Towards
Monosemanticity"): every `resample_every` steps, at most `max_resamples` times, a feature whose firing frequency
since the previous resampling is ≤ `dead_threshold` is dead. `resample_batches` fresh batches are drawn; each token's
squared reconstruction error e gives it the probability e² / Σe²; one token per dead feature is drawn without
replacement (Gumbel top-k). The dead feature's decoder row becomes the unit vector along x − b_dec, its encoder
column that vector × 0.2 × the mean encoder-column norm of the live features, its encoder bias 0; Adam's moments
for those entries are zeroed (Kissane's `reset_optimizer`). Nothing is resampled if every error is < 1e-6.

The ensemble: members are every (λ, seed) pair of the config, member i = (l1_coeffs[i // len(seeds)],
seeds[i % len(seeds)]). All members see the same activation stream (one data key; the frozen model runs once per
step and every SAE learns from the same tokens), so members differ only in λ and initial weights — a paired design.
One compiled `lax.scan` runs `chunk_steps` steps; the member axis is a `vmap` inside each step, and the resampling is
a `lax.cond` on the (shared) step counter, so only steps that resample pay for it. Everything random lives in the
state, so `train_saes(..., state=result.state)` continues a run to the same numbers as an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from typing import Any, Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pandas as pd

from mesalab.config import (
    FRACTION, NONNEGATIVE_INT, POSITIVE, POSITIVE_INT, ConfigError, config, number, one_of, require, tuple_of,
)
from mesalab.models.run import run as run_model


@config
class SAEConfig:
    """One ensemble of SAEs on one site. Defaults are Kissane's `train.py` unless noted (reference §5.2).

    site:          the hook_z site, e.g. "blocks.1.attn.hook_z" (any [pos, ...] site works; trailing axes flatten).
    expansion:     d_sae = expansion · d_in (Kissane's dict_mult 32).
    l1_coeffs, seeds: the ensemble is their product (see the module docstring). Kissane: λ 0.5; his released GPT-2
                   Small SAEs use 0.8–3.0.
    steps, batch_size: optimizer steps; sequences per step (tokens per step = batch_size × positions used; Kissane
                   uses 4096 tokens per step, 1e8 tokens in all).
    positions:     the positions whose activations are used (empty: all).
    lr, b1, b2, eps: Adam (1.2e-3, 0, 0.9999; eps PyTorch's 1e-8).
    warmup_steps, warmup_from: cosine warm-up from warmup_from·lr to lr (Kissane 1000 steps from 0.1).
    l1_warmup_steps: λ ramps linearly from 0 over these steps (SAELens's l1_warm_up_steps; Kissane: none, 0).
    l1_weighting:  "none" (Kissane) or "decoder_norm" (SAELens).
    resample_every, max_resamples, dead_threshold, resample_scale: the resampling (Kissane's released SAEs: every
                   25,000 steps, 4 times; frequency ≤ 1e-6; scale 0.2). resample_every 0: never.
    resample_batches: batches pooled for the resampling draw (Kissane: 100 × 4096 tokens); batches × tokens per
                   batch must be ≥ d_sae.
    chunk_steps:   steps per compiled call; the history records each chunk's last step.
    """

    site: str = "blocks.1.attn.hook_z"
    expansion: int = 32
    l1_coeffs: tuple[float, ...] = (0.5,)
    seeds: tuple[int, ...] = (0,)
    steps: int = 24_414
    batch_size: int = 64
    positions: tuple[int, ...] = ()
    lr: float = 1.2e-3
    b1: float = 0.0
    b2: float = 0.9999
    eps: float = 1e-8
    warmup_steps: int = 1000
    warmup_from: float = 0.1
    l1_warmup_steps: int = 0
    l1_weighting: str = "none"
    resample_every: int = 25_000
    max_resamples: int = 4
    dead_threshold: float = 1e-6
    resample_scale: float = 0.2
    resample_batches: int = 4
    chunk_steps: int = 500

    RULES = {
        **dict.fromkeys(("expansion", "steps", "batch_size", "chunk_steps", "resample_batches"), POSITIVE_INT),
        **dict.fromkeys(("warmup_steps", "l1_warmup_steps", "resample_every", "max_resamples"), NONNEGATIVE_INT),
        "l1_coeffs": tuple_of(number(0.0), "numbers >= 0", nonempty=True),
        "seeds": tuple_of(NONNEGATIVE_INT, "integers >= 0", nonempty=True),
        "positions": tuple_of(NONNEGATIVE_INT, "integers >= 0"),
        "lr": POSITIVE, "eps": POSITIVE, "resample_scale": POSITIVE,
        "b1": number(0.0, 1.0, open_high=True), "b2": number(0.0, 1.0, open_high=True),
        "warmup_from": FRACTION, "dead_threshold": FRACTION,
        "l1_weighting": one_of("none", "decoder_norm"),
    }

    def __post_init__(self) -> None:
        require(self, "site", isinstance(self.site, str) and self.site.startswith("blocks."),
                "a site name such as 'blocks.1.attn.hook_z'")
        require(self, "seeds", len(set(self.seeds)) == len(self.seeds), "distinct seeds")

    @property
    def members(self) -> list[tuple[float, int]]:
        """(λ, seed) of each ensemble member, in member order."""
        return [(float(l1), int(s)) for l1 in self.l1_coeffs for s in self.seeds]


class SAE(eqx.Module):
    """A standard SAE (reference §5.2). Acts on [..., d_in]; leading axes broadcast. Shapes as SAELens stores them:
    W_enc [d_in, d_sae], b_enc [d_sae], W_dec [d_sae, d_in], b_dec [d_in]."""

    W_enc: jax.Array
    b_enc: jax.Array
    W_dec: jax.Array
    b_dec: jax.Array

    def pre(self, x: jax.Array) -> jax.Array:
        """Encoder pre-activations (x − b_dec) W_enc + b_enc."""
        return (x - self.b_dec) @ self.W_enc + self.b_enc

    def encode(self, x: jax.Array) -> jax.Array:
        return jax.nn.relu(self.pre(x))

    def decode(self, f: jax.Array) -> jax.Array:
        return f @ self.W_dec + self.b_dec

    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(x̂, f)."""
        f = self.encode(x)
        return self.decode(f), f

    @property
    def d_in(self) -> int:
        return self.W_enc.shape[-2]

    @property
    def d_sae(self) -> int:
        return self.W_enc.shape[-1]


def init_sae(d_in: int, d_sae: int, *, key: jax.Array) -> SAE:
    """Kaiming-uniform W_enc and W_dec (PyTorch's kaiming_uniform_: bound √(6/fan_in) with fan_in = size(1)), W_dec
    rows normalised, zero biases (Kissane's AutoEncoder.__init__)."""
    ke, kd = jax.random.split(key)
    w_enc = jax.random.uniform(ke, (d_in, d_sae), minval=-1.0, maxval=1.0) * math.sqrt(6.0 / d_sae)
    w_dec = jax.random.uniform(kd, (d_sae, d_in), minval=-1.0, maxval=1.0) * math.sqrt(6.0 / d_in)
    return SAE(w_enc, jnp.zeros(d_sae), unit_rows(w_dec), jnp.zeros(d_in))


def unit_rows(w: jax.Array) -> jax.Array:
    return w / jnp.linalg.norm(w, axis=-1, keepdims=True)


def remove_parallel_grad(grad_dec: jax.Array, w_dec: jax.Array) -> jax.Array:
    """The decoder gradient with each row's component along that (normalised) decoder row removed (Kissane's
    make_decoder_weights_and_grad_unit_norm; SAELens's remove_gradient_parallel_to_decoder_directions)."""
    w = unit_rows(w_dec)
    return grad_dec - jnp.sum(grad_dec * w, axis=-1, keepdims=True) * w


def sae_loss(sae: SAE, x: jax.Array, l1: jax.Array, weighting: str = "none") -> tuple[jax.Array, dict]:
    """(loss, parts) on tokens x [N, d_in]: ‖x − x̂‖² summed over d_in and λ·Σ f·w, both averaged over tokens."""
    x_hat, f = sae(x)
    mse = jnp.mean(jnp.sum((x_hat - x) ** 2, axis=-1))
    w = jnp.linalg.norm(sae.W_dec, axis=-1) if weighting == "decoder_norm" else 1.0
    sparsity = jnp.mean(jnp.sum(jnp.abs(f) * w, axis=-1))
    return mse + l1 * sparsity, {"mse": mse, "l1": sparsity, "l0": jnp.mean(jnp.sum(f > 0, axis=-1)), "f": f}


def site_activations(model: Any, site: str, inputs: jax.Array, positions: tuple[int, ...] = ()) -> jax.Array:
    """The site's activations on a batch [B, pos, ...] as tokens [B·P, d_in] (hook_z concatenated over heads, as
    Kissane's concat_heads and SAELens's activations store do), P the chosen positions (all when empty)."""
    _, cache = run_model(model, inputs, sites=[site])
    acts = cache[site]
    if positions:
        acts = acts[:, jnp.asarray(positions)]
    return acts.reshape(acts.shape[0] * acts.shape[1], -1)


def warmup_factor(cfg: SAEConfig, since: jax.Array) -> jax.Array:
    """The learning-rate multiplier `since` steps after the start or the last effective resampling."""
    if not cfg.warmup_steps:
        return jnp.ones_like(since, jnp.float32)
    t = jnp.minimum(since.astype(jnp.float32) / cfg.warmup_steps, 1.0)
    return cfg.warmup_from + (1.0 - cfg.warmup_from) * 0.5 * (1.0 - jnp.cos(jnp.pi * t))


def adam(cfg: SAEConfig) -> optax.GradientTransformation:
    """Adam's direction without the learning rate (the step applies lr × warm-up)."""
    return optax.scale_by_adam(b1=cfg.b1, b2=cfg.b2, eps=cfg.eps)


def member_step(cfg: SAEConfig, sae: SAE, opt: Any, since: jax.Array, l1: jax.Array, x: jax.Array,
                step: jax.Array) -> tuple[SAE, Any, jax.Array, dict]:
    """One optimizer step of one SAE on tokens x: grad → remove the part parallel to the decoder rows → Adam →
    step → renormalise the decoder rows."""
    ramp = jnp.minimum((step + 1.0) / cfg.l1_warmup_steps, 1.0) if cfg.l1_warmup_steps else 1.0
    (loss, parts), grads = jax.value_and_grad(sae_loss, has_aux=True)(sae, x, l1 * ramp, cfg.l1_weighting)
    grads = eqx.tree_at(lambda s: s.W_dec, grads, remove_parallel_grad(grads.W_dec, sae.W_dec))
    updates, opt = adam(cfg).update(grads, opt, sae)
    lr = cfg.lr * warmup_factor(cfg, since)
    sae = jax.tree_util.tree_map(lambda p, u: p - lr * u, sae, updates)
    sae = eqx.tree_at(lambda s: s.W_dec, sae, unit_rows(sae.W_dec))
    return sae, opt, since + 1, {"loss": loss, "mse": parts["mse"], "l0": parts["l0"], "fired": parts["f"] > 0}


def resample_member(cfg: SAEConfig, sae: SAE, opt: Any, fired: jax.Array, tokens: jax.Array, since: jax.Array,
                    x: jax.Array, key: jax.Array) -> tuple[SAE, Any, jax.Array, jax.Array]:
    """Kissane's / Anthropic's resampling of the dead features of one SAE on a pool of tokens x [N, d_in] (see the
    module docstring); returns (sae, opt, since, number resampled)."""
    dead = fired / jnp.maximum(tokens, 1) <= cfg.dead_threshold
    x_hat, _ = sae(x)
    err = jnp.sum((x - x_hat) ** 2, axis=-1)
    go = jnp.any(dead) & (jnp.max(err) >= 1e-6)
    weights = err ** 2
    gumbel = jax.random.gumbel(key, err.shape)
    logp = jnp.where(weights > 0, jnp.log(jnp.where(weights > 0, weights, 1.0)), -jnp.inf)
    _, picks = jax.lax.top_k(logp + gumbel, sae.d_sae)  # without replacement, ∝ e²
    rank = jnp.clip(jnp.cumsum(dead) - 1, 0, sae.d_sae - 1)
    v = x[picks[rank]] - sae.b_dec
    v = v / (jnp.linalg.norm(v, axis=-1, keepdims=True) + 1e-8)
    alive = ~dead
    enc_norms = jnp.linalg.norm(sae.W_enc, axis=0)
    alive_norm = jnp.where(jnp.any(alive), jnp.sum(enc_norms * alive) / jnp.maximum(jnp.sum(alive), 1), 1.0)
    col = dead & go  # [d_sae]: the features that change
    new = SAE(jnp.where(col[None, :], v.T * alive_norm * cfg.resample_scale, sae.W_enc),
              jnp.where(col, 0.0, sae.b_enc), jnp.where(col[:, None], v, sae.W_dec), sae.b_dec)
    zero = SAE(jnp.where(col[None, :], 0.0, 1.0), jnp.where(col, 0.0, 1.0), jnp.where(col[:, None], 0.0, 1.0),
               jnp.ones_like(sae.b_dec))

    def reset(state):
        if isinstance(state, optax.ScaleByAdamState):
            def mask(m):
                return jax.tree_util.tree_map(lambda a, z: a * z, m, zero)
            return state._replace(mu=mask(state.mu), nu=mask(state.nu))
        return state

    opt = jax.tree_util.tree_map(reset, opt, is_leaf=lambda s: isinstance(s, optax.ScaleByAdamState))
    return new, opt, jnp.where(go, 0, since), jnp.sum(col)


@dataclasses.dataclass
class SAEResult:
    """saes: the stacked ensemble (leading member axis); members: (λ, seed) per member; history: long format
    (step, member, l1, seed, metric, value); state: pass back to `train_saes` to continue."""

    saes: SAE
    members: list[tuple[float, int]]
    history: pd.DataFrame
    state: dict
    seconds: float

    def member(self, i: int) -> SAE:
        return jax.tree_util.tree_map(lambda a: a[i], self.saes)


def init_state(cfg: SAEConfig, d_in: int, data_seed: int = 0) -> dict:
    """The training state: stacked SAEs and Adam states, per-member counters, the shared data key, and each member's
    λ ("l1", from cfg.members; data, not a constant of the program, so one compiled program serves any λ, e.g. a
    vmap over models that each get their own)."""
    members = cfg.members
    keys = jnp.stack([jax.random.fold_in(jax.random.PRNGKey(s), 2) for _, s in members])
    saes = jax.vmap(lambda k: init_sae(d_in, cfg.expansion * d_in, key=k))(keys)
    e, d_sae = len(members), cfg.expansion * d_in
    return {"sae": saes, "opt": jax.vmap(adam(cfg).init)(saes), "key": jax.random.PRNGKey(data_seed),
            "fired": jnp.zeros((e, d_sae), jnp.int32), "tokens": jnp.zeros((), jnp.int32),
            "since": jnp.zeros(e, jnp.int32), "step": jnp.zeros((), jnp.int32),
            "resamples": jnp.zeros((), jnp.int32), "resampled": jnp.zeros(e, jnp.int32),
            "seen": jnp.zeros((e, d_sae), jnp.int32), "seen_tokens": jnp.zeros((), jnp.int32),
            "l1": jnp.asarray([l1 for l1, _ in members], jnp.float32)}


@functools.lru_cache(maxsize=64)
def chunk_program(cfg: SAEConfig, task: Any, n_steps: int) -> Callable:
    """jit((state, model) -> (state, per-step metrics {name: [n_steps, E]})): n_steps SAE steps in one lax.scan,
    each drawing a batch from `task`, running the frozen model for the site's activations, stepping every member
    (vmap) and resampling when due. Cached per (config, task, length), so continuing a run compiles nothing new."""
    def acts(model, key):
        return jax.lax.stop_gradient(site_activations(model, cfg.site, task.sample(key, cfg.batch_size).inputs,
                                                      cfg.positions))

    def resample(state, model):
        key, *subs = jax.random.split(state["key"], cfg.resample_batches + 2)
        pool = jnp.concatenate([acts(model, k) for k in subs[1:]])
        keys = jax.random.split(subs[0], len(cfg.members))
        sae, opt, since, n = jax.vmap(
            lambda s, o, f, si, k: resample_member(cfg, s, o, f, state["tokens"], si, pool, k))(
            state["sae"], state["opt"], state["fired"], state["since"], keys)
        return {**state, "sae": sae, "opt": opt, "since": since, "key": key, "fired": jnp.zeros_like(state["fired"]),
                "tokens": jnp.zeros_like(state["tokens"]), "resamples": state["resamples"] + 1,
                "resampled": state["resampled"] + n}

    def step(model, state, _):
        key, sub = jax.random.split(state["key"])
        x = acts(model, sub)
        sae, opt, since, out = jax.vmap(lambda s, o, si, l1: member_step(cfg, s, o, si, l1, x, state["step"]))(
            state["sae"], state["opt"], state["since"], state["l1"])
        fired = jnp.sum(out.pop("fired"), axis=1)
        state = {**state, "sae": sae, "opt": opt, "since": since, "key": key, "step": state["step"] + 1,
                 "fired": state["fired"] + fired, "tokens": state["tokens"] + x.shape[0],
                 "seen": state["seen"] + fired, "seen_tokens": state["seen_tokens"] + x.shape[0]}
        if cfg.resample_every:
            due = (state["step"] % cfg.resample_every == 0) & (state["resamples"] < cfg.max_resamples)
            state = jax.lax.cond(due, lambda s: resample(s, model), lambda s: s, state)
        return state, out

    def program(state, model):  # the chunk's own firing counts (for its dead fraction) start at zero
        state = {**state, "seen": jnp.zeros_like(state["fired"]), "seen_tokens": jnp.zeros_like(state["tokens"])}
        model = jax.lax.stop_gradient(model)
        return jax.lax.scan(functools.partial(step, model), state, None, length=n_steps)

    return eqx.filter_jit(program)


def train_saes(cfg: SAEConfig, model: Any, task: Any, *, state: dict | None = None, data_seed: int = 0,
               stop_after: int | None = None) -> SAEResult:
    """Train the ensemble of SAEs on `cfg.site` of the frozen `model`, with batches from `task.sample(key, B)`.

    state: a previous result's state, to continue it (the result matches an uninterrupted run); stop_after: end after
    that many steps in all (a chunk boundary). History rows: train_loss, train_mse, train_l0 at each chunk's last step,
    dead_fraction (firing frequency ≤ dead_threshold over the chunk's training tokens) and resampled (features
    resampled so far)."""
    probe = jax.eval_shape(lambda k: site_activations(model, cfg.site, task.sample(k, cfg.batch_size).inputs,
                                                      cfg.positions), jax.random.PRNGKey(0))
    tokens, d_in = probe.shape
    if cfg.resample_every and cfg.resample_batches * tokens < cfg.expansion * d_in:
        raise ConfigError(f"SAEConfig.resample_batches = {cfg.resample_batches} is not allowed; expected at least "
                          f"{-(-cfg.expansion * d_in // tokens)} (the pool of {tokens} tokens per batch must hold "
                          f"d_sae = {cfg.expansion * d_in} tokens to draw one per dead feature)",
                          owner="SAEConfig", field="resample_batches", value=cfg.resample_batches)
    state = init_state(cfg, d_in, data_seed) if state is None else state
    records: list[tuple] = []
    total = cfg.steps if stop_after is None else min(stop_after, cfg.steps)
    t0 = time.perf_counter()
    while int(state["step"]) < total:
        n = min(cfg.chunk_steps, total - int(state["step"]))
        state, out = chunk_program(cfg, task, n)(state, model)
        step = int(state["step"])
        dead = np.asarray(state["seen"]) <= cfg.dead_threshold * int(state["seen_tokens"])
        values = {"train_loss": np.asarray(out["loss"][-1]), "train_mse": np.asarray(out["mse"][-1]),
                  "train_l0": np.asarray(out["l0"][-1]), "dead_fraction": dead.mean(axis=1),
                  "resampled": np.asarray(state["resampled"])}
        if not np.all(np.isfinite(values["train_loss"])):
            raise FloatingPointError(f"SAE training diverged by step {step}: train_loss = {values['train_loss']}")
        records += [(step, i, l1, s, k, float(v[i])) for k, v in values.items()
                    for i, (l1, s) in enumerate(cfg.members)]
    history = pd.DataFrame(records, columns=["step", "member", "l1", "seed", "metric", "value"])
    return SAEResult(state["sae"], cfg.members, history, state, time.perf_counter() - t0)
