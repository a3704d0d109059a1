"""The mesa layer: three implementations of causal in-context ridge regression that must agree, gradients that
match finite differences, a backward pass that stores no per-step matrices, and its place in a transformer."""

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from mesalab.config import ConfigError
from mesalab.models import Transformer, TransformerConfig
from mesalab.models.mesa import MESA_METHODS, mesa_chunked, mesa_scan, mesa_scan_autodiff, mesa_solve

CASES = [(1, 2, 1, 0.3), (7, 3, 2, 0.5), (20, 4, 3, 2.0), (33, 5, 5, 1.0)]  # (T, d_k, d_v, λ)


def inputs(t, d_k, d_v, dtype=np.float64):
    rng = np.random.default_rng(t * 100 + d_k)
    return tuple(rng.normal(size=s).astype(dtype) for s in ((t, d_k), (t, d_k), (t, d_v)))


def ridge_by_hand(q, k, v, lam):
    """Φ_t = argmin_W Σ_{i≤t} ‖W k_i − v_i‖² + λ‖W‖², solved from scratch at every t; output Φ_t q_t."""
    out = []
    for t in range(len(q)):
        K, V = k[: t + 1], v[: t + 1]
        phi = V.T @ K @ np.linalg.inv(K.T @ K + lam * np.eye(k.shape[1]))
        out.append(phi @ q[t])
    return np.array(out)


@pytest.mark.parametrize("t, d_k, d_v, lam", CASES)
def test_implementations_agree_with_ridge_in_float64(t, d_k, d_v, lam):
    q, k, v = inputs(t, d_k, d_v)
    expected = ridge_by_hand(q, k, v, lam)
    with jax.enable_x64(True):
        for name, fn in {**MESA_METHODS, "chunked_3": lambda *a: mesa_chunked(*a, chunk=3)}.items():
            out, q_pre = jax.jit(fn)(q, k, v, lam)
            np.testing.assert_allclose(out, expected, rtol=1e-9, atol=1e-10, err_msg=name)
            precond = [np.linalg.solve(k[: i + 1].T @ k[: i + 1] + lam * np.eye(d_k), q[i]) for i in range(t)]
            np.testing.assert_allclose(q_pre, precond, rtol=1e-9, atol=1e-10, err_msg=name)


@pytest.mark.parametrize("name", ["scan", "chunked"])
def test_gradients_match_autodiff_through_solve_and_finite_differences(name):
    q, k, v = inputs(12, 3, 2)
    fn = MESA_METHODS[name] if name == "scan" else (lambda *a: mesa_chunked(*a, chunk=5))

    def loss(f, q, k, v, lam):
        out, q_pre = f(q, k, v, lam)  # both outputs carry gradient
        return jnp.sum(jnp.sin(out)) + jnp.sum(q_pre**2)

    with jax.enable_x64(True):
        args = (q, k, v, jnp.asarray(0.7))
        got = jax.jit(jax.grad(lambda *a: loss(fn, *a), argnums=(0, 1, 2, 3)))(*args)
        want = jax.jit(jax.grad(lambda *a: loss(mesa_solve, *a), argnums=(0, 1, 2, 3)))(*args)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-8, atol=1e-10)
        check_grads(jax.jit(lambda *a: loss(fn, *a)), args, order=1, modes=["rev"], eps=1e-6)


def test_float32_implementations_agree_at_a_realistic_size():
    q, k, v = inputs(256, 16, 16, np.float32)
    ref, _ = mesa_solve(q, k, v, 1.0)
    for fn in (mesa_scan, mesa_chunked):
        out, _ = jax.jit(fn)(q, k, v, 1.0)
        assert np.linalg.norm(out - ref) / np.linalg.norm(ref) < 1e-5


def residual_elements(fn, t, d):
    q, k, v = inputs(t, d, d, np.float32)
    _, vjp = jax.vjp(lambda q, k, v: fn(q, k, v, 1.0), q, k, v)
    return sum(leaf.size for leaf in jax.tree_util.tree_leaves(vjp))


def test_scan_backward_stores_no_per_step_matrices():
    t, d = 64, 8
    light, heavy = residual_elements(mesa_scan, t, d), residual_elements(mesa_scan_autodiff, t, d)
    # Inputs, q̃ and two final d×d matrices: O(T·d + d²). Plain autodiff keeps R_t for every t: ≥ T·d².
    assert light <= 6 * t * d + 2 * d * d
    assert heavy >= t * d * d
    assert residual_elements(mesa_scan, 2 * t, d) - light <= 6 * t * d  # grows like T·d, not T·d²


def test_bad_inputs_give_clear_errors():
    q, k, v = inputs(5, 3, 2, np.float32)
    with pytest.raises(ValueError, match="queries .* and keys .* must have the same shape"):
        mesa_scan(q[:, :2], k, v, 1.0)
    with pytest.raises(ValueError, match="values have 4 positions but keys have 5"):
        mesa_solve(q, k, v[:4], 1.0)
    bad = k.copy()
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"keys contain NaN or inf \(first at index \[2, 1\]\)"):
        mesa_chunked(q, bad, v, 1.0)


@pytest.fixture(scope="module")
def mesa_cfg():
    return TransformerConfig(d_model=6, n_layers=2, n_heads=2, d_head=3, attention=("softmax", "mesa"), init_scale=0.3)


def test_mesa_layer_methods_agree_inside_a_transformer(mesa_cfg):
    x = jax.random.normal(jax.random.PRNGKey(1), (9, 6))
    results = []
    for method in ("scan", "solve", "chunked"):
        model = Transformer(dataclasses.replace(mesa_cfg, mesa_method=method), key=jax.random.PRNGKey(0))
        out, grads = eqx.filter_jit(eqx.filter_value_and_grad(lambda m: jnp.sum(m(x) ** 2)))(model)
        results.append((out, grads.blocks[1].attn.log_ridge, grads.blocks[1].attn.W_K))
    for other in results[1:]:
        for a, b in zip(other, results[0]):
            np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(model.predict_last(x), model.predict(x)[-1], rtol=1e-5, atol=1e-6)


def test_mesa_layer_is_ridge_regression_on_its_keys_and_values(mesa_cfg):
    model = Transformer(dataclasses.replace(mesa_cfg, n_layers=1, attention="mesa"), key=jax.random.PRNGKey(2))
    x = np.asarray(jax.random.normal(jax.random.PRNGKey(3), (8, 6)))
    _, cache = model.run_with_cache(x, ["blocks.0.attn.*"])
    attn = model.blocks[0].attn
    for h in range(2):
        q, k, v = (np.asarray(cache[f"blocks.0.attn.hook_{s}"][:, h], np.float64) for s in "qkv")
        lam = float(attn.ridge[h])
        np.testing.assert_allclose(cache["blocks.0.attn.hook_z"][:, h], ridge_by_hand(q, k, v, lam), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(
            cache["blocks.0.attn.hook_q_precond"][:, h],
            [np.linalg.solve(k[: t + 1].T @ k[: t + 1] + lam * np.eye(3), q[t]) for t in range(8)], rtol=1e-4, atol=1e-6)
    assert "blocks.0.attn.hook_q_precond" in model.site_names()
    assert "blocks.0.attn.hook_q_precond" not in Transformer(mesa_cfg, key=jax.random.PRNGKey(0)).site_names()[:12]


def test_mesa_config_errors():
    with pytest.raises(ConfigError, match="mesa_ridge = 0.0 is not allowed"):
        TransformerConfig(attention="mesa", mesa_ridge=0.0)
    with pytest.raises(ConfigError, match="causal = False is not allowed"):
        TransformerConfig(attention="mesa", causal=False)
    with pytest.raises(ConfigError, match="mesa_method = 'cg' is not allowed"):
        TransformerConfig(attention="mesa", mesa_method="cg")
    model = Transformer(TransformerConfig(d_model=4, n_layers=1, n_heads=1, d_head=2, attention="mesa"),
                        key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="mesa: queries contain NaN"):
        model(np.full((3, 4), np.nan, np.float32))
