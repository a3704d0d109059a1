"""Equinox models with named sites, caches and interventions."""

from mesalab.models import hooks, weights
from mesalab.models.config import TransformerConfig
from mesalab.models.hooks import Intervention, UnknownSiteError
from mesalab.models.run import predict, run
from mesalab.models.transformer import Transformer

__all__ = ["Intervention", "Transformer", "TransformerConfig", "UnknownSiteError", "hooks", "predict", "run", "weights"]
