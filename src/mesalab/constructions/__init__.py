"""Weights that make a model *be* a hand-written algorithm."""

from mesalab.constructions.gd import check_gd_capacity, gd_lsa, gd_plus_plus_lsa, gd_step_head
from mesalab.constructions.neumann import (
    neumann_lsa, neumann_readout, newton_lsa, newton_readout, preconditioning_tokens,
)

__all__ = ["check_gd_capacity", "gd_lsa", "gd_plus_plus_lsa", "gd_step_head", "neumann_lsa", "neumann_readout", "newton_lsa",
           "newton_readout", "preconditioning_tokens"]
