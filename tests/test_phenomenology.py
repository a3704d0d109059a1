"""The three-logit model of seed 003: chance at the origin, the L = N saddle, the ξ-first curriculum, the plateau and
cliff of gradient flow, and the abruptness measure on synthetic curves. Float64 throughout except where noted."""

import math

import jax
import numpy as np
import pytest

from mesalab.analysis import phenomenology as ph

# One recording shape for every flow, so the scan compiles once per dtype.
STEPS, EVERY, LR = 4000, 10, 0.05


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


@pytest.mark.parametrize("n, n_labels", [(2, 2), (8, 32), (5, 7), (8, 256)])
def test_origin_is_chance(n, n_labels):
    for origin in (np.zeros(3), ph.Params(0.0, 0.0, 0.0)):
        assert float(ph.loss(origin, n, n_labels)) == pytest.approx(math.log(n_labels), rel=1e-15)
        assert float(ph.correct_probability(origin, n, n_labels)) == pytest.approx(1 / n_labels, rel=1e-14)
        assert float(ph.context_probability(origin, n, n_labels)) == pytest.approx(n / n_labels, rel=1e-14)


@pytest.mark.parametrize("n, n_labels", [(2, 2), (8, 8), (8, 32), (3, 100)])
def test_gradient_at_origin_moves_xi_only(n, n_labels):
    beta, alpha, xi = np.asarray(ph.gradient(np.zeros(3), n, n_labels))
    assert beta == 0.0 and alpha == 0.0  # both scale with ξ = 0: exactly zero, not merely small
    # The curriculum's pull: -(L − N)/(L(2N + 1)), which vanishes at L = N (the saddle).
    assert xi == pytest.approx(-(n_labels - n) / (n_labels * (2 * n + 1)), rel=1e-13, abs=0.0)
    assert (xi == 0.0) == (n == n_labels)


def test_saddle_flow_never_leaves_the_origin():
    tr = ph.gradient_flow(8, 8, lr=LR, steps=STEPS, record_every=EVERY)
    assert np.all(tr.params == 0.0)
    np.testing.assert_allclose(tr.loss, math.log(8), rtol=1e-15)
    assert not ph.abruptness(tr.time, tr.loss, rising=False).abrupt


def test_gradient_matches_central_differences():
    rng = np.random.default_rng(3)
    n, n_labels, h = 6, 20, 1e-6
    for _ in range(3):
        theta = rng.uniform([-2.0, -1.0, -1.0], [2.0, 6.0, 6.0])
        grad = np.asarray(ph.gradient(theta, n, n_labels))
        fd = [(ph.loss(theta + h * e, n, n_labels) - ph.loss(theta - h * e, n, n_labels)) / (2 * h) for e in np.eye(3)]
        np.testing.assert_allclose(grad, np.asarray(fd), rtol=1e-7, atol=1e-10)
    structured = ph.gradient(ph.Params(*theta), n, n_labels)
    assert isinstance(structured, ph.Params)
    np.testing.assert_allclose(np.asarray(structured), grad, rtol=1e-15)


def test_large_logits_stay_finite():
    theta = np.array([40.0, 2000.0, 500.0])  # e^{αy} alone would overflow float64
    assert np.isfinite(float(ph.loss(theta, 8, 32)))
    assert np.all(np.isfinite(np.asarray(ph.gradient(theta, 8, 32))))
    assert float(ph.correct_probability(theta, 8, 32)) == pytest.approx(1.0)


def test_flow_n8_l32_plateau_then_cliff():
    n, n_labels = 8, 32
    tr = ph.gradient_flow(n, n_labels, lr=LR, steps=STEPS, record_every=EVERY)
    a = ph.abruptness(tr.time, tr.loss, rising=False)
    # A plateau (t ≈ 92) and then the drop to ~0: 10% → 90% of it within t ≈ 7.6.
    assert 80 < a.plateau < 105
    assert a.t10 < a.fastest < a.t90
    # Measured width/plateau = 0.083: abrupt by the 1/5 rule.
    assert a.ratio == pytest.approx(0.083, abs=0.01) and a.abrupt
    assert np.all(np.diff(tr.loss) <= 0) and np.all(np.diff(tr.accuracy) >= 0)
    mid = np.searchsorted(tr.time, a.plateau / 2)
    # The seed says accuracy goes from 1/L to 1/N in the slow phase. The e^{-ℒ} proxy does not: halfway through
    # the plateau it is 1.10/L (about a quarter of 1/N), and it passes 1/N only inside the cliff.
    assert 1 / n_labels < tr.accuracy[mid] < 1.2 / n_labels
    t_one_over_n = tr.time[np.argmax(tr.accuracy >= 1 / n)]
    assert a.t10 < t_one_over_n < a.t90
    # The logits are learned in order: ξ first, then α, then β (measured 2.05, 0.29, 0.04).
    beta, alpha, xi = tr.params[mid]
    assert xi > 3 * alpha and alpha > 5 * beta > 0
    assert tr.accuracy[-1] > 0.99


def test_cliff_sharpens_with_n_and_softens_with_a_head_start_in_layer_1():
    ratios = []
    for n in (2, 4, 8, 16):  # N = 16 plateaus until t ≈ 308: a longer flow
        tr = ph.gradient_flow(n, 32, lr=LR, steps=2 * STEPS, record_every=EVERY)
        ratios.append(ph.abruptness(tr.time, tr.loss, rising=False).ratio)
    assert np.all(np.diff(ratios) < 0), ratios  # measured 1.37, 0.41, 0.083, 0.017
    assert ratios[0] > 1 and ratios[-1] < 1 / 5
    # y = σ(β), half the label's attention on its item from the start (β = log N): a shorter plateau (t ≈ 40) and
    # a cliff just short of the 1/5 rule (0.21).
    tr = ph.gradient_flow(8, 32, lr=LR, steps=STEPS, record_every=EVERY, start=(math.log(8), 0.0, 0.0))
    a = ph.abruptness(tr.time, tr.loss, rising=False)
    assert 30 < a.plateau < 50 and a.ratio == pytest.approx(0.21, abs=0.02) and not a.abrupt


def test_flow_in_float32_matches():
    with jax.enable_x64(False):
        tr32 = ph.gradient_flow(8, 32, lr=LR, steps=STEPS, record_every=EVERY)
    tr64 = ph.gradient_flow(8, 32, lr=LR, steps=STEPS, record_every=EVERY)
    assert tr32.params.dtype == np.float32 and tr64.params.dtype == np.float64
    a32, a64 = (ph.abruptness(t.time, t.loss, rising=False) for t in (tr32, tr64))
    assert a32.plateau == pytest.approx(a64.plateau, rel=1e-3) and a32.width == pytest.approx(a64.width, rel=1e-2)


def test_landscape_is_the_loss_on_a_grid():
    alphas, xis = np.linspace(0, 12, 7), np.linspace(0, 20, 5)
    grid = ph.landscape(8, 32, alphas, xis, beta=1.0)
    assert grid.shape == (7, 5)
    assert grid[3, 2] == pytest.approx(float(ph.loss(np.array([1.0, alphas[3], xis[2]]), 8, 32)), rel=1e-14)
    np.testing.assert_allclose(grid[:, 0], math.log(32), rtol=1e-15)  # ξ = 0: chance for every α


def test_abruptness_sigmoid_step_and_linear_ramp():
    t = np.linspace(0, 100, 1001)
    step = 1 / (1 + np.exp(-(t - 70)))
    rise = ph.abruptness(t, step, rising=True)
    # σ reaches 0.1 and 0.9 at 70 ∓ log 9 (the end values are 1e-30 and 1 − 1e-13 away from 0 and 1).
    assert rise.abrupt and rise.plateau == pytest.approx(70 - math.log(9), abs=1e-3)
    assert rise.width == pytest.approx(2 * math.log(9), abs=2e-3) and rise.fastest == pytest.approx(70, abs=0.1)
    fall = ph.abruptness(t, 3 - 2 * step, rising=False)  # the same step as a falling loss
    assert fall.abrupt and fall.plateau == pytest.approx(rise.plateau) and fall.width == pytest.approx(rise.width)
    ramp = ph.abruptness(t, 0.5 * t, rising=True)
    assert not ramp.abrupt and ramp.plateau == pytest.approx(10) and ramp.width == pytest.approx(80)
    # Coarse sampling: interpolation keeps the ramp's times exact.
    coarse = ph.abruptness(t[::100], 0.5 * t[::100], rising=True)
    assert coarse.plateau == pytest.approx(10) and coarse.width == pytest.approx(80)


def test_abruptness_threshold_is_a_fifth_of_the_plateau():
    # Flat until t = 100, then a linear rise over d: plateau = 100 + 0.1 d, width = 0.8 d.
    t = np.linspace(0, 200, 2001)
    for d, ratio in ((23, 18.4 / 102.3), (28, 22.4 / 102.8)):
        out = ph.abruptness(t, np.clip((t - 100) / d, 0, 1), rising=True)
        assert out.ratio == pytest.approx(ratio) and out.abrupt == (ratio < 1 / 5)


def test_abruptness_without_a_change_in_the_expected_direction():
    t = np.arange(10.0)
    for values, rising in ((t, False), (-t, True), (np.ones(10), True)):
        out = ph.abruptness(t, values, rising=rising)
        assert not out.abrupt and math.isnan(out.plateau) and math.isnan(out.ratio)
    assert not ph.abruptness(t, 1e-9 * t, rising=True, min_change=1e-6).abrupt


def test_invalid_sizes_raise():
    with pytest.raises(ValueError, match="L ≥ N ≥ 2"):
        ph.gradient_flow(8, 4)
    with pytest.raises(ValueError, match="L ≥ N ≥ 2"):
        ph.landscape(1, 4, [0.0], [0.0])
    with pytest.raises(ValueError, match="multiple"):
        ph.gradient_flow(8, 32, steps=105, record_every=10)
    with pytest.raises(ValueError, match="matching"):
        ph.abruptness([0.0, 1.0], [0.0], rising=True)
