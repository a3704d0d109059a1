"""Linear self-attention stacks that *are* gradient descent (von Oswald et al. 2023, reference/mesa.md §1.4).

In the paper's column convention, with tokens e = [x; y], layer l of the GD construction has
W_K = W_Q = [[I, 0], [0, 0]], W_V = [[0, 0], [0, −1]] (from W_0 = 0) and P = (η_l/N)·I, so every token's y slot
becomes y_j − W_l x_j and the query's becomes −ŷ after l steps; the model reads its prediction as the negative y
slot. GD++ adds W_V x-block I and P x-block −γ_l·I, which transforms every x by (I − γ_l XᵀX).
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from mesalab.config import ConfigError
from mesalab.models.config import TransformerConfig
from mesalab.models.transformer import Transformer
from mesalab.models.weights import set_head
from mesalab.tasks.regression import RegressionConfig


def check_gd_capacity(cfg: TransformerConfig, task: RegressionConfig) -> None:
    """Reject model configs that cannot hold the GD construction, naming the field and what it needs."""
    d = task.d
    if cfg.d_model != d + 1 or cfg.d_in is not None or cfg.d_out is not None:
        raise ConfigError(f"TransformerConfig.d_model = {cfg.d_model} cannot hold the GD construction for d = {d}; "
                          f"expected d_model = {d + 1} (tokens [x, y]) and no embeddings")
    if cfg.d_head < d + 1:
        raise ConfigError(f"TransformerConfig.d_head = {cfg.d_head} is smaller than the GD construction needs; "
                          f"expected d_head >= {d + 1} (key size d + 1)")
    if any(k != "linear" for k in cfg.layer_kinds) or cfg.causal or cfg.keys_from != "context":
        raise ConfigError("the GD construction needs linear, non-causal attention with keys_from='context'; got "
                          f"attention={cfg.attention}, causal={cfg.causal}, keys_from={cfg.keys_from!r}")
    if cfg.d_mlp or cfg.layer_norm or cfg.clip or cfg.residual_scale != 1.0:
        raise ConfigError("the GD construction needs a plain attention-only stack (d_mlp=0, layer_norm=False, "
                          "clip=0, residual_scale=1)")
    if task.token_format != "constructed":
        raise ConfigError(f"RegressionConfig.token_format = {task.token_format!r}: the GD construction needs "
                          "'constructed' tokens [x_i, y_i]")


def _per_layer(values, n_layers: int, name: str) -> jax.Array:
    v = jnp.atleast_1d(jnp.asarray(values, jnp.float32))
    if v.shape[0] == 1:
        v = jnp.repeat(v, n_layers)
    if v.shape[0] != n_layers:
        raise ConfigError(f"{name} has {v.shape[0]} values for {n_layers} layers; give one or one per layer")
    return v


def gd_plus_plus_lsa(cfg: TransformerConfig, task: RegressionConfig, etas, gammas) -> Transformer:
    """An n_layers LSA stack equal to GD++ with per-layer (η_l, γ_l); head 0 of each layer, other heads off."""
    check_gd_capacity(cfg, task)
    d, k = task.d, cfg.d_head
    etas, gammas = _per_layer(etas, cfg.n_layers, "etas"), _per_layer(gammas, cfg.n_layers, "gammas")
    model = Transformer(cfg, key=jax.random.PRNGKey(0))
    model = jax.tree_util.tree_map(lambda x: jnp.zeros_like(x) if eqx.is_array(x) else x, model)
    x_slots = jnp.arange(d)
    # Row convention (q = e @ W_Q): each matrix below is the transpose of the paper's.
    w_qk = jnp.zeros((d + 1, k)).at[x_slots, x_slots].set(1.0)
    for layer in range(cfg.n_layers):
        w_v = jnp.zeros((d + 1, k)).at[d, d].set(-1.0).at[x_slots, x_slots].set(1.0)
        w_o = jnp.zeros((k, d + 1)).at[d, d].set(etas[layer] / task.n_context).at[x_slots, x_slots].set(-gammas[layer])
        model = set_head(model, layer, 0, W_Q=w_qk, W_K=w_qk, W_V=w_v, W_O=w_o)
    return model


def gd_lsa(cfg: TransformerConfig, task: RegressionConfig, etas) -> Transformer:
    """An n_layers LSA stack equal to n_layers GD steps from W_0 = 0 (step l with learning rate etas[l])."""
    return gd_plus_plus_lsa(cfg, task, etas, 0.0)


def gd_step_head(model: Transformer, eta: float, n_context: int, layer: int = 0, head: int = 0) -> Transformer:
    """A copy of `model` whose head (layer, head) is one GD step from W_0 = 0 at learning rate η on whatever the
    residual stream holds: its last feature is the y slot, all others the inputs (von Oswald et al. 2023 §5, where
    the inputs are features from a learned input MLP and the authors' "MLP + GD" keeps this head fixed at η = 0.1).
    Needs linear, non-causal attention with keys_from="context", d_head ≥ d_model and an output projection."""
    cfg = model.cfg
    width, k = cfg.d_model, cfg.d_head
    if cfg.layer_kinds[layer] != "linear" or cfg.causal or cfg.keys_from != "context":
        raise ConfigError("gd_step_head needs linear, non-causal attention with keys_from='context'; got "
                          f"attention={cfg.attention}, causal={cfg.causal}, keys_from={cfg.keys_from!r}")
    if k < width or not cfg.out_proj:
        raise ConfigError(f"gd_step_head needs d_head >= d_model (here {k} < {width}) and out_proj=True")
    d = width - 1
    x_slots = jnp.arange(d)
    w_qk = jnp.zeros((width, k)).at[x_slots, x_slots].set(1.0)
    w_v = jnp.zeros((width, k)).at[d, d].set(-1.0)
    w_o = jnp.zeros((k, width)).at[d, d].set(eta / n_context)
    return set_head(model, layer, head, W_Q=w_qk, W_K=w_qk, W_V=w_v, W_O=w_o)
