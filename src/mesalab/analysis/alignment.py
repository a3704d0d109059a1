"""How closely a trained model computes what an algorithm computes (von Oswald et al. 2023 §3; reference/mesa.md
§1.6).

- prediction difference: mean |ŷ_A − ŷ_B| over tasks;
- sensitivity: ∂ŷ/∂x_q, the gradient of the prediction with respect to the query's input — the linear model each
  predictor applies to the query. Cosine (1e-8 added to the norms, as the authors' code) and L2 difference;
- weight interpolation: average the trained layer's products W_KᵀW_Q and PW_V with the construction's, after
  removing the scale symmetry (W_KᵀW_Q → W_KᵀW_Q / c, PW_V → c · PW_V, with c the mean of the x-block
  diagonal), and score the averaged model.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from mesalab.models.transformer import Transformer
from mesalab.models.weights import ov, qk, set_head


def query_sensitivity(predict_one: Callable[[jax.Array], jax.Array], inputs: jax.Array, d: int) -> jax.Array:
    """∂ŷ/∂x_q for each sequence: gradients of predict_one(tokens) -> scalar w.r.t. the last token's first d
    entries. inputs [B, T, width] -> [B, d]."""
    return jax.vmap(jax.grad(predict_one))(inputs)[:, -1, :d]


def alignment(pred_a: jax.Array, pred_b: jax.Array, sens_a: jax.Array, sens_b: jax.Array) -> dict[str, jax.Array]:
    """pred_diff, sens_cos and sens_l2 between two predictors, averaged over tasks."""
    cos = jnp.sum(sens_a * sens_b, -1) / ((jnp.linalg.norm(sens_a, axis=-1) + 1e-8) * (jnp.linalg.norm(sens_b, axis=-1) + 1e-8))
    return {
        "pred_diff": jnp.mean(jnp.abs(pred_a - pred_b)),
        "sens_cos": jnp.mean(cos),
        "sens_l2": jnp.mean(jnp.linalg.norm(sens_a - sens_b, axis=-1)),
    }


def model_alignment(model: Transformer, reference: Transformer, inputs: jax.Array, d: int) -> dict[str, jax.Array]:
    """`alignment` of two models' query predictions (e.g. a trained stack and a construction) on a batch of token
    sequences [B, T, width]; d: the query's input slots."""
    pa, pb = jax.vmap(model.predict_last)(inputs)[:, 0], jax.vmap(reference.predict_last)(inputs)[:, 0]
    sa = query_sensitivity(lambda t: model.predict_last(t)[0], inputs, d)
    sb = query_sensitivity(lambda t: reference.predict_last(t)[0], inputs, d)
    return alignment(pa, pb, sa, sb)


def normalized_products(model: Transformer, d: int, layer: int = 0, head: int = 0) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(W_KᵀW_Q / c, c · PW_V, c) with c the mean diagonal of the x-block of W_KᵀW_Q: the representative of the
    K-Q / V-P scale symmetry that the construction (x-block = I) uses."""
    a, b = qk(model, layer, head), ov(model, layer, head)
    c = jnp.mean(jnp.diag(a[:d, :d]))
    return a / c, b * c, c


def lsa_from_products(like: Transformer, qk_mat: jax.Array, ov_mat: jax.Array, layer: int = 0) -> Transformer:
    """A copy of a 1-head LSA whose head has the given W_KᵀW_Q and PW_V (needs d_head = d_model): W_Q = I,
    W_K = qkᵀ-side, W_V = ovᵀ, W_O = I in mesalab's row convention."""
    eye = jnp.eye(qk_mat.shape[0])
    model = set_head(like, layer, 0, W_Q=eye, W_K=qk_mat, W_V=ov_mat.T, W_O=eye)
    return model


def interpolate_products(trained: Transformer, construction: Transformer, d: int) -> Transformer:
    """The model with (normalised trained + construction) / 2 products, for a 1-layer, 1-head LSA."""
    qa, oa, _ = normalized_products(trained, d)
    qb, ob = qk(construction, 0, 0), ov(construction, 0, 0)
    return lsa_from_products(trained, (qa + qb) / 2, (oa + ob) / 2)


def x_block_offdiag_ratio(qk_mat: jax.Array, d: int) -> jax.Array:
    """Mean |off-diagonal| over mean |diagonal| of the x-block: 0 when the block is a multiple of I."""
    if d < 2:
        return jnp.zeros(())  # a 1×1 block is always a multiple of I
    block = qk_mat[:d, :d]
    off = jnp.abs(block - jnp.diag(jnp.diag(block)))
    return jnp.sum(off) / (d * (d - 1)) / jnp.mean(jnp.abs(jnp.diag(block)))
