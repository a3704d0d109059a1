"""One linear self-attention layer that performs one gradient-descent step (von Oswald et al. 2023, reference/mesa.md
§1.4).

In the paper's column convention, with tokens e = [x; y]: W_K = W_Q = [[I, 0], [0, 0]], W_V = [[0, 0], [0, −1]]
(from W_0 = 0) and P = (η/N)·I. The query [x_q; 0] then ends with y slot −(η/N) Σ_i y_i x_iᵀ x_q = −ŷ_GD, which is why
the model reads its prediction as the negative y slot.
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
    if cfg.d_model != d + 1 or cfg.d_in is not None:
        raise ConfigError(f"TransformerConfig.d_model = {cfg.d_model} cannot hold the GD construction for d = {d}; "
                          f"expected d_model = {d + 1} (tokens [x, y]) and no input embedding")
    if cfg.d_head < d + 1:
        raise ConfigError(f"TransformerConfig.d_head = {cfg.d_head} is smaller than the GD construction needs; "
                          f"expected d_head >= {d + 1} (key size d + 1)")
    if cfg.attention[0] != "linear" or cfg.causal or cfg.keys_from != "context" or cfg.n_heads < 1:
        raise ConfigError("the GD construction needs linear, non-causal attention with keys_from='context'; got "
                          f"attention={cfg.attention}, causal={cfg.causal}, keys_from={cfg.keys_from!r}")
    if task.token_format != "constructed":
        raise ConfigError(f"RegressionConfig.token_format = {task.token_format!r}: the GD construction needs "
                          "'constructed' tokens [x_i, y_i]")


def gd_lsa(cfg: TransformerConfig, task: RegressionConfig, eta: float) -> Transformer:
    """A 1-layer LSA whose read-out equals one GD step from W_0 = 0 with learning rate η (head 0; other heads off)."""
    check_gd_capacity(cfg, task)
    d, k = task.d, cfg.d_head
    model = Transformer(cfg, key=jax.random.PRNGKey(0))
    model = eqx.tree_at(lambda m: m.blocks[0].attn, model, jax.tree_util.tree_map(jnp.zeros_like, model.blocks[0].attn))
    # Row convention (q = e @ W_Q): each matrix below is the transpose of the paper's.
    w_qk = jnp.zeros((d + 1, k)).at[jnp.arange(d), jnp.arange(d)].set(1.0)
    w_v = jnp.zeros((d + 1, k)).at[d, d].set(-1.0)
    w_o = jnp.zeros((k, d + 1)).at[d, d].set(eta / task.n_context)
    return set_head(model, 0, 0, W_Q=w_qk, W_K=w_qk, W_V=w_v, W_O=w_o)
