"""Analyses of trained models: alignment with algorithms, and (later) probes, head scores, SAEs."""

from mesalab.analysis.alignment import (
    alignment, interpolate_products, lsa_from_products, normalized_products, query_sensitivity,
)

__all__ = ["alignment", "interpolate_products", "lsa_from_products", "normalized_products", "query_sensitivity"]
