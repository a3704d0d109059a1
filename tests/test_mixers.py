"""The sequence mixers other than attention (models.recurrent, models.ssm, models.ngram): sites and shapes, numpy
references, causality, the n-gram layer's pattern against its definition (Akyürek et al. 2024, seq_icl ngram.py),
configuration errors, and a few training steps with each kind."""

import functools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mesalab.config import ConfigError
from mesalab.export.transformer_lens import problems
from mesalab.models import Transformer, TransformerConfig, hooks, run
from mesalab.models.hooks import Hooks
from mesalab.models.ngram import NGram, ngram_pattern
from mesalab.models.recurrent import LSTM
from mesalab.models.ssm import SelectiveSSM, linear_recurrence
from mesalab.tasks.copying import CopyingConfig
from mesalab.train import TrainConfig, Trainer
from mesalab.train.engine import load_models

V = 5  # one-hot vocabulary of the model-level tests
MIXED = TransformerConfig(d_model=8, n_layers=4, attention=("ngram2", "lstm", "ssm", "softmax"), n_heads=2, d_head=4,
                          d_mlp=16, layer_norm=True, d_in=V, d_out=V, ssm_state=4, ssm_expand=2, ssm_conv=3)


# Eager dispatch of many small ops is what makes such tests slow; compiled, each is one call.
run_jit = eqx.filter_jit(run)


def no_hooks() -> Hooks:
    return Hooks([], None, ())


def tokens_of(ids) -> jax.Array:
    return jax.nn.one_hot(jnp.asarray(ids), V, dtype=jnp.float32)


@pytest.fixture(scope="module")
def mixed():
    return Transformer(MIXED, key=jax.random.PRNGKey(0))


# ---- sites ----------------------------------------------------------------------------------------------------------
def test_cache_sites_have_documented_shapes(mixed):
    x = tokens_of(jax.random.randint(jax.random.PRNGKey(1), (3, 11), 0, V))
    out, cache = run_jit(mixed, x, sites="all")
    assert out.shape == (3, 11, V) and set(cache) == set(mixed.site_names())
    d_inner, n = 2 * 8, 4
    shapes = {"attn.hook_pattern": (1, 11, 11), "attn.hook_z": (11, 1, 8),  # the n-gram layer (block 0)
              "lstm.hook_c": (11, 8), "lstm.hook_h": (11, 8),
              "ssm.hook_x": (11, d_inner), "ssm.hook_delta": (11, d_inner), "ssm.hook_y": (11, d_inner),
              "ssm.hook_B": (11, n), "ssm.hook_C": (11, n), "ssm.hook_state": (11, d_inner, n)}
    for layer, kind in enumerate(MIXED.layer_kinds[:3]):
        mine = sorted(k for k in cache if k.startswith(f"blocks.{layer}.") and ("hook_resid" not in k)
                      and "mlp" not in k and "attn_out" not in k)
        assert mine == sorted(f"blocks.{layer}.{s}" for s in type(mixed.blocks[layer].attn).SITES), kind
        for name in mine:
            assert cache[name].shape == (3, *shapes[name.split(".", 2)[2]]), name
    assert cache["blocks.3.attn.hook_pattern"].shape == (3, 2, 11, 11)  # attention keeps its sites
    assert "blocks.1.attn.hook_q" not in cache and "blocks.0.attn.hook_q" not in cache


def test_predict_last_equals_the_last_row_of_the_full_pass(mixed):
    x = tokens_of(jax.random.randint(jax.random.PRNGKey(2), (3, 11), 0, V))
    last = eqx.filter_jit(lambda m, x: jax.vmap(m.predict_last)(x))(mixed, x)
    np.testing.assert_allclose(last, mixed.readout(run_jit(mixed, x, sites="all")[0])[:, -1], rtol=1e-5, atol=1e-6)


def test_changing_a_later_token_never_changes_earlier_outputs(mixed):
    ids = np.asarray([0, 1, 2, 0, 1, 2, 0, 1, 3, 0, 1])
    t0 = 8
    other = ids.copy()
    other[t0] = 4
    x = jnp.stack([tokens_of(ids), tokens_of(other), tokens_of(ids)])  # the shapes of the test above: no recompile
    out, cache = run_jit(mixed, x, sites="all")
    # Block by block, so that a non-causal mixer is named by the first layer whose output moves.
    for layer, kind in enumerate(MIXED.layer_kinds):
        a = cache[f"blocks.{layer}.hook_attn_out"]
        np.testing.assert_array_equal(a[0, :t0], a[1, :t0], err_msg=kind)
        assert float(jnp.abs(a[0, t0:] - a[1, t0:]).max()) > 1e-6, kind  # the change does reach later outputs
    np.testing.assert_array_equal(out[0, :t0], out[1, :t0])


# ---- LSTM -----------------------------------------------------------------------------------------------------------
def numpy_lstm(W_ih, W_hh, b, x):
    """PyTorch's nn.LSTM equations (gate order i, f, g, o) written as a plain loop in float64."""
    W_ih, W_hh, b, x = (np.asarray(a, np.float64) for a in (W_ih, W_hh, b, x))
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    d = W_hh.shape[0]
    h, c, hs, cs = np.zeros(d), np.zeros(d), [], []
    for xt in x:
        gates = xt @ W_ih + h @ W_hh + b
        i, f, g, o = gates[:d], gates[d:2 * d], gates[2 * d:3 * d], gates[3 * d:]
        c = sig(f) * c + sig(i) * np.tanh(g)
        h = sig(o) * np.tanh(c)
        hs.append(h)
        cs.append(c)
    return np.stack(hs), np.stack(cs)


def test_lstm_matches_a_numpy_step_loop():
    lstm = LSTM(6, key=jax.random.PRNGKey(4))
    # Larger weights than the init so the gates leave their linear range.
    lstm = eqx.tree_at(lambda m: m.b, lstm, jax.random.normal(jax.random.PRNGKey(5), lstm.b.shape))
    x = jax.random.normal(jax.random.PRNGKey(6), (13, 6))
    h = Hooks(["lstm.hook_c", "lstm.hook_h"], None, "all")
    out = lstm(x, h, "lstm.")
    ref_h, ref_c = numpy_lstm(lstm.W_ih, lstm.W_hh, lstm.b, x)
    np.testing.assert_allclose(out, ref_h, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(h.cache["lstm.hook_c"], ref_c, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(lstm(x, no_hooks(), "lstm.", last_only=True), ref_h[-1:], rtol=1e-5, atol=1e-6)


def test_lstm_init_is_the_authors_keras_like_one():
    d = 8
    lstm = LSTM(d, key=jax.random.PRNGKey(7))
    np.testing.assert_array_equal(lstm.b, np.r_[np.zeros(d), np.ones(d), np.zeros(2 * d)])  # forget gate 1
    np.testing.assert_allclose(lstm.W_hh @ lstm.W_hh.T, np.eye(d), atol=1e-5)  # orthogonal
    assert float(jnp.abs(lstm.W_ih).max()) <= math.sqrt(6 / (d + 4 * d))  # Glorot-uniform bound


# ---- selective SSM --------------------------------------------------------------------------------------------------
def numpy_ssm(m: SelectiveSSM, x) -> np.ndarray:
    """The selective SSM written out position by position in float64 (Gu & Dao 2023, Algorithm 2)."""
    p = {k: np.asarray(getattr(m, k), np.float64)
         for k in ("W_in", "conv_w", "conv_b", "W_x", "W_dt", "b_dt", "A_log", "D", "W_out")}
    d_inner, n, rank = m.dims
    silu = lambda v: v / (1 + np.exp(-v))  # noqa: E731
    xz = np.asarray(x, np.float64) @ p["W_in"]
    xt, z = xz[:, :d_inner], xz[:, d_inner:]
    k = p["conv_w"].shape[1]
    h, out = np.zeros((d_inner, n)), []
    for t in range(len(xt)):
        u = silu(p["conv_b"] + sum(p["conv_w"][:, j] * xt[t - k + 1 + j] for j in range(k) if t - k + 1 + j >= 0))
        proj = u @ p["W_x"]
        delta = np.log1p(np.exp(proj[:rank] @ p["W_dt"] + p["b_dt"]))
        B, C = proj[rank:rank + n], proj[rank + n:]
        h = np.exp(delta[:, None] * -np.exp(p["A_log"])) * h + (delta * u)[:, None] * B[None, :]
        out.append(((h @ C + p["D"] * u) * silu(z[t])) @ p["W_out"])
    return np.stack(out)


@pytest.mark.parametrize("scan", ["fused", "sequential", "parallel"])
def test_ssm_matches_a_sequential_numpy_reference(scan):
    m = SelectiveSSM(8, d_state=4, expand=2, d_conv=3, scan=scan, key=jax.random.PRNGKey(8))
    x = jax.random.normal(jax.random.PRNGKey(9), (17, 8))
    ref = numpy_ssm(m, x)
    call = eqx.filter_jit(lambda m, x, last_only: m(x, no_hooks(), "ssm.", last_only))
    np.testing.assert_allclose(call(m, x, False), ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(call(m, x, True), ref[-1:], rtol=1e-4, atol=1e-5)
    # Asking for the states (which "fused" then materialises) changes nothing else.
    def cached(m, x):
        h = Hooks(list(SelectiveSSM.SITES), None, ["ssm.hook_state"])
        return m(x, h, "ssm."), h.cache["ssm.hook_state"]
    out, states = eqx.filter_jit(cached)(m, x)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)
    assert states.shape == (17, 16, 4)


def test_parallel_scan_equals_sequential_scan_values_and_gradients():
    ka, kb = jax.random.split(jax.random.PRNGKey(10))
    a = jax.random.uniform(ka, (50, 3, 2), minval=0.5, maxval=1.0)
    b = jax.random.normal(kb, (50, 3, 2))
    scan = jax.jit(linear_recurrence, static_argnums=2)
    np.testing.assert_allclose(scan(a, b, "parallel"), scan(a, b, "sequential"), rtol=1e-5, atol=1e-6)
    grads = [jax.jit(jax.grad(lambda a, b, s=s: jnp.sum(jnp.sin(linear_recurrence(a, b, s))), (0, 1)))(a, b)
             for s in ("parallel", "sequential")]
    for g1, g2 in zip(*grads):
        np.testing.assert_allclose(g1, g2, rtol=1e-4, atol=1e-5)


# ---- the n-gram layer -----------------------------------------------------------------------------------------------
def authors_pattern(ids, k: int) -> np.ndarray:
    """seq_icl's `induction_head` mask (ngram.py), re-expressed with numpy: equal ids below the diagonal, the
    k-gram condition by shifting the mask down-right, then shifted one key to the right, causal, row-normalised."""
    ids = np.asarray(ids)
    n = len(ids)
    causal = np.tril(np.ones((n, n), bool), -1)
    m = (ids[None, :] == ids[:, None]) & causal
    masks = [m]
    for _ in range(1, k):
        m = np.pad(m, ((1, 0), (1, 0)))[:n, :n]
        masks.append(m)
    ih = np.sum(masks, axis=0) >= k
    ih = np.pad(ih, ((0, 0), (1, 0)))[:, :n] & causal
    with np.errstate(invalid="ignore"):
        return np.nan_to_num(ih / ih.sum(1, keepdims=True))


def test_ngram_pattern_on_a_hand_built_sequence():
    #        0  1  2  3  4  5  6  7
    ids = [0, 1, 0, 1, 2, 0, 1, 0]  # a b a b c a b a
    p = {k: np.asarray(ngram_pattern(tokens_of(ids), k)) for k in (1, 2, 3)}
    # k = 1 at t = 7 ("a"): earlier a's at 0, 2, 5 -> the tokens after them, 1, 3, 6, each 1/3.
    np.testing.assert_allclose(p[1][7], np.eye(8)[[1, 3, 6]].sum(0) / 3)
    # k = 2 at t = 7 ("b a"): only s = 2 ends with "b a" (s = 5 ends with "c a") -> position 3.
    np.testing.assert_array_equal(p[2][7], np.eye(8)[3])
    # k = 3 at t = 7 ("a b a"): s = 2 -> position 3.
    np.testing.assert_array_equal(p[3][7], np.eye(8)[3])
    # k = 2 at t = 6 ("a b"): s = 1 and s = 3 end with "a b" -> positions 2 and 4.
    np.testing.assert_allclose(p[2][6], (np.eye(8)[2] + np.eye(8)[4]) / 2)
    # k = 3 at t = 6 ("c a b" is new): no match, an all-zero row; and t = 0 never matches.
    assert p[3][6].sum() == 0 and all(p[k][0].sum() == 0 for k in p)
    # A match at s = t − 1 would point at t itself, which is excluded ("a a a": t = 2 reads position 1 only).
    np.testing.assert_array_equal(ngram_pattern(tokens_of([0, 0, 0]), 1)[2], [0, 1, 0])
    for k in (1, 2, 3):
        np.testing.assert_allclose(p[k], authors_pattern(ids, k), atol=1e-7)


@pytest.mark.parametrize("k", [1, 2, 3])
def test_ngram_pattern_equals_the_authors_mask_on_random_tokens(k):
    ids = np.asarray(jax.random.randint(jax.random.PRNGKey(11 + k), (60,), 0, 3))
    np.testing.assert_allclose(ngram_pattern(tokens_of(ids), k), authors_pattern(ids, k), atol=1e-7)


def test_ngram_layer_output_and_its_pattern_site():
    cfg = TransformerConfig(d_model=8, n_layers=2, attention=("ngram2", "linear"), n_heads=2, d_head=4, d_in=V,
                            d_out=V)
    model = Transformer(cfg, key=jax.random.PRNGKey(12))
    ids = [0, 1, 0, 1, 2, 0, 1, 0]
    x = tokens_of(ids)
    _, cache = model.run_with_cache(x, ["blocks.0.*"])
    np.testing.assert_array_equal(cache["blocks.0.attn.hook_pattern"][0], ngram_pattern(x, 2))
    layer: NGram = model.blocks[0].attn
    h = cache["blocks.0.hook_resid_pre"]
    z = ngram_pattern(x, 2) @ h
    np.testing.assert_allclose(cache["blocks.0.attn.hook_z"][:, 0], z, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(cache["blocks.0.hook_attn_out"],
                               z @ layer.W_O + layer.b_O + h @ layer.W_skip + layer.b_skip, rtol=1e-5, atol=1e-6)
    # The pattern is a site like attention's: clamping it changes what the layer reads.
    clamped = model(x, interventions={"blocks.0.attn.hook_pattern": hooks.clamp(jnp.tril(jnp.ones((8, 8))) / 8)})
    assert float(jnp.abs(clamped - model(x)).max()) > 1e-4


def test_ngram_layer_without_tokens_says_how_to_get_them():
    layer = NGram(4, 1, key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="needs the model's input tokens"):
        layer(jnp.zeros((3, 4)), no_hooks(), "blocks.0.attn.")


# ---- configuration --------------------------------------------------------------------------------------------------
def test_parameter_counts_follow_the_documented_formulas():
    d = 64
    def count(make):  # from shapes alone
        shapes = eqx.filter_eval_shape(make, key=jax.random.PRNGKey(0))
        return sum(math.prod(a.shape) for a in jax.tree_util.tree_leaves(shapes) if hasattr(a, "shape"))
    assert count(functools.partial(LSTM, d)) == 8 * d * d + 4 * d == 33024
    assert count(functools.partial(SelectiveSSM, d)) == 32640  # Mamba's d_state 16, expand 2, d_conv 4
    assert count(functools.partial(NGram, d, 2)) == 2 * (d * d + d)


@pytest.mark.parametrize("fields, field, allowed", [
    ({"attention": "gru"}, "attention", "'lstm', 'ssm' or 'ngram<k>'"),
    ({"attention": "ngram0"}, "attention", "'ngram<k>' with k >= 1"),
    ({"attention": "lstm", "causal": False}, "causal", "True when a layer is 'lstm'"),
    ({"attention": ("ngram1", "linear"), "keys_from": "context"}, "keys_from", "'all' when a layer is 'ngram1'"),
    ({"attention": "ssm", "pos_embedding": "rope"}, "pos_embedding", "not 'rope' when a layer is 'ssm'"),
    ({"attention": "ssm", "ssm_scan": "fast"}, "ssm_scan", "'fused', 'sequential', 'parallel'"),
    ({"attention": "ssm", "ssm_state": 0}, "ssm_state", "a positive integer"),
])
def test_bad_mixer_settings_are_refused_naming_the_field(fields, field, allowed):
    with pytest.raises(ConfigError, match=f"TransformerConfig.{field} = ") as e:
        TransformerConfig(**{"n_layers": 2, **fields})
    assert allowed in str(e.value)


def test_transformer_lens_export_refuses_the_new_kinds():
    found = problems(TransformerConfig(n_layers=3, attention=("ngram2", "lstm", "ssm")))
    assert len(found) == 1 and "'lstm' and 'ngram2' and 'ssm' layers" in found[0]


# ---- training -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("attention", ["lstm", "ssm", ("ngram1", "linear")])
def test_a_few_trainer_steps_lower_the_loss(attention, tmp_path):
    task = CopyingConfig(n_items=6, n_labels=3, n_pairs=2)
    layers = 1 if isinstance(attention, str) else len(attention)
    cfg = TransformerConfig(d_model=16, n_layers=layers, attention=attention, n_heads=2, d_head=8, layer_norm=True,
                            d_in=task.vocab_size, d_out=task.vocab_size, ssm_state=4)
    train = TrainConfig(steps=60, batch_size=32, lr=1e-2, chunk_steps=30, eval_batch_size=256)
    trainer = Trainer(task, functools.partial(Transformer, cfg), train)
    start = trainer.fit([0], progress=False, stop_after=0).history
    result = trainer.fit([0], progress=False, checkpoint_dir=tmp_path)
    end = result.history
    loss = lambda h: h[(h.metric == "test_loss") & (h.step == h.step.max())].value.item()  # noqa: E731
    assert np.isfinite(loss(end)) and loss(end) < 0.8 * loss(start), (loss(start), loss(end))
    # The checkpoint rebuilds the same models from its JSON header (the config round-trips with the new kinds).
    for a, b in zip(jax.tree_util.tree_leaves(eqx.filter(load_models(tmp_path), eqx.is_array)),
                    jax.tree_util.tree_leaves(eqx.filter(result.models, eqx.is_array))):
        np.testing.assert_array_equal(a, b)


def test_weight_accessors_name_a_layer_without_attention_weights():
    from mesalab.models import weights

    m = Transformer(MIXED, key=jax.random.PRNGKey(0))
    for layer, kind in ((0, "NGram"), (1, "LSTM"), (2, "")):
        with pytest.raises(ValueError, match=f"layer {layer} is a {kind}.*no attention weights"):
            weights.qk(m, layer, 0)
    assert weights.qk(m, 3, 1).shape == (8, 8)
    with pytest.raises(ValueError, match="head = 2 is out of range; layer 3 has 2 heads"):
        weights.W_Q(m, 3, 2)
    with pytest.raises(ValueError, match="layer = 4 is out of range"):
        weights.W_V(m, 4, 0)
