"""Sequence least squares, one GD step and matrix-inverse approximators (the S2 baselines)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mesalab.algorithms.inverse import chebyshev_inverse, neumann_inverse, newton_schulz_inverse, ridge_with_inverse
from mesalab.algorithms.least_squares import (
    best_gd_eta, causal_ridge, fit_gd_from_init, gd_from_init_predictions, gd_predictions, gd_step_direction,
    previous_states, ridge_predictions,
)
from mesalab.tasks import DynamicsConfig
from mesalab.tasks.dynamics import sample_states


@pytest.fixture(scope="module")
def states():
    return np.asarray(sample_states(DynamicsConfig(d=3, seq_len=9), jax.random.PRNGKey(0), 16)[1], np.float64)


def fit_and_predict(states, b, t, n_pairs, lam):
    """Ridge on the first n_pairs pairs (s_{i−1}, s_i) of sequence b (s_0 = 0), applied to s_t (0-based t)."""
    s = np.concatenate([np.zeros((1, states.shape[-1])), states[b]])  # s[0] = 0, s[i] = s_i
    x, y = s[:n_pairs], s[1:n_pairs + 1]
    w = y.T @ x @ np.linalg.inv(x.T @ x + lam * np.eye(x.shape[1]))
    return w @ s[t + 1]


def test_ridge_predictions_use_all_pairs_or_one_fewer(states):
    all_pairs = np.asarray(ridge_predictions(states, 0.1, "all"))
    fewer = np.asarray(ridge_predictions(states, 0.1, "one_fewer"))
    for b, t in [(0, 0), (3, 4), (15, 8)]:
        np.testing.assert_allclose(all_pairs[b, t], fit_and_predict(states, b, t, t + 1, 0.1), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(fewer[b, t], fit_and_predict(states, b, t, t, 0.1), rtol=1e-4, atol=1e-6)
    with pytest.raises(ValueError, match="pairs = 'some' is not allowed"):
        ridge_predictions(states, 0.1, "some")


def test_one_gd_step_and_its_best_rate(states):
    g = np.asarray(gd_step_direction(states))
    s, prev = states[:, :-1], np.asarray(previous_states(states))
    b, t = 2, 5
    delta_w = sum(np.outer(s[b, i], prev[b, i]) for i in range(t + 1))
    np.testing.assert_allclose(g[b, t], delta_w @ s[b, t], rtol=1e-5)
    eta = float(best_gd_eta(states))
    loss = lambda e: float(np.mean((np.asarray(gd_predictions(states, e)) - states[:, 1:]) ** 2))  # noqa: E731
    assert loss(eta) < min(loss(0.9 * eta), loss(1.1 * eta))


def test_gd_from_an_initial_w0(states):
    w0 = np.random.default_rng(3).normal(size=(3, 3))
    pred = np.asarray(gd_from_init_predictions(states, 0.2, w0))
    s, prev = states[:, :-1], np.asarray(previous_states(states))
    b, t = 4, 6
    w1 = w0 + 0.2 * sum(np.outer(s[b, i] - w0 @ prev[b, i], prev[b, i]) for i in range(t + 1))
    np.testing.assert_allclose(pred[b, t], w1 @ s[b, t], rtol=1e-4)
    np.testing.assert_allclose(gd_from_init_predictions(states, 0.2, np.zeros((3, 3))), gd_predictions(states, 0.2),
                               rtol=1e-5)
    # Fitting W_0 as well can only help on the data it was fitted on.
    eta, w0_fit = fit_gd_from_init(states)
    mse = lambda p: float(np.mean((np.asarray(p) - states[:, 1:]) ** 2))  # noqa: E731
    assert mse(gd_from_init_predictions(states, eta, w0_fit)) <= mse(gd_predictions(states, best_gd_eta(states))) + 1e-6


@pytest.fixture(scope="module")
def spd():
    rng = np.random.default_rng(0)
    m = rng.normal(size=(4, 6, 6))
    return (m @ np.swapaxes(m, 1, 2) / 6 + 0.3 * np.eye(6)).astype(np.float32)


def rel_error(x, a):
    inv = np.linalg.inv(a)
    return np.max(np.linalg.norm(x - inv, axis=(1, 2)) / np.linalg.norm(inv, axis=(1, 2)))


def test_inverse_approximations_converge_at_their_rates(spd):
    neumann = [rel_error(neumann_inverse(spd, k), spd) for k in (5, 10, 20, 40)]
    assert all(b < a for a, b in zip(neumann, neumann[1:]))
    assert rel_error(newton_schulz_inverse(spd, 12), spd) < 1e-5
    assert rel_error(chebyshev_inverse(spd, 30), spd) < 1e-4
    # Chebyshev's momentum beats the plain series at equal depth; squaring (Newton–Schulz) beats both.
    assert rel_error(chebyshev_inverse(spd, 10), spd) < rel_error(neumann_inverse(spd, 10), spd)
    assert rel_error(newton_schulz_inverse(spd, 8), spd) < rel_error(neumann_inverse(spd, 40), spd)


def test_ridge_with_an_exact_inverse_is_ridge(states):
    x, y, q = np.asarray(previous_states(states)), states[:, :-1], states[:, :-1]
    np.testing.assert_allclose(ridge_with_inverse(x, y, q, 0.1, jnp.linalg.inv), causal_ridge(x, y, q, 0.1),
                               rtol=1e-3, atol=1e-5)
