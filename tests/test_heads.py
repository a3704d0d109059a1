"""Head scores (previous-token, prefix-matching, copying), the Reddy-model options and cross-entropy training."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mesalab.analysis.heads import (
    copying_score, induction_targets, logit_raise_copying_score, prefix_matching_score, previous_token_score,
)
from mesalab.config import ConfigError
from mesalab.models import Transformer, TransformerConfig
from mesalab.models import weights as W
from mesalab.train.loss import masked_accuracy, masked_cross_entropy

TOKENS = jnp.array([[5, 6, 7, 5, 6, 7]])


def _row_normalised(mask: jax.Array) -> jax.Array:
    """A causal pattern putting all mass on `mask` where a row has targets, else on the token itself."""
    t = mask.shape[-1]
    rows = mask.any(-1, keepdims=True)
    return jnp.where(rows, mask / jnp.maximum(mask.sum(-1, keepdims=True), 1), jnp.eye(t))


def test_induction_targets_are_the_followers_of_earlier_occurrences():
    targets = np.asarray(induction_targets(TOKENS)[0])
    expected = np.zeros((6, 6), bool)
    expected[3, 1] = expected[4, 2] = expected[5, 3] = True  # 5→6 at 1; 6→7 at 2; 7→(the second 5) at 3
    np.testing.assert_array_equal(targets, expected)


def test_scores_separate_induction_from_previous_token_heads():
    induction = _row_normalised(induction_targets(TOKENS)[0])[None, None]
    previous = _row_normalised(jnp.eye(6, k=-1, dtype=bool))[None, None]
    both = jnp.concatenate([induction, previous], axis=1)  # two heads
    np.testing.assert_allclose(prefix_matching_score(both, TOKENS), [1.0, 0.0])
    np.testing.assert_allclose(previous_token_score(both), [0.0, 1.0], atol=1e-7)


def test_copying_score_is_plus_one_for_a_copying_head_and_minus_one_for_an_anti_copying_head():
    cfg = TransformerConfig(d_model=16, n_layers=1, n_heads=1, d_head=16, attention="softmax", d_in=10, d_out=10)
    embed = jax.random.normal(jax.random.PRNGKey(2), (10, 16))
    model = Transformer(cfg, key=jax.random.PRNGKey(0))
    model = eqx.tree_at(lambda m: (m.W_E, m.W_U), model, (embed, jnp.linalg.pinv(embed)))
    copy = eqx.tree_at(lambda m: (m.blocks[0].attn.W_V, m.blocks[0].attn.W_O), model,
                       (jnp.eye(16)[None], jnp.eye(16)[None]))
    anti = eqx.tree_at(lambda m: m.blocks[0].attn.W_O, copy, -jnp.eye(16)[None])
    assert float(copying_score(copy, 0, 0)) == pytest.approx(1.0, abs=1e-5)
    assert float(copying_score(anti, 0, 0)) == pytest.approx(-1.0, abs=1e-5)
    # Olsson's evaluator: all of the raise on the attended token, or none of it
    tokens = jnp.arange(10)
    assert float(logit_raise_copying_score(copy, 0, 0, tokens)) == pytest.approx(1.0, abs=1e-4)
    assert float(logit_raise_copying_score(anti, 0, 0, tokens)) == pytest.approx(-1.0, abs=1e-4)


def test_reddy_model_without_output_projection_and_with_a_classifier():
    cfg = TransformerConfig(d_model=8, n_layers=2, n_heads=1, d_head=8, attention="softmax", scale_scores="none",
                            out_proj=False, classifier_layers=3, d_out=5)
    model = Transformer(cfg, key=jax.random.PRNGKey(0))
    x = jax.random.normal(jax.random.PRNGKey(1), (7, 8))
    out, cache = model.run_with_cache(x)
    assert out.shape == (7, 5) and model.blocks[0].attn.W_O is None
    assert [k for k in cache if k.startswith("classifier")] == [f"classifier.{i}.hook_post" for i in range(3)]
    assert float(cache["classifier.2.hook_post"].min()) >= 0.0  # ReLU outputs
    # Without W_O a head's update is its z itself: the OV product is W_Vᵀ.
    np.testing.assert_allclose(W.ov(model, 0, 0), model.blocks[0].attn.W_V[0].T)
    np.testing.assert_allclose(model.predict_last(x), model.predict(x)[-1], rtol=1e-5, atol=1e-6)
    removed = W.remove_head(model, 1, 0)
    np.testing.assert_allclose(removed.run_with_cache(x, "blocks.1.hook_attn_out")[1]["blocks.1.hook_attn_out"], 0.0)
    with pytest.raises(ConfigError, match="out_proj"):
        TransformerConfig(d_model=8, n_heads=2, d_head=8, out_proj=False)
    with pytest.raises(ValueError, match="no output projection"):
        W.set_head(model, 0, 0, W_O=jnp.eye(8))


def test_cross_entropy_and_accuracy_under_the_mask():
    logits = jnp.log(jnp.array([[[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]]]))
    target = jax.nn.one_hot(jnp.array([[0, 0]]), 3)
    np.testing.assert_allclose(masked_cross_entropy(logits, target, jnp.array([[1.0, 0.0]])), -np.log(0.7), rtol=1e-6)
    np.testing.assert_allclose(masked_cross_entropy(logits, target, jnp.array([[1.0, 1.0]])),
                               -(np.log(0.7) + np.log(0.1)) / 2, rtol=1e-6)
    np.testing.assert_allclose(masked_accuracy(logits, target, jnp.array([[1.0, 1.0]])), 0.5)


def test_copying_score_on_a_subset_of_tokens():
    """Copying labels while suppressing items: positive on the labels, whatever the whole vocabulary says."""
    cfg = TransformerConfig(d_model=6, n_layers=1, n_heads=1, d_head=6, attention="softmax", d_in=6, d_out=6)
    model = Transformer(cfg, key=jax.random.PRNGKey(0))
    ov = jnp.diag(jnp.array([-3.0, -3.0, -3.0, -3.0, 1.0, 1.0]))  # items 0–3 suppressed, labels 4–5 copied
    model = eqx.tree_at(lambda m: (m.W_E, m.W_U, m.blocks[0].attn.W_V, m.blocks[0].attn.W_O), model,
                        (jnp.eye(6), jnp.eye(6), ov[None], jnp.eye(6)[None]))
    assert float(copying_score(model, 0, 0)) < 0
    assert float(copying_score(model, 0, 0, jnp.array([4, 5]))) == pytest.approx(1.0, abs=1e-6)
