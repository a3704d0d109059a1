import jax
import numpy as np
import pytest

from mesalab.algorithms import (
    gd_one_step_predict, gd_plus_plus_predict, gd_predict, line_search_eta, ols_predict, optimal_eta_one_step,
    ridge_predict,
)
from mesalab.config import ConfigError
from mesalab.constructions import gd_lsa, gd_plus_plus_lsa
from mesalab.models import TransformerConfig, predict
from mesalab.studies.gd_equivalence import lsa_config
from mesalab.tasks.regression import RegressionConfig, sample_raw


def split(x, y):
    return x[:, :-1], y[:, :-1], x[:, -1]


def test_gd_steps_follow_the_update_rule():
    _, x, y = sample_raw(RegressionConfig(d=3, n_context=5), jax.random.PRNGKey(0), 4)
    xc, yc, xq = (np.asarray(a, np.float64) for a in split(x, y))
    etas = [0.5, 0.3, 0.2]
    w = np.zeros((4, 3))
    for eta in etas:
        w = w - eta / 5 * np.einsum("bn,bnd->bd", np.einsum("bnd,bd->bn", xc, w) - yc, xc)
    np.testing.assert_allclose(gd_predict(*split(x, y), etas), np.einsum("bd,bd->b", w, xq), rtol=1e-4, atol=1e-6)


def test_gd_plus_plus_without_curvature_is_gd():
    _, x, y = sample_raw(RegressionConfig(d=4, n_context=6), jax.random.PRNGKey(1), 8)
    etas = [0.7, 0.4, 0.9]
    np.testing.assert_allclose(gd_plus_plus_predict(*split(x, y), etas, [0.0] * 3), gd_predict(*split(x, y), etas),
                               rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("d, n, etas", [(2, 3, [0.7]), (5, 8, [3.0, 1.0]), (10, 10, [1.5, 1.0, 0.8, 0.5, 0.3])])
def test_gd_construction_equals_gd(d, n, etas):
    task = RegressionConfig(d=d, n_context=n)
    batch = task.sample(jax.random.PRNGKey(d), 64)
    x, y = batch.info["x"], batch.info["y"]
    cfg = TransformerConfig(**{**lsa_config(task).__dict__, "n_layers": len(etas)})
    got = predict(gd_lsa(cfg, task, etas), batch.inputs)[:, -1, 0]
    np.testing.assert_allclose(got, gd_predict(*split(x, y), etas), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("d, n, k", [(3, 5, 2), (10, 10, 4)])
def test_gd_plus_plus_construction_equals_gd_plus_plus(d, n, k):
    task = RegressionConfig(d=d, n_context=n, x_half_width=0.5)
    batch = task.sample(jax.random.PRNGKey(7), 64)
    x, y = batch.info["x"], batch.info["y"]
    etas, gammas = np.linspace(1.5, 0.5, k), np.linspace(0.05, 0.01, k)
    cfg = TransformerConfig(**{**lsa_config(task).__dict__, "n_layers": k, "d_head": d + 3})
    got = predict(gd_plus_plus_lsa(cfg, task, etas, gammas), batch.inputs)[:, -1, 0]
    np.testing.assert_allclose(got, gd_plus_plus_predict(*split(x, y), etas, gammas), rtol=1e-4, atol=1e-5)
    assert float(np.abs(got - gd_predict(*split(x, y), etas)).max()) > 1e-3  # the curvature term mattered


def test_closed_form_eta_matches_the_line_search_and_the_reference():
    task = RegressionConfig(d=10, n_context=10, x_half_width=0.5)
    _, x, y = sample_raw(task, jax.random.PRNGKey(0), 10_000)
    eta = float(optimal_eta_one_step(*split(x, y), y[:, -1]))
    eta_ls, loss_ls = line_search_eta(*split(x, y), y[:, -1])
    assert abs(eta - eta_ls) <= 0.1  # the grid step
    loss = float(np.mean(0.5 * (gd_one_step_predict(*split(x, y), eta) - y[:, -1]) ** 2))
    assert loss <= loss_ls + 1e-6
    # reference/mesa.md §1.7: η ≈ 6.0 and loss ≈ 0.208 for U(−0.5, 0.5), d = N = 10.
    assert 5.5 < eta < 6.5 and 0.20 < loss < 0.215


def test_ridge_and_ols():
    task = RegressionConfig(d=4, n_context=12, x_half_width=0.5)
    _, x, y = sample_raw(task, jax.random.PRNGKey(3), 256)
    exact = ols_predict(*split(x, y))
    np.testing.assert_allclose(exact, y[:, -1], rtol=1e-3, atol=1e-4)  # noise-free, N > d: OLS recovers w
    np.testing.assert_allclose(ridge_predict(*split(x, y), 1e-6), exact, rtol=1e-3, atol=1e-4)
    shrunk = ridge_predict(*split(x, y), 100.0)
    assert float(np.abs(shrunk).mean()) < float(np.abs(exact).mean())


def test_gd_construction_rejects_a_too_small_key_size():
    task = RegressionConfig(d=4, n_context=4)
    small = TransformerConfig(**{**lsa_config(task).__dict__, "d_head": 3})
    with pytest.raises(ConfigError, match=r"TransformerConfig.d_head = 3 .* expected d_head >= 5"):
        gd_lsa(small, task, 1.0)
    with pytest.raises(ConfigError, match="etas has 3 values for 1 layers"):
        gd_lsa(lsa_config(task), task, [1.0, 2.0, 3.0])
