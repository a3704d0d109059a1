"""The optimizer as an optax chain *without* the learning rate, so each ensemble member can bring its own.

The engine applies `params ← params − lr_member · update`, where update comes from this chain. For AdamW this is
exactly optax.adamw (whose weight decay is also multiplied by the learning rate).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import optax

from mesalab.train.config import TrainConfig


def schedule_shape(cfg: TrainConfig) -> optax.Schedule:
    """The schedule divided by the peak learning rate (1 at the peak)."""
    if cfg.schedule == "constant":
        return optax.constant_schedule(1.0)
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=1.0, warmup_steps=cfg.warmup_steps,
        decay_steps=cfg.decay_steps or cfg.steps, end_value=cfg.end_lr / cfg.lr,
    )


def direction(cfg: TrainConfig) -> optax.GradientTransformation:
    """Gradient → update direction (clipping, Adam or momentum, weight decay, schedule), lr not yet applied."""
    parts: list[optax.GradientTransformation] = []
    if cfg.clip_value:
        parts.append(optax.clip(cfg.clip_value))
    if cfg.clip_norm:
        parts.append(optax.clip_by_global_norm(cfg.clip_norm))
    # Adam and SGD take weight decay as an L2 term on the gradient; AdamW decouples it (Loshchilov & Hutter).
    if cfg.weight_decay and cfg.optimizer != "adamw":
        parts.append(optax.add_decayed_weights(cfg.weight_decay))
    if cfg.optimizer in ("adam", "adamw"):
        parts.append(optax.scale_by_adam(b1=cfg.b1, b2=cfg.b2, eps=cfg.eps))
    elif cfg.momentum:
        parts.append(optax.trace(decay=cfg.momentum))
    if cfg.weight_decay and cfg.optimizer == "adamw":
        parts.append(optax.add_decayed_weights(cfg.weight_decay))
    parts.append(optax.scale_by_schedule(schedule_shape(cfg)))
    return optax.chain(*parts)


def optimizer_time(cfg: TrainConfig, steps: Sequence[int]) -> list[float]:
    """Training time measured in learning rate: Σ_{s<t} η_s / η_peak at each step t in `steps`.

    Parameters move by about η per step, so this is the clock on which "the last quarter of training" means the
    same under any schedule (the convergence rule reads it). For a constant rate it equals the step count."""
    t = np.asarray(steps, int)
    if t.size == 0:
        return []
    if cfg.schedule == "constant":
        return t.astype(float).tolist()
    shape = np.asarray(schedule_shape(cfg)(np.arange(int(t.max()), dtype=np.int32)), float)
    elapsed = np.concatenate([[0.0], np.cumsum(shape)])
    return elapsed[t].tolist()
