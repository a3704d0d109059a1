"""Synthetic in-context tasks: one file per family, each a frozen config plus a pure sampler."""

from mesalab.tasks.base import Batch
from mesalab.tasks.classification import ClassificationConfig
from mesalab.tasks.copying import CopyingConfig
from mesalab.tasks.dynamics import DynamicsConfig
from mesalab.tasks.regression import RegressionConfig

TASKS = {
    "regression": RegressionConfig, "dynamics": DynamicsConfig, "classification": ClassificationConfig,
    "copying": CopyingConfig,
}

__all__ = ["Batch", "ClassificationConfig", "CopyingConfig", "DynamicsConfig", "RegressionConfig", "TASKS"]
