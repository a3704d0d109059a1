"""Hand-written learners that trained models are compared with."""

from mesalab.algorithms.gd import (
    ETA_GRID, gd_one_step_predict, gd_plus_plus_predict, gd_predict, gd_weights, line_search_eta,
    optimal_eta_one_step,
)
from mesalab.algorithms.ridge import ols_predict, ridge_predict, ridge_weights

__all__ = [
    "ETA_GRID", "gd_one_step_predict", "gd_plus_plus_predict", "gd_predict", "gd_weights", "line_search_eta",
    "ols_predict", "optimal_eta_one_step", "ridge_predict", "ridge_weights",
]
