"""Equinox models with named sites, caches and interventions."""

from mesalab.models import hooks, weights
from mesalab.models.config import TransformerConfig
from mesalab.models.hooks import Intervention, UnknownSiteError
from mesalab.models.ngram import NGram
from mesalab.models.recurrent import LSTM
from mesalab.models.run import predict, run
from mesalab.models.ssm import SelectiveSSM
from mesalab.models.transformer import Transformer

__all__ = ["LSTM", "Intervention", "NGram", "SelectiveSSM", "Transformer", "TransformerConfig", "UnknownSiteError",
           "hooks", "predict", "run", "weights"]
