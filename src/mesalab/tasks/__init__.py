"""Synthetic in-context tasks: one file per family, each a frozen config plus a pure sampler."""

from mesalab.tasks.base import Batch
from mesalab.tasks.dynamics import DynamicsConfig
from mesalab.tasks.regression import RegressionConfig

TASKS = {"regression": RegressionConfig, "dynamics": DynamicsConfig}

__all__ = ["Batch", "DynamicsConfig", "RegressionConfig", "TASKS"]
