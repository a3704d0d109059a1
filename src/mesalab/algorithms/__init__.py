"""Hand-written learners that trained models are compared with."""

from mesalab.algorithms.gd import (
    ETA_GRID, gd_one_step_predict, gd_plus_plus_predict, gd_predict, gd_weights, line_search_eta,
    optimal_eta_one_step,
)
from mesalab.algorithms.inverse import chebyshev_inverse, neumann_inverse, newton_schulz_inverse, ridge_with_inverse
from mesalab.algorithms.least_squares import (
    best_gd_eta, causal_ridge, gd_predictions, gd_step_direction, ridge_predictions,
)
from mesalab.algorithms.ridge import ols_predict, ridge_predict, ridge_weights

__all__ = [
    "best_gd_eta", "causal_ridge", "chebyshev_inverse", "gd_predictions", "gd_step_direction", "neumann_inverse",
    "newton_schulz_inverse", "ridge_predictions", "ridge_with_inverse",
    "ETA_GRID", "gd_one_step_predict", "gd_plus_plus_predict", "gd_predict", "gd_weights", "line_search_eta",
    "ols_predict", "optimal_eta_one_step", "ridge_predict", "ridge_weights",
]
