"""Compressed algorithms: block-diagonal means of W_KᵀW_Q and PW_V, the rebuilt model, and the η-term = GD-1."""

import dataclasses

import jax
import numpy as np
import pytest

from mesalab.algorithms.least_squares import gd_predictions
from mesalab.analysis.compress import (
    block_diagonal_means, compress, compressed_scalars, eta_term_rate, expand_blocks, model_from_scalars,
)
from mesalab.models import Transformer, TransformerConfig, predict
from mesalab.tasks import DynamicsConfig

D = 3
CFG = TransformerConfig(d_model=4 * D, n_layers=2, n_heads=2, d_head=5, init_scale=0.3, readout_size=D)


def test_block_means_invert_expansion():
    scalars = np.random.default_rng(0).normal(size=(2, 4, 4))
    np.testing.assert_allclose(block_diagonal_means(expand_blocks(scalars, D), 4), scalars, rtol=1e-6)
    with pytest.raises(ValueError, match="does not split into 5 slots"):
        block_diagonal_means(np.zeros((12, 12)), 5)


def test_compressing_a_block_structured_model_changes_nothing():
    """A model whose products already are multiples of I per block is its own compression (same outputs)."""
    rng = np.random.default_rng(1)
    model = Transformer(CFG, key=jax.random.PRNGKey(0))
    block = model_from_scalars(model, rng.normal(size=(2, 2, 4, 4)) * 0.3, rng.normal(size=(2, 2, 4, 4)) * 0.3)
    x = DynamicsConfig(d=D, seq_len=7).sample(jax.random.PRNGKey(1), 4).inputs
    np.testing.assert_allclose(predict(compress(block, 4), x), predict(block, x), rtol=1e-4, atol=1e-6)
    assert compress(model, 4).cfg.d_head == CFG.d_model


def test_eta_term_alone_is_one_gd_step_from_zero():
    """Keep only the η-terms (key s_{i−1}, query s_t, value s_i → prediction slot): the model is GD-1."""
    model = Transformer(dataclasses.replace(CFG, n_layers=1), key=jax.random.PRNGKey(0))
    s = compressed_scalars(model, 4)
    qk = np.zeros(s["qk"].shape, np.float32)
    ov = np.zeros(s["ov"].shape, np.float32)
    qk[0, :, 3, 2], ov[0, :, 0, 2] = [0.7, -0.2], [0.5, 1.5]
    batch = DynamicsConfig(d=D, seq_len=9, token_format="constructed_masked").sample(jax.random.PRNGKey(2), 8)
    eta = eta_term_rate({"qk": qk, "ov": ov})
    np.testing.assert_allclose(eta, 0.7 * 0.5 - 0.2 * 1.5, rtol=1e-6)
    np.testing.assert_allclose(predict(model_from_scalars(model, qk, ov), batch.inputs),
                               gd_predictions(batch.info["states"], eta), rtol=1e-4, atol=1e-6)


def test_compression_needs_an_attention_only_model(tiny_model):
    with pytest.raises(ValueError, match="attention-only model on constructed tokens"):
        compress(tiny_model, 2)


def test_interpolated_retraining_keeps_the_frozen_heads_and_trains_the_rest():
    """Fresh models mixed with per-member frozen compressed products: AdamW with weight decay moves the fresh part
    and leaves the frozen products bit-identical; the mixed model equals model_from_products of the average."""
    import functools

    from mesalab.analysis.compress import Interpolated, interpolated, model_from_products
    from mesalab.models.weights import all_ov, all_qk
    from mesalab.train import TrainConfig, Trainer
    from mesalab.train.engine import as_members, init_models, member_of

    task = DynamicsConfig(d=D, seq_len=7)
    trained = init_models(functools.partial(Transformer, CFG), as_members([5, 6]))  # stand-ins for trained models
    fresh = init_models(functools.partial(Transformer, CFG), as_members([0, 1]))
    start = interpolated(fresh, trained, 4)
    make = lambda key: interpolated(Transformer(CFG, key=key), Transformer(CFG, key=key), 4)  # noqa: E731
    train = TrainConfig(steps=20, batch_size=8, optimizer="adamw", lr=1e-2, weight_decay=0.1, chunk_steps=10,
                        eval_batch_size=8)
    res = Trainer(task, make, train, frozen=Interpolated.frozen_leaves).fit(2, init=start, progress=False)
    np.testing.assert_array_equal(res.models.frozen_qk, start.frozen_qk)
    np.testing.assert_array_equal(res.models.frozen_ov, start.frozen_ov)
    assert not np.allclose(res.models.model.blocks[0].attn.W_Q, fresh.blocks[0].attn.W_Q)
    one = member_of(start, 1)
    avg = lambda f, frozen: 0.5 * f(one.model) + 0.5 * frozen  # noqa: E731
    x = task.sample(jax.random.PRNGKey(3), 2).inputs
    np.testing.assert_allclose(predict(one, x), predict(model_from_products(
        one.model, avg(all_qk, one.frozen_qk), avg(all_ov, one.frozen_ov)), x), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(one.frozen_qk, expand_blocks(compressed_scalars(member_of(trained, 1), 4)["qk"], D),
                               rtol=1e-6)


def test_acting_scalars_of_the_one_layer_masked_model_are_twelve_and_carry_it():
    """On masked tokens [0, 0, s_t, s_{t−1}] read out from slot 0, a 2-head 1-layer model's compressed form depends
    on 2 × (2 × 2 + 2) = 12 scalars only: zeroing every other scalar changes no prediction."""
    from mesalab.analysis.compress import acting_parameter_count, acting_scalars

    model = Transformer(dataclasses.replace(CFG, n_layers=1), key=jax.random.PRNGKey(0))
    assert acting_parameter_count(model, 4, (2, 3), (0,)) == 12
    assert acting_parameter_count(model, 4, (1, 2, 3), (0,)) == 2 * (9 + 3)
    with pytest.raises(ValueError, match="1-layer"):
        acting_parameter_count(Transformer(CFG, key=jax.random.PRNGKey(0)), 4, (2, 3), (0,))
    rng = np.random.default_rng(3)
    qk, ov = rng.normal(size=(1, 2, 4, 4)) * 0.3, rng.normal(size=(1, 2, 4, 4)) * 0.3
    masks = acting_scalars(2, 4, (2, 3), (0,))
    x = DynamicsConfig(d=D, seq_len=7, token_format="constructed_masked").sample(jax.random.PRNGKey(1), 4).inputs
    full = predict(model_from_scalars(model, qk, ov), x)
    kept = predict(model_from_scalars(model, np.where(masks["qk"], qk, 0), np.where(masks["ov"], ov, 0)), x)
    np.testing.assert_allclose(kept, full, rtol=1e-5, atol=1e-7)
    # A scalar outside the mask that reads a filled slot does matter (slot 1 is empty only on masked tokens).
    x_full = DynamicsConfig(d=D, seq_len=7).sample(jax.random.PRNGKey(1), 4).inputs
    assert not np.allclose(predict(model_from_scalars(model, np.where(masks["qk"], qk, 0),
                                                      np.where(masks["ov"], ov, 0)), x_full),
                           predict(model_from_scalars(model, qk, ov), x_full))
