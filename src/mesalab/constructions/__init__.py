"""Weights that make a model *be* a hand-written algorithm."""

from mesalab.constructions.gd import gd_lsa

__all__ = ["gd_lsa"]
