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
