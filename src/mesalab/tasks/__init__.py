"""Tasks: one file per family, each a frozen config plus a pure sampler (synthetic in-context tasks, and real text
in corpus.py)."""

from mesalab.tasks.base import Batch
from mesalab.tasks.classification import ClassificationConfig
from mesalab.tasks.copying import CopyingConfig
from mesalab.tasks.corpus import CorpusConfig
from mesalab.tasks.dfa import RegbenchConfig
from mesalab.tasks.dynamics import DynamicsConfig
from mesalab.tasks.exemplar_label import ExemplarLabelConfig
from mesalab.tasks.regression import RegressionConfig
from mesalab.tasks.sequential import SequentialConfig
from mesalab.tasks.sine import SineRegressionConfig

TASKS = {
    "regression": RegressionConfig, "dynamics": DynamicsConfig, "classification": ClassificationConfig,
    "copying": CopyingConfig, "sine_regression": SineRegressionConfig, "exemplar_label": ExemplarLabelConfig,
    "regbench": RegbenchConfig, "corpus": CorpusConfig, "sequential": SequentialConfig,
}

__all__ = [
    "Batch", "ClassificationConfig", "CopyingConfig", "CorpusConfig", "DynamicsConfig", "ExemplarLabelConfig", "RegbenchConfig",
    "RegressionConfig", "SequentialConfig", "SineRegressionConfig", "TASKS",
]
