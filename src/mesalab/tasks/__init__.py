"""Synthetic in-context tasks: one file per family, each a frozen config plus a pure sampler."""

from mesalab.tasks.base import Batch
from mesalab.tasks.classification import ClassificationConfig
from mesalab.tasks.copying import CopyingConfig
from mesalab.tasks.dynamics import DynamicsConfig
from mesalab.tasks.regression import RegressionConfig
from mesalab.tasks.sine import SineRegressionConfig

TASKS = {
    "regression": RegressionConfig, "dynamics": DynamicsConfig, "classification": ClassificationConfig,
    "copying": CopyingConfig, "sine_regression": SineRegressionConfig,
}

__all__ = [
    "Batch", "ClassificationConfig", "CopyingConfig", "DynamicsConfig", "RegressionConfig", "SineRegressionConfig",
    "TASKS",
]
