import jax
import numpy as np

from mesalab.algorithms import gd_one_step_predict, optimal_eta_one_step
from mesalab.tasks.regression import RegressionConfig, sample_raw


def test_closed_form_eta_matches_a_line_search():
    task = RegressionConfig(d=10, n_context=10, x_half_width=0.5)
    _, x, y = sample_raw(task, jax.random.PRNGKey(0), 4000)
    args = (x[:, :-1], y[:, :-1], x[:, -1])
    eta = float(optimal_eta_one_step(*args, y[:, -1]))
    grid = np.linspace(0.1, 25, 2000)
    losses = [float(np.mean(0.5 * (gd_one_step_predict(*args, e) - y[:, -1]) ** 2)) for e in grid[::20]]
    best = grid[::20][int(np.argmin(losses))]
    assert abs(eta - best) < 0.3
    loss = float(np.mean(0.5 * (gd_one_step_predict(*args, eta) - y[:, -1]) ** 2))
    # reference/mesa.md §1.7: η ≈ 6.0 and loss ≈ 0.208 for U(−0.5, 0.5), d = N = 10.
    assert 5.0 < eta < 7.0 and 0.19 < loss < 0.225


import pytest  # noqa: E402

from mesalab.config import ConfigError  # noqa: E402
from mesalab.constructions import gd_lsa  # noqa: E402
from mesalab.models import TransformerConfig, predict  # noqa: E402
from mesalab.studies.gd_equivalence import lsa_config  # noqa: E402


@pytest.mark.parametrize("d, n, eta", [(2, 3, 0.7), (5, 8, 3.0), (10, 10, 6.0)])
def test_gd_construction_equals_one_gd_step(d, n, eta):
    task = RegressionConfig(d=d, n_context=n)
    batch = task.sample(jax.random.PRNGKey(d), 64)
    x, y = batch.info["x"], batch.info["y"]
    model = gd_lsa(lsa_config(task), task, eta)
    got = predict(model, batch.inputs)[:, -1, 0]
    want = gd_one_step_predict(x[:, :-1], y[:, :-1], x[:, -1], eta)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_gd_construction_rejects_a_too_small_key_size():
    task = RegressionConfig(d=4, n_context=4)
    small = TransformerConfig(**{**lsa_config(task).__dict__, "d_head": 3})
    with pytest.raises(ConfigError, match=r"TransformerConfig.d_head = 3 .* expected d_head >= 5"):
        gd_lsa(small, task, 1.0)
