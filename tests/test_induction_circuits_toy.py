"""The authors' toy model of the phase change (rank-1 three vectors, Fig. 5a): a check, not a finding."""

import numpy as np
import pytest

from mesalab.algorithms.phase_toy import plateau_length, rank1_setup, train_rank1
from mesalab.config import ConfigError


@pytest.fixture(scope="module")
def runs():
    return {name: train_rank1(clamp=clamp) for name, clamp in
            (("none", {}), ("c", {"c": 20}), ("b, c", {"b": 20, "c": 20}))}


def test_unclamped_gd_shows_a_plateau_then_an_abrupt_drop(runs):
    loss = runs["none"]["loss"]
    plateau = loss[100:700]
    assert np.ptp(plateau) < 0.05 * plateau.mean() and plateau.mean() > 0.3 * loss[0]
    drop = plateau_length(loss, 0.1)
    assert 700 < drop < 1000 and loss[-1] < 1e-3 * loss[0]
    # a ends aligned with a* (its scale is not identified: only a·b·c is, so a_progress need not reach 0).
    assert runs["none"]["a_misalignment"][-1] < 1e-4 < runs["none"]["a_misalignment"][0]
    assert np.isfinite(runs["none"]["a_progress"]).all()


def test_clamping_b_and_c_removes_the_plateau(runs):
    steps = {k: plateau_length(r["loss"], 0.1) for k, r in runs.items()}
    assert steps["b, c"] < steps["c"] < steps["none"]
    assert steps["b, c"] < 50


def test_clamped_coordinates_hold_their_true_values():
    true, _ = rank1_setup(8, 0)
    out = train_rank1(dim=8, seed=0, clamp={"b": 3}, steps=20)
    np.testing.assert_array_equal(out["final"]["b"][:3], np.asarray(true["b"])[:3])
    assert not np.allclose(out["final"]["b"][3:], np.asarray(true["b"])[3:])


@pytest.mark.parametrize("clamp", [{"d": 1}, {"b": 30}, {"c": -1}])
def test_bad_clamps_are_named(clamp):
    with pytest.raises(ConfigError, match="clamp"):
        train_rank1(dim=20, clamp=clamp, steps=2)
