"""Linear probes: held out, batched over layers × positions, and the dynamics task's probe targets."""

import jax
import numpy as np

from mesalab.analysis.probes import fit_probes, probe, score_probes
from mesalab.tasks import DynamicsConfig
from mesalab.tasks.dynamics import probe_targets, sample_states


def test_a_probe_of_noise_scores_zero_held_out_but_not_in_sample():
    rng = np.random.default_rng(0)
    x_train, x_test = rng.normal(size=(2, 400, 30)).astype(np.float32)
    y_train, y_test = rng.normal(size=(2, 400, 3)).astype(np.float32)
    held_out = probe(x_train, y_train, x_test, y_test)
    in_sample = score_probes(fit_probes(x_train, y_train), x_train, y_train)
    assert abs(float(held_out.r2)) < 0.15 and float(held_out.r2) < 0.02  # ≈ 0, or below: it fits noise
    assert float(in_sample.r2) > 0.04  # ≈ features / samples = 0.075: why probes must be held out


def test_linear_targets_are_decoded_and_batches_equal_loops():
    rng = np.random.default_rng(1)
    feats = rng.normal(size=(2, 3, 200, 5)).astype(np.float32)  # [layer, position, N, f]
    mix = rng.normal(size=(5, 2)).astype(np.float32)
    targets = feats @ mix + 0.5
    scores = probe(feats[..., :100, :], targets[..., :100, :], feats[..., 100:, :], targets[..., 100:, :], lam=1e-6)
    assert scores.r2.shape == (2, 3) and float(scores.r2.min()) > 0.999
    noisy = targets + rng.normal(size=targets.shape).astype(np.float32)
    batched = probe(feats[..., :100, :], noisy[..., :100, :], feats[..., 100:, :], noisy[..., 100:, :])
    one = probe(feats[1, 2, :100], noisy[1, 2, :100], feats[1, 2, 100:], noisy[1, 2, 100:])
    np.testing.assert_allclose(batched.r2[1, 2], one.r2, rtol=1e-4)
    np.testing.assert_allclose(batched.mse[1, 2], one.mse, rtol=1e-4)


def test_dynamics_probe_targets():
    states = np.asarray(sample_states(DynamicsConfig(d=3, seq_len=8), jax.random.PRNGKey(0), 2)[1], np.float64)
    t = probe_targets(states, lam=0.1, lags=(1, 2))
    b, pos = 1, 5  # 0-based position 5 is token s_6; S_{<t} holds s_1 … s_5
    s = states[b]
    expected = np.linalg.solve(s[:pos].T @ s[:pos] + 0.1 * np.eye(3), s[pos])
    np.testing.assert_allclose(t["preconditioned"][b, pos], expected, rtol=1e-4)
    np.testing.assert_allclose(t["s_next"][b, pos], s[pos + 1])
    np.testing.assert_allclose(t["s_t-2"][b, pos], s[pos - 2])
    np.testing.assert_allclose(t["s_t-2"][b, 1], 0.0)
