"""Weights that make a model *be* a hand-written algorithm."""

from mesalab.constructions.gd import check_gd_capacity, gd_lsa, gd_plus_plus_lsa

__all__ = ["check_gd_capacity", "gd_lsa", "gd_plus_plus_lsa"]
