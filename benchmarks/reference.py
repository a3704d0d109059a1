"""The reference the engine benchmark measures against, in the same process: a plain training loop the way the
papers' code is written (a `jax.jit`-compiled train step called from a Python loop, the optimizer from optax).

It uses mesalab's model and task sampler, so the ratio to it isolates the training loop (the lax.scan over steps,
vmapped members, chunked evaluation) from the model and data code. The authors' own loops (Haiku / Flax, their own
samplers) were measured at 61 and 4.7 steps/s for workloads (a) and (b) on this 2-core machine (issue 15), slower
than this reference, so a ratio to this reference is the harder test.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import equinox as eqx
import jax
import optax

from mesalab.train import TrainConfig
from mesalab.train.loss import default_loss


def optimizer(cfg: TrainConfig) -> optax.GradientTransformation:
    """The workload's optimizer written directly with optax (clipping, Adam or AdamW, the schedule)."""
    lr: Any = cfg.lr
    if cfg.schedule == "warmup_cosine":
        lr = optax.warmup_cosine_decay_schedule(0.0, cfg.lr, cfg.warmup_steps, cfg.decay_steps or cfg.steps,
                                                cfg.end_lr)
    parts = []
    if cfg.clip_value:
        parts.append(optax.clip(cfg.clip_value))
    if cfg.clip_norm:
        parts.append(optax.clip_by_global_norm(cfg.clip_norm))
    if cfg.optimizer == "adamw":
        parts.append(optax.adamw(lr, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=cfg.weight_decay))
    elif cfg.optimizer == "adam":
        parts.append(optax.adam(lr, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps))
    else:
        raise ValueError(f"reference optimizer: TrainConfig.optimizer = {cfg.optimizer!r} is not benchmarked")
    return optax.chain(*parts)


class ReferenceLoop:
    """One model trained by a jitted step in a Python loop. `step` is compiled on first call; `fresh()` gives a loop
    whose step compiles again (for end-to-end timings that include compilation)."""

    def __init__(self, task: Any, make_model: Callable[..., Any], cfg: TrainConfig, seed: int = 0):
        self.task, self.make_model, self.cfg, self.seed = task, make_model, cfg, seed
        self.tx = optimizer(cfg)
        loss_fn = default_loss(task)
        model = make_model(key=jax.random.PRNGKey(seed))
        params, self.static = eqx.partition(model, eqx.is_array)
        static, tx, batch_size = self.static, self.tx, cfg.batch_size

        @jax.jit
        def step(params, opt_state, key):
            key, sub = jax.random.split(key)
            batch = task.sample(sub, batch_size)
            loss, grads = jax.value_and_grad(lambda p: loss_fn(eqx.combine(p, static), batch, {}))(params)
            updates, opt_state = tx.update(grads, opt_state, params)
            return optax.apply_updates(params, updates), opt_state, key, loss

        self.step = step
        self.state = (params, self.tx.init(params), jax.random.fold_in(jax.random.PRNGKey(seed), 1))

    def fresh(self) -> "ReferenceLoop":
        return ReferenceLoop(self.task, self.make_model, self.cfg, self.seed)

    def run(self, n_steps: int) -> float:
        """Train n_steps from the current state; returns the last loss (after blocking on it)."""
        params, opt_state, key = self.state
        loss = None
        for _ in range(n_steps):
            params, opt_state, key, loss = self.step(params, opt_state, key)
        self.state = (params, opt_state, key)
        return float(jax.block_until_ready(loss))


def timed(fn: Callable[[], Any]) -> tuple[float, float]:
    """(wall seconds, cores used = process CPU seconds / wall seconds) of one call."""
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    wall = time.perf_counter() - w0
    return wall, (time.process_time() - c0) / wall
