"""Rotary positions and the S6 model shape, against a forward pass written out by hand in numpy.

`reference_forward` is also the hand-computed pass the clamp tests (test_induction_circuits_clamps.py) compare with.
"""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mesalab.config import ConfigError
from mesalab.models import Transformer, TransformerConfig, run
from mesalab.models.attention import rope
from mesalab.tasks import ExemplarLabelConfig


def tiny_task() -> ExemplarLabelConfig:
    return ExemplarLabelConfig(n_classes=6, n_labels=4, dim=6, n_test_classes=3)


def tiny_model_cfg(task: ExemplarLabelConfig) -> TransformerConfig:
    """The S6 shape (2 layers, attention-only, causal, softmax, pre-LN, RoPE, linear embedding of exemplar and
    label tokens, an L-way read-out) at tiny width: 2 heads of size 4 instead of 8 heads of size 8."""
    return TransformerConfig(d_model=8, n_layers=2, n_heads=2, d_head=4, attention="softmax", causal=True,
                             layer_norm=True, d_in=task.token_width, d_out=task.n_labels, pos_embedding="rope",
                             init_scale=0.5)


def np_(a):
    return np.asarray(a, np.float64)


def hand_rope(x: np.ndarray, base: float = 10000.0) -> np.ndarray:
    """Rotate each adjacent pair (2j, 2j+1) at position p by p·base^(−2j/d), one number at a time."""
    t, h, d = x.shape
    out = np.empty_like(x)
    for p in range(t):
        for j in range(d // 2):
            a = p * base ** (-2 * j / d)
            c, s = math.cos(a), math.sin(a)
            out[p, :, 2 * j] = x[p, :, 2 * j] * c - x[p, :, 2 * j + 1] * s
            out[p, :, 2 * j + 1] = x[p, :, 2 * j] * s + x[p, :, 2 * j + 1] * c
    return out


def layer_norm(x, ln):
    mu, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + ln.eps) * np_(ln.weight) + np_(ln.bias)


def reference_forward(model, x, *, pattern=None, values=None, resid=None, out=None):
    """One sequence x [T, d_in] through `model` in float64 numpy, with optional overrides:
    pattern(layer, P [H, T, T]) -> P; values(layer, v [T, H, d]) -> v; resid(layer, h, embed) -> h (block output);
    out(o [T, d_out], record) -> o. Returns (output, record) with record["scores"/"pattern"/"v"/"resid"][layer],
    record["embed"]."""
    x = np_(x)
    h = x @ np_(model.W_E)
    rec = {"embed": h.copy(), "scores": [], "pattern": [], "v": [], "resid": []}
    t = x.shape[0]
    causal = np.tril(np.ones((t, t), bool))
    for layer, blk in enumerate(model.blocks):
        a = layer_norm(h, blk.ln1)
        q = np.einsum("pm,hmd->phd", a, np_(blk.attn.W_Q))
        k = np.einsum("pm,hmd->phd", a, np_(blk.attn.W_K))
        v = np.einsum("pm,hmd->phd", a, np_(blk.attn.W_V))
        if values is not None:
            v = values(layer, v)
        q, k = hand_rope(q), hand_rope(k)
        scores = np.einsum("qhd,khd->hqk", q, k) / math.sqrt(q.shape[-1])
        scores = np.where(causal, scores, -np.inf)
        p = np.exp(scores - scores.max(-1, keepdims=True))
        p = p / p.sum(-1, keepdims=True)
        if pattern is not None:
            p = pattern(layer, p)
        z = np.einsum("hqk,khd->qhd", p, v)
        h = h + np.einsum("qhd,hdm->qm", z, np_(blk.attn.W_O))
        if resid is not None:
            h = resid(layer, h, rec["embed"])
        rec["scores"].append(scores), rec["pattern"].append(p), rec["v"].append(v), rec["resid"].append(h)
    o = layer_norm(h, model.ln_final) @ np_(model.W_U)
    if out is not None:
        o = out(o, rec)
    return o, rec


@pytest.fixture(scope="module")
def task():
    return tiny_task()


@pytest.fixture(scope="module")
def model(task):
    return tiny_model(task)


def tiny_model(task, seed: int = 0):
    """A tiny S6 model with non-trivial LayerNorm parameters, so the reference checks they are used."""
    m = Transformer(tiny_model_cfg(task), key=jax.random.PRNGKey(seed))
    k = jax.random.PRNGKey(7 + seed)
    new = (1.0 + 0.3 * jax.random.normal(k, (8,)), 0.2 * jax.random.normal(jax.random.fold_in(k, 1), (8,)))
    return eqx.tree_at(lambda mm: (mm.blocks[0].ln1.weight, mm.ln_final.bias), m, new)


@pytest.fixture(scope="module")
def batch(task):
    return task.sample(jax.random.PRNGKey(3), 3)


def test_rope_matches_the_hand_rotation():
    x = np.asarray(jax.random.normal(jax.random.PRNGKey(0), (6, 2, 4)))
    ours = np.asarray(rope(jnp.asarray(x), jnp.arange(6)))
    np.testing.assert_allclose(ours, hand_rope(x.astype(np.float64)), atol=1e-6)
    # Position 0 is left alone; each pair keeps its norm.
    np.testing.assert_allclose(ours[0], x[0], atol=1e-7)
    np.testing.assert_allclose(np.hypot(ours[..., 0::2], ours[..., 1::2]), np.hypot(x[..., 0::2], x[..., 1::2]),
                               rtol=1e-5)


def test_rope_scores_depend_only_on_the_position_difference():
    a, b = (np.asarray(jax.random.normal(jax.random.PRNGKey(i), (1, 1, 8))) for i in (1, 2))

    def score(i, j):
        qa = np.asarray(rope(jnp.broadcast_to(a, (12, 1, 8)), jnp.arange(12)))[i, 0]
        kb = np.asarray(rope(jnp.broadcast_to(b, (12, 1, 8)), jnp.arange(12)))[j, 0]
        return float(qa @ kb)

    for diff in (0, 1, 3):
        vals = [score(j + diff, j) for j in range(0, 12 - diff, 2)]
        np.testing.assert_allclose(vals, vals[0], rtol=1e-4, atol=1e-5)
    assert abs(score(3, 0) - score(1, 0)) > 1e-3  # and they do depend on it


def test_model_matches_the_hand_forward_with_rotation_sites(model, batch):
    out, cache = run(model, batch.inputs, sites=["blocks.0.attn.hook_q", "blocks.0.attn.hook_rot_q",
                                                 "blocks.1.attn.hook_pattern"])
    for i in range(batch.inputs.shape[0]):
        ref, rec = reference_forward(model, batch.inputs[i])
        np.testing.assert_allclose(out[i], ref, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(cache["blocks.1.attn.hook_pattern"][i], rec["pattern"][1], atol=1e-5)
    np.testing.assert_allclose(cache["blocks.0.attn.hook_rot_q"][0], hand_rope(np_(cache["blocks.0.attn.hook_q"][0])),
                               atol=1e-5)


def test_rope_sites_and_no_additive_positions(model):
    names = model.site_names()
    assert "blocks.1.attn.hook_rot_k" in names and "hook_pos_embed" not in names
    assert names.index("blocks.0.attn.hook_q") < names.index("blocks.0.attn.hook_rot_q")
    plain = Transformer(TransformerConfig(d_model=8, n_heads=2, d_head=4), key=jax.random.PRNGKey(0))
    assert not any("hook_rot" in n for n in plain.site_names())


def test_query_only_path_rotates_the_query_at_its_position(model, batch):
    last = jax.vmap(model.predict_last)(batch.inputs)
    np.testing.assert_allclose(last, jax.vmap(model.predict)(batch.inputs)[:, -1], rtol=1e-5, atol=1e-6)


def test_output_site_is_by_name_only(model, batch):
    _, cache = run(model, batch.inputs, sites="all")
    assert "hook_out" not in cache
    out, cache = run(model, batch.inputs, sites=["hook_out"])
    np.testing.assert_allclose(cache["hook_out"], out)


@pytest.mark.parametrize("kwargs, field", [
    (dict(d_head=3, d_model=6, pos_embedding="rope"), "d_head"),
    (dict(attention="mesa", pos_embedding="rope", d_head=4), "attention"),
    (dict(pos_embedding="rope", d_head=4, rope_base=0.0), "rope_base"),
])
def test_bad_rope_configs_name_the_field(kwargs, field):
    with pytest.raises(ConfigError, match=f"TransformerConfig.{field}"):
        TransformerConfig(**{"d_model": 8, "n_heads": 2, **kwargs})


def test_s6_model_shape_builds_for_the_task():
    task = ExemplarLabelConfig()
    cfg = TransformerConfig(d_model=64, n_layers=2, n_heads=8, d_head=8, attention="softmax", layer_norm=True,
                            d_in=task.token_width, d_out=task.n_labels, pos_embedding="rope")
    model = eqx_shape(cfg)
    assert model.W_E.shape == (task.token_width, 64) and model.W_U.shape == (64, 5)
    assert model.blocks[1].attn.W_Q.shape == (8, 64, 8) and model.blocks[0].mlp is None


def eqx_shape(cfg):
    return eqx.filter_eval_shape(Transformer, cfg, key=jax.random.PRNGKey(0))
