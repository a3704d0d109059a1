"""The compiled chunk program: `n` optimizer steps of one member in a `lax.scan`, then its evaluation.

Each step draws its batch inside the program (a key split, then `task.sample`), so no data crosses from the host.
The fixed evaluation batch is scored on the chunk's final weights inside the same program, so a study compiles one
program per chunk length instead of two, and the host makes one call per chunk. Training is bit-identical to the
same scan without the evaluation; the evaluated metrics may differ from a separately compiled evaluation in the last
float bit (XLA fuses the two programs differently).

Measured and not adopted (benchmarks/engine.py workloads, 2-core CPU, 2026-11-29): drawing each batch one step ahead,
so that XLA could overlap a step's sampling with its gradient, ran (a) about 10% faster and (c) about 6% slower,
within the noise of a loaded machine, and changed the float rounding of (b) and (c) — every study's numbers would
move for no clear gain.

`Trainer.chunk_program` vmaps (or groups, see TrainConfig.ensemble_group) this over the ensemble.
"""

from __future__ import annotations

from typing import Any, Callable

import equinox as eqx
import jax
import jax.numpy as jnp

from mesalab.train.placement import split_batch


def member_chunk(trainer: Any, n_steps: int) -> Callable:
    """run(params, opt, key, alive, lr, task, eval_key) -> (params, opt, key, alive, losses [n_steps], metrics).

    metrics: the evaluation of the final weights on the batch drawn from eval_key ({} when the training config has
    no evaluation batch). `trainer` supplies the loss, optimizer, interventions, frozen mask and divergence policy."""
    static, tx, cfg, ivs = trainer._static, trainer.tx, trainer.cfg, trainer.interventions
    freeze, mask, loss_fn = trainer.on_divergence == "freeze", trainer._train_mask, trainer.loss_fn
    sharding = trainer._batch_sharding   # fit(split="batch"): each batch split over the host devices

    def run(params, opt, key, alive, lr, task, eval_key):
        def draw(key):
            key, sub = jax.random.split(key)
            batch = task.sample(sub, cfg.batch_size)
            return key, batch if sharding is None else split_batch(batch, sharding)

        def train_on(params, opt, alive, batch):
            loss, grads = jax.value_and_grad(lambda p: loss_fn(eqx.combine(p, static), batch, ivs))(params)
            updates, new_opt = tx.update(grads, opt, params)
            if mask is not None:
                updates = jax.tree_util.tree_map(lambda u, m: u * m, updates, mask)
            new_params = jax.tree_util.tree_map(lambda p, u: p - lr * u, params, updates)
            if freeze:  # a diverged member keeps its last finite state from then on
                alive = alive & jnp.isfinite(loss)
                keep = lambda new, old: jnp.where(alive, new, old)  # noqa: E731
                new_params = jax.tree_util.tree_map(keep, new_params, params)
                new_opt = jax.tree_util.tree_map(keep, new_opt, opt)
            return new_params, new_opt, alive, loss

        def step(carry, _):
            params, opt, key, alive = carry
            key, batch = draw(key)
            params, opt, alive, loss = train_on(params, opt, alive, batch)
            return (params, opt, key, alive), loss

        (params, opt, key, alive), losses = jax.lax.scan(step, (params, opt, key, alive), None, length=n_steps)
        metrics = evaluate_member(trainer, params, task, eval_key) if cfg.eval_batch_size else {}
        return params, opt, key, alive, losses, metrics

    return run


def evaluate_member(trainer: Any, params: Any, task: Any, key: jax.Array) -> dict[str, jax.Array]:
    """test_loss (and the trainer's metrics_fn) of one member on the evaluation batch drawn from `key`."""
    model = eqx.combine(params, trainer._static)
    batch = task.sample(key, trainer.cfg.eval_batch_size)
    out = {"test_loss": trainer.loss_fn(model, batch, trainer.interventions)}
    if trainer.metrics_fn is not None:
        out.update(trainer.metrics_fn(model, batch, trainer.interventions))
    return out


def ensemble_program(one: Callable, group: int, members: int) -> Callable:
    """The jitted program over the ensemble: every member vmapped at once, or vmapped in groups of `group` that run
    one after another (lax.map), with the evaluation key shared by all."""
    if group >= members:
        return jax.jit(jax.vmap(one, in_axes=(0, 0, 0, 0, 0, 0, None)))

    def program(params, opt, key, alive, lr, task, eval_key):
        return jax.lax.map(lambda xs: one(*xs, eval_key), (params, opt, key, alive, lr, task), batch_size=group)

    return jax.jit(program)
