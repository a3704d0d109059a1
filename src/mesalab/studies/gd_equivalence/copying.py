"""Interleaved tokens x_1, y_1, …, x_N, y_N, x_q (von Oswald et al. 2023 §5; reference/mesa.md §1.5–1.6): a
2-layer model whose first layer is softmax attention learns to copy each y_i into the token of its x_i, so that
the second (linear) layer can run a GD step on the pairs — the link to induction heads.

The copy is read off layer 1's attention output at each x token k: the norm of its Jacobian with respect to the
token itself (own), the next token (k + 1, which holds y_i) and every other token (mean per token).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mesalab.models.config import TransformerConfig
from mesalab.models.transformer import Transformer
from mesalab.studies.gd_equivalence.one_layer import eval_curve
from mesalab.studies.protocol import RunContext
from mesalab.tasks.regression import RegressionConfig
from mesalab.train import Trainer, member_of
from mesalab.train.config import adam_warmup_cosine


def copy_model(task: RegressionConfig, pos_dim: int, init_scale: float = 0.01) -> TransformerConfig:
    """The authors' model (reference/mesa.md §1.5, normal_token_construct): softmax then linear attention, one head
    each, key size = width, non-causal, keys from the context; a sinusoidal code of width pos_dim concatenated to
    the raw tokens (no embedding), and the prediction read as −(the query's y slot), as in the 1-layer LSA."""
    width = task.token_width + pos_dim
    return TransformerConfig(
        d_model=width, n_layers=2, n_heads=1, d_head=width, attention=("softmax", "linear"), causal=False,
        keys_from="context", pos_embedding="concat_sinusoidal", pos_dim=pos_dim, init="fan_in",
        init_scale=init_scale, readout_start=task.d, readout_size=1, readout_sign=-1.0,
    )


def layer1_sensitivity(model: Transformer, tokens: jax.Array) -> jax.Array:
    """[3]: Jacobian norms of layer 1's attention output at the context x tokens with respect to the token itself,
    the next token (its y), and the most influential other context token (the query x_q, which keys never read,
    is left out), averaged over x tokens."""
    def attn_out(t):
        return model.run_with_cache(t, ["blocks.0.hook_attn_out"])[1]["blocks.0.hook_attn_out"]

    jac = jax.jacrev(attn_out)(tokens)  # [pos_out, d_model, pos_in, d_in]
    norms = jnp.sqrt(jnp.sum(jac**2, axis=(1, 3)))  # [pos_out, pos_in]
    t = tokens.shape[0]
    xs = jnp.arange(0, t - 1, 2)  # context x tokens (each followed by its y)
    own = norms[xs, xs]
    nxt = norms[xs, xs + 1]
    others = norms[xs][:, : t - 1]  # context tokens only
    mask = jnp.ones_like(others, bool).at[jnp.arange(xs.size), xs].set(False).at[jnp.arange(xs.size), xs + 1].set(False)
    other = jnp.max(jnp.where(mask, others, 0.0), axis=-1)
    return jnp.stack([own.mean(), nxt.mean(), other.mean()])


def run_copying(cfg: Any, ctx: RunContext, seed: int) -> dict[str, Any]:
    task = RegressionConfig(d=cfg.d, n_context=cfg.n_context, x_half_width=cfg.x_half_width,
                            token_format="interleaved")
    train = adam_warmup_cosine(cfg.copy_steps, cfg.copy_batch_size, cfg.copy_lr, b2=cfg.b2,
                               chunk_steps=cfg.chunk_steps, eval_batch_size=cfg.eval_batch_size)
    model = copy_model(task, cfg.copy_pos_dim, cfg.copy_init_scale)
    trainer = Trainer(task, functools.partial(Transformer, model), train)
    res = ctx.fit(trainer, cfg.seeds, "interleaved")
    batch = task.sample(jax.random.PRNGKey(seed), 64)
    sens = [np.asarray(jnp.mean(jax.vmap(functools.partial(layer1_sensitivity, member_of(res.models, i)))(batch.inputs),
                                axis=0)).tolist() for i in range(cfg.seeds)]
    final = res.history.query(f"metric == 'test_loss' and step == {res.step}").sort_values("member").value.to_numpy()
    return {"sensitivity": sens, "labels": ["own", "next", "other"], "loss": final.tolist(),
            "history": eval_curve(res)}
