"""A transformer stack with a named site at every intermediate (see `models.hooks`).

    x ─ embed [─(+) input_mlp] (+ positions) ─ hook_embed ─┬─ block 0 ─ … ─ block L−1 ─ [ln_final] ─ unembed ─ out
    block l:  resid_pre ─ [ln1] ─ attn ─ attn_out ─(+)─ resid_mid ─ [ln2 ─ mlp ─ mlp_out ─(+)] ─ [clip] ─ resid_post

`attn` is the layer's sequence mixer: attention, or an LSTM, selective SSM or hard-wired n-gram layer
(TransformerConfig.attention; models.recurrent, models.ssm, models.ngram).
`out` is the site `hook_out`. `__call__` takes one unbatched sequence [pos, d_in]; batch with `jax.vmap` or
`models.run`. FromPass interventions (two-pass clamps, grafts; see `models.hooks`) are resolved by first passes
inside `__call__` / `run_with_cache`.
"""

from __future__ import annotations

from typing import Iterable, Mapping

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from mesalab.models.attention import Attention, init_weight
from mesalab.models.config import TransformerConfig, ngram_order
from mesalab.models.computed import resolve_passes
from mesalab.models.hooks import OUTPUT_SITES, SITE_AXES, Hooks, Intervention
from mesalab.models.ngram import NGram
from mesalab.models.recurrent import LSTM
from mesalab.models.ssm import SelectiveSSM

# Site prefixes of the sequence mixers; a mixer other than attention lists its own sites in `SITES`.
MIXER_PREFIXES = ("attn.", "lstm.", "ssm.")


def make_mixer(cfg: TransformerConfig, kind: str, scaled: bool, *, key: jax.Array):
    """The sequence mixer of a layer of this kind: Attention, or an LSTM / SelectiveSSM / NGram (same call)."""
    if kind == "lstm":
        return LSTM(cfg.d_model, key=key)
    if kind == "ssm":
        return SelectiveSSM(cfg.d_model, cfg.ssm_state, cfg.ssm_expand, cfg.ssm_conv, cfg.ssm_scan, key=key)
    if ngram_order(kind) is not None:
        return NGram(cfg.d_model, ngram_order(kind), key=key)
    return Attention(cfg.d_model, cfg.n_heads, cfg.d_head, kind, cfg.causal, cfg.keys_from, scaled,
                     cfg.init, cfg.init_scale, cfg.mesa_ridge, cfg.mesa_method, cfg.out_proj,
                     cfg.rope_base if cfg.pos_embedding == "rope" else None, key=key)


class MLP(eqx.Module):
    W_in: jax.Array
    b_in: jax.Array
    W_out: jax.Array
    b_out: jax.Array
    activation: str = eqx.field(static=True)

    def __init__(self, d_model: int, d_mlp: int, activation: str, init: str, init_scale: float, *, key: jax.Array):
        k1, k2 = jax.random.split(key)
        self.W_in = init_weight(k1, (d_model, d_mlp), d_model, init, init_scale)
        self.b_in = jnp.zeros(d_mlp)
        self.W_out = init_weight(k2, (d_mlp, d_model), d_mlp, init, init_scale)
        self.b_out = jnp.zeros(d_model)
        self.activation = activation

    def __call__(self, x: jax.Array, hooks: Hooks, prefix: str) -> jax.Array:
        pre = hooks(prefix + "hook_pre", x @ self.W_in + self.b_in)
        act = jax.nn.gelu(pre) if self.activation == "gelu" else jax.nn.relu(pre)
        return hooks(prefix + "hook_post", act) @ self.W_out + self.b_out


class ClassifierLayer(eqx.Module):
    """relu(x W + b) with one scalar bias b for the whole layer (Reddy 2024's classifier; He-normal W)."""

    W: jax.Array
    b: jax.Array

    def __init__(self, width: int, *, key: jax.Array):
        self.W = init_weight(key, (width, width), width, "fan_in", 2.0)
        self.b = jnp.zeros(())

    def __call__(self, x: jax.Array) -> jax.Array:
        return jax.nn.relu(x @ self.W + self.b)


class Block(eqx.Module):
    attn: Attention | LSTM | SelectiveSSM | NGram  # the layer's sequence mixer (TransformerConfig.attention)
    mlp: MLP | None
    ln1: eqx.nn.LayerNorm | None
    ln2: eqx.nn.LayerNorm | None
    clip: float = eqx.field(static=True)
    residual_scale: float = eqx.field(static=True)

    def __init__(self, cfg: TransformerConfig, layer: int, *, key: jax.Array):
        ka, km = jax.random.split(key)
        kind = cfg.layer_kinds[layer]
        # Mesa scores are never scaled: out_t must stay the ridge prediction Φ_t q_t.
        scaled = (cfg.scale_scores == "all" and kind != "mesa") or (cfg.scale_scores == "softmax" and kind == "softmax")
        self.attn = make_mixer(cfg, kind, scaled, key=ka)
        self.mlp = MLP(cfg.d_model, cfg.d_mlp, cfg.mlp_activation, cfg.init, cfg.init_scale, key=km) if cfg.d_mlp else None
        self.ln1 = eqx.nn.LayerNorm(cfg.d_model) if cfg.layer_norm else None
        self.ln2 = eqx.nn.LayerNorm(cfg.d_model) if cfg.layer_norm and cfg.d_mlp else None
        self.clip, self.residual_scale = cfg.clip, cfg.residual_scale

    def __call__(self, x: jax.Array, hooks: Hooks, prefix: str, last_only: bool = False) -> jax.Array:
        resid = hooks(prefix + "hook_resid_pre", x)
        h = jax.vmap(self.ln1)(resid) if self.ln1 is not None else resid
        mixer = prefix + getattr(self.attn, "SITE_PREFIX", "attn.")
        attn_out = hooks(prefix + "hook_attn_out", self.attn(h, hooks, mixer, last_only))
        if last_only:
            resid = resid[-1:]
        resid = hooks(prefix + "hook_resid_mid", resid + self.residual_scale * attn_out)
        if self.mlp is not None:
            h = jax.vmap(self.ln2)(resid) if self.ln2 is not None else resid
            resid = resid + hooks(prefix + "hook_mlp_out", self.mlp(h, hooks, prefix + "mlp."))
        if self.clip:
            resid = jnp.clip(resid, -self.clip, self.clip)
        return hooks(prefix + "hook_resid_post", resid)


def sinusoidal_positions(max_len: int, d_model: int) -> np.ndarray:
    """The fixed sine/cosine code of Vaswani et al. 2017, [max_len, d_model]."""
    pos = np.arange(max_len)[:, None]
    freq = np.exp(-np.log(10000.0) * (np.arange(0, d_model, 2) / d_model))
    out = np.zeros((max_len, d_model), np.float32)
    out[:, 0::2] = np.sin(pos * freq)
    out[:, 1::2] = np.cos(pos * freq)[:, : d_model // 2]
    return out


class Transformer(eqx.Module):
    cfg: TransformerConfig = eqx.field(static=True)
    W_E: jax.Array | None
    input_mlp: MLP | None
    W_pos: jax.Array | None
    blocks: tuple[Block, ...]
    ln_final: eqx.nn.LayerNorm | None
    classifier: tuple[ClassifierLayer, ...]
    W_U: jax.Array | None

    def __init__(self, cfg: TransformerConfig, *, key: jax.Array):
        ke, kp, kb, ku = jax.random.split(key, 4)
        # The classifier's keys come from the unembedding's, so models without one draw exactly as before.
        ku, kc = jax.random.split(ku) if cfg.classifier_layers else (ku, ku)
        # Likewise the input MLP's come from the embedding's.
        ke, ki = jax.random.split(ke) if cfg.d_input_mlp else (ke, ke)
        self.cfg = cfg
        self.W_E = init_weight(ke, (cfg.d_in, cfg.token_width), cfg.d_in, cfg.init, cfg.init_scale) if cfg.d_in else None
        self.input_mlp = (MLP(cfg.token_width, cfg.d_input_mlp, cfg.mlp_activation, cfg.init, cfg.init_scale, key=ki)
                          if cfg.d_input_mlp else None)
        if cfg.pos_embedding == "learned":
            self.W_pos = init_weight(kp, (cfg.max_len, cfg.d_model), cfg.d_model, cfg.init, cfg.init_scale)
        else:
            self.W_pos = None
        self.blocks = tuple(Block(cfg, i, key=k) for i, k in enumerate(jax.random.split(kb, cfg.n_layers)))
        self.ln_final = eqx.nn.LayerNorm(cfg.d_model) if cfg.layer_norm else None
        self.classifier = tuple(ClassifierLayer(cfg.d_model, key=k) for k in jax.random.split(kc, cfg.classifier_layers))
        self.W_U = init_weight(ku, (cfg.d_model, cfg.d_out), cfg.d_model, cfg.init, cfg.init_scale) if cfg.d_out else None

    # ---- sites -------------------------------------------------------------------------------------------------
    def site_names(self) -> list[str]:
        """Every named site of this model, in forward order."""
        names = ["input_mlp.hook_pre", "input_mlp.hook_post"] if self.input_mlp is not None else []
        names += ["hook_embed"] + (["hook_pos_embed"] if self.cfg.pos_embedding not in ("none", "rope") else [])
        for layer, block in enumerate(self.blocks):
            for suffix in SITE_AXES:
                if suffix in ("hook_embed", "hook_pos_embed"):
                    continue
                if (suffix.startswith("mlp.") or suffix == "hook_mlp_out") and block.mlp is None:
                    continue
                own = getattr(block.attn, "SITES", None)  # None: attention, whose sites are the attn.* rows
                if suffix.startswith(MIXER_PREFIXES) and (suffix not in own if own is not None
                                                          else not suffix.startswith("attn.")):
                    continue
                if suffix == "attn.hook_q_precond" and block.attn.kind != "mesa":
                    continue
                if suffix in ("attn.hook_rot_q", "attn.hook_rot_k") and block.attn.rope_base is None:
                    continue
                names.append(f"blocks.{layer}.{suffix}")
        return names + [f"classifier.{i}.hook_post" for i in range(len(self.classifier))]

    # ---- forward -----------------------------------------------------------------------------------------------
    def __call__(self, x: jax.Array, *, interventions: Mapping[str, Intervention] | None = None) -> jax.Array:
        """x: [pos, d_in] -> output [pos, d_out]."""
        return self.forward(x, self._hooks(x, interventions, ()))

    def run_with_cache(
        self, x: jax.Array, sites: Iterable[str] | str = "all", *,
        interventions: Mapping[str, Intervention] | None = None,
    ) -> tuple[jax.Array, dict[str, jax.Array]]:
        """Output and a dict of the requested sites (names or glob patterns; "all" for every site; `hook_out` by
        name only)."""
        hooks = self._hooks(x, interventions, sites)
        return self.forward(x, hooks), hooks.cache

    def _hooks(self, x: jax.Array, interventions, sites) -> Hooks:
        return Hooks(self.site_names(), resolve_passes(self, x, interventions), sites, tokens=x, extra=OUTPUT_SITES)

    def predict(self, x: jax.Array, *, interventions: Mapping[str, Intervention] | None = None) -> jax.Array:
        """The read-out prediction [pos, readout_size] (see TransformerConfig.readout_*)."""
        return self.readout(self(x, interventions=interventions))

    def predict_last(self, x: jax.Array) -> jax.Array:
        """The read-out at the last position only [readout_size]. The last layer then computes one query row
        instead of all of them, which is most of the work in a 1-layer model trained on the query alone."""
        return self.readout(self.forward(x, Hooks(self.site_names(), None, (), tokens=x), last_only=True)[-1])

    def readout(self, out: jax.Array) -> jax.Array:
        return self.cfg.readout_sign * out[..., self.cfg.prediction_slice]

    def forward(self, x: jax.Array, hooks: Hooks, last_only: bool = False) -> jax.Array:
        """The forward pass; `last_only` (no interventions or cache on the last layer) returns [1, d_out]."""
        cfg = self.cfg
        if x.ndim != 2 or x.shape[-1] != cfg.input_width:
            raise ValueError(
                f"Transformer expects one sequence of shape [pos, {cfg.input_width}], got {tuple(x.shape)}; "
                "batch with jax.vmap or mesalab.models.run"
            )
        h = x @ self.W_E if self.W_E is not None else x
        if self.input_mlp is not None:
            h = h + self.input_mlp(h, hooks, "input_mlp.")
        h = hooks("hook_embed", h)
        if cfg.pos_embedding not in ("none", "rope"):  # rotary positions act inside attention
            if cfg.max_len and x.shape[0] > cfg.max_len:
                raise ValueError(f"sequence of length {x.shape[0]} exceeds TransformerConfig.max_len = {cfg.max_len}")
            if cfg.pos_embedding == "concat_sinusoidal":
                code = jnp.asarray(sinusoidal_positions(x.shape[0], cfg.pos_dim))
                h = jnp.concatenate([h, hooks("hook_pos_embed", code)], axis=-1)
            else:
                table = self.W_pos if self.W_pos is not None else jnp.asarray(sinusoidal_positions(x.shape[0], cfg.d_model))
                h = h + hooks("hook_pos_embed", table[: x.shape[0]])
        last = len(self.blocks) - 1
        for layer, block in enumerate(self.blocks):
            h = block(h, hooks, f"blocks.{layer}.", last_only and layer == last)
        if self.ln_final is not None:
            h = jax.vmap(self.ln_final)(h)
        for i, layer in enumerate(self.classifier):
            h = hooks(f"classifier.{i}.hook_post", layer(h))
        return hooks("hook_out", h @ self.W_U if self.W_U is not None else h)
