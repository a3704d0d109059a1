"""Analyses of trained models: alignment with algorithms, compressed algorithms, linear probes."""

from mesalab.analysis.alignment import (
    alignment, interpolate_products, lsa_from_products, model_alignment, normalized_products, query_sensitivity,
)
from mesalab.analysis.compress import compress, compressed_scalars, eta_term_rate, model_from_scalars
from mesalab.analysis.probes import ProbeScores, probe

__all__ = [
    "ProbeScores", "alignment", "compress", "compressed_scalars", "eta_term_rate", "interpolate_products",
    "lsa_from_products", "model_alignment", "model_from_scalars", "normalized_products", "probe", "query_sensitivity",
]
