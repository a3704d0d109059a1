"""Training: one compiled program trains an ensemble (jitted lax.scan over steps, vmapped over members)."""

from __future__ import annotations

import functools
from typing import Any, Sequence

from mesalab.models.config import TransformerConfig
from mesalab.models.transformer import Transformer
from mesalab.train.callbacks import Callback, MetricsLog
from mesalab.train.config import TrainConfig
from mesalab.train.engine import Member, Trainer, TrainingDiverged, TrainResult, member_of
from mesalab.train.loss import masked_half_mse, per_position_half_mse, prediction_loss


def train(task: Any, model_cfg: TransformerConfig, train_cfg: TrainConfig, seeds: int | Sequence = 1,
          **kwargs) -> TrainResult:
    """Train an ensemble of transformers built from `model_cfg` on `task`; kwargs go to Trainer and Trainer.fit.

    seeds: an int E trains seeds 0 … E−1; a list gives the seeds (or `Member`s with their own lr / task knobs)."""
    fit_keys = {"checkpoint_dir", "resume", "progress", "eval_seed", "stop_after", "init", "devices", "callbacks"}
    fit_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in fit_keys}
    trainer = Trainer(task, functools.partial(Transformer, model_cfg), train_cfg, **kwargs)
    return trainer.fit(seeds, **fit_kwargs)


__all__ = [
    "Callback", "MetricsLog", "Member", "TrainConfig", "TrainResult", "Trainer", "TrainingDiverged", "masked_half_mse", "member_of",
    "per_position_half_mse", "prediction_loss", "train",
]
