"""Hand-written learners that trained models are compared with."""

from mesalab.algorithms.gd import gd_one_step_predict, optimal_eta_one_step

__all__ = ["gd_one_step_predict", "optimal_eta_one_step"]
