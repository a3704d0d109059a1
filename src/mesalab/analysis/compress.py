"""Compressed algorithms (von Oswald et al. 2023b, "RevAlg"/"CompressedAlg-d"; reference/mesa.md §2.7).

Constructed tokens are made of `slots` blocks of d features ([pred, s_t, s_t, s_{t−1}] for the dynamics task).
Each head's W_KᵀW_Q and PW_V (papers' convention, `models.weights`) is a slots × slots grid of d × d blocks.
Compression replaces every block by (mean of its diagonal)·I_d: one scalar per (slot, slot) pair, so 2·slots²
scalars per head (16 + 16 for four slots). The compressed model runs the same forward pass with those products:
it has d_head = d_model and W_Q = I, W_K = compressed W_KᵀW_Q, W_V = (compressed PW_V)ᵀ, W_O = I.

For the 1-layer model on masked tokens [0, 0, s_t, s_{t−1}], only key/query slots {2, 3} and value slots {2, 3}
written into output slot 0 matter: 4 + 2 scalars per head, 12 for two heads. The score of key i at query t is
k_iᵀ M q_t with M = [[α, β], [η, γ]] (rows key slots s_i, s_{i−1}; columns query slots s_t, s_{t−1}); the η-term
pairs s_{i−1} with s_t and,
written with the value s_i, is exactly one GD step from W_0 = 0 on Σ_i ½‖W s_{i−1} − s_i‖² (`eta_term_rate`).
"""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from mesalab.models.transformer import Transformer
from mesalab.models.weights import all_ov, all_qk


def block_diagonal_means(mat: jax.Array, slots: int) -> jax.Array:
    """[..., slots·d, slots·d] -> [..., slots, slots]: the mean of the diagonal of each d × d block."""
    width = mat.shape[-1]
    if width % slots:
        raise ValueError(f"a width of {width} does not split into {slots} slots")
    d = width // slots
    blocks = mat.reshape(*mat.shape[:-2], slots, d, slots, d)
    return jnp.mean(jnp.diagonal(blocks, axis1=-3, axis2=-1), axis=-1)


def expand_blocks(scalars: jax.Array, d: int) -> jax.Array:
    """[..., slots, slots] -> [..., slots·d, slots·d]: each scalar times I_d (the inverse of the compression)."""
    return jnp.einsum("...ab,ij->...aibj", scalars, jnp.eye(d)).reshape(
        *scalars.shape[:-2], scalars.shape[-2] * d, scalars.shape[-1] * d)


def compressed_scalars(model: Transformer, slots: int) -> dict[str, jax.Array]:
    """{"qk": [layer, head, slots, slots] (rows key slots, columns query slots), "ov": same (rows output slots,
    columns value slots)}."""
    return {"qk": block_diagonal_means(all_qk(model), slots), "ov": block_diagonal_means(all_ov(model), slots)}


def model_from_products(model: Transformer, qk: jax.Array, ov: jax.Array) -> Transformer:
    """An attention-only model of the same depth and heads whose head products are qk, ov [layer, head, W, W]
    (papers' convention): d_head = d_model, W_Q = I, W_K = qk, W_V = ovᵀ, W_O = I."""
    cfg = model.cfg
    if cfg.d_in is not None or cfg.d_out is not None or cfg.d_mlp or cfg.layer_norm or cfg.pos_embedding != "none":
        raise ValueError("compression needs an attention-only model on constructed tokens (no embeddings, MLP, "
                         "LayerNorm or positions), like the authors' CompressedAlg")
    if "mesa" in cfg.layer_kinds:
        # A mesa head's Gram matrix Σ k kᵀ depends on W_K alone, not only on the products.
        raise ValueError("compression is defined for linear and softmax attention; mesa layers are not a function "
                         "of W_KᵀW_Q and PW_V alone")
    wide = Transformer(dataclasses.replace(cfg, d_head=cfg.d_model), key=jax.random.PRNGKey(0))
    eye = jnp.broadcast_to(jnp.eye(cfg.d_model), (cfg.n_heads, cfg.d_model, cfg.d_model))
    for layer, block in enumerate(model.blocks):
        attn = eqx.tree_at(
            lambda a: (a.W_Q, a.W_K, a.W_V, a.W_O, a.log_ridge), wide.blocks[layer].attn,
            (eye, qk[layer], jnp.swapaxes(ov[layer], -1, -2), eye, None), is_leaf=lambda x: x is None,
        )
        wide = eqx.tree_at(lambda m, i=layer: m.blocks[i].attn, wide, attn)
    return wide


def model_from_scalars(model: Transformer, qk_scalars: jax.Array, ov_scalars: jax.Array) -> Transformer:
    """An attention-only model whose products are the given block scalars [layer, head, slots, slots] ⊗ I."""
    d = model.cfg.d_model // qk_scalars.shape[-1]
    return model_from_products(model, expand_blocks(qk_scalars, d), expand_blocks(ov_scalars, d))


def interpolate(model: Transformer, slots: int, a: float) -> Transformer:
    """The model with products (1 − a)·trained + a·compressed: a = 0 is the trained model, a = 1 CompressedAlg."""
    s = compressed_scalars(model, slots)
    d = model.cfg.d_model // slots
    mix = lambda trained, scalars: (1 - a) * trained + a * expand_blocks(scalars, d)  # noqa: E731
    return model_from_products(model, mix(all_qk(model), s["qk"]), mix(all_ov(model), s["ov"]))


class Interpolated(eqx.Module):
    """A model whose heads average a trainable model's products with frozen ones: W_KᵀW_Q = (1 − a)·learned +
    a·frozen, PW_V likewise (the authors' interpolation experiment, `interpolator.py`, with a = ½: each layer
    averages the logits and outputs of learned heads and frozen CompressedAlg heads; reference/mesa.md §2.7).

    Train it with `Trainer(..., frozen=Interpolated.frozen_leaves)` and `fit(init=...)` holding per-member frozen
    products: only `model` learns. If the compressed heads capture the algorithm, the mixed model trains to the
    trained model's loss; the sites are those of the mixed model (d_head = d_model).
    """

    model: Transformer
    frozen_qk: jax.Array
    frozen_ov: jax.Array
    weight: float = eqx.field(static=True, default=0.5)

    @property
    def cfg(self):
        return self.model.cfg

    @staticmethod
    def frozen_leaves(m: "Interpolated") -> tuple[jax.Array, jax.Array]:
        return m.frozen_qk, m.frozen_ov

    def mixed(self) -> Transformer:
        a = self.weight
        qk = (1 - a) * all_qk(self.model) + a * jax.lax.stop_gradient(self.frozen_qk)
        ov = (1 - a) * all_ov(self.model) + a * jax.lax.stop_gradient(self.frozen_ov)
        return model_from_products(self.model, qk, ov)

    def __call__(self, x: jax.Array, *, interventions=None) -> jax.Array:
        return self.mixed()(x, interventions=interventions)

    def run_with_cache(self, x: jax.Array, sites="all", *, interventions=None):
        return self.mixed().run_with_cache(x, sites, interventions=interventions)

    def readout(self, out: jax.Array) -> jax.Array:
        return self.model.readout(out)

    def predict(self, x: jax.Array, *, interventions=None) -> jax.Array:
        return self.readout(self(x, interventions=interventions))


def interpolated(fresh: Transformer, trained: Transformer, slots: int, weight: float = 0.5) -> Interpolated:
    """`fresh` mixed with the frozen CompressedAlg products of `trained` (either may be a stacked ensemble)."""
    d = trained.cfg.d_model // slots
    qk = expand_blocks(block_diagonal_means(_stacked(all_qk, trained), slots), d)
    ov = expand_blocks(block_diagonal_means(_stacked(all_ov, trained), slots), d)
    return Interpolated(fresh, qk, ov, weight)


def _stacked(fn, model: Transformer) -> jax.Array:
    """fn(model), mapped over a leading ensemble axis when the model has one."""
    if model.blocks[0].attn.W_Q.ndim == 4:
        return eqx.filter_vmap(fn)(model)
    return fn(model)


def compress(model: Transformer, slots: int) -> Transformer:
    """CompressedAlg: the model rebuilt from its block-diagonal means."""
    s = compressed_scalars(model, slots)
    return model_from_scalars(model, s["qk"], s["ov"])


def compressed_parameter_count(model: Transformer, slots: int) -> int:
    """2·slots² scalars per head and layer."""
    return 2 * slots * slots * model.cfg.n_heads * model.cfg.n_layers


def acting_scalars(n_heads: int, slots: int, input_slots, output_slots) -> dict[str, np.ndarray]:
    """Masks {"qk", "ov"} [1, head, slots, slots] of the block scalars that can change a 1-layer model's prediction
    when its tokens are zero outside `input_slots` and its read-out takes `output_slots`: W_KᵀW_Q[key, query] with
    key and query slots both in input_slots, and PW_V[out, value] with out in output_slots and value in input_slots.
    Every other scalar multiplies a zero slot or writes where the read-out does not look."""
    inp = np.zeros(slots, bool)
    inp[list(input_slots)] = True
    out = np.zeros(slots, bool)
    out[list(output_slots)] = True
    qk = np.broadcast_to(inp[:, None] & inp[None, :], (1, n_heads, slots, slots)).copy()
    ov = np.broadcast_to(out[:, None] & inp[None, :], (1, n_heads, slots, slots)).copy()
    return {"qk": qk, "ov": ov}


def acting_parameter_count(model: Transformer, slots: int, input_slots, output_slots) -> int:
    """How many compressed scalars act in a 1-layer model (`acting_scalars`): n_heads · (|in|² + |out|·|in|), 12 for
    the paper's 2-head model on masked tokens [0, 0, s_t, s_{t−1}] read out from slot 0 (reference/mesa.md §2.7)."""
    if model.cfg.n_layers != 1:
        raise ValueError("acting scalars are defined for a 1-layer model; deeper layers write into every slot")
    masks = acting_scalars(model.cfg.n_heads, slots, input_slots, output_slots)
    return int(masks["qk"].sum() + masks["ov"].sum())


def eta_term_rate(scalars: dict[str, jax.Array], key_slot: int = 3, query_slot: int = 2, value_slot: int = 2,
                  out_slot: int = 0, layer: int = 0) -> jax.Array:
    """The GD learning rate of the η-terms summed over heads: Σ_h PW_V[out, value]_h · W_KᵀW_Q[key, query]_h.

    Defaults: keys read s_{i−1} (slot 3), queries s_t (slot 2), values s_i (slot 2), output the prediction slot 0.
    """
    return jnp.sum(scalars["ov"][layer, :, out_slot, value_slot] * scalars["qk"][layer, :, key_slot, query_slot])
