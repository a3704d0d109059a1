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
