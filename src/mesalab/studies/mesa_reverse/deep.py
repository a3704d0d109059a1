"""The deep linear-attention stacks of the study: training, probes, CompressedAlg-d, interpolation (static and
retrained, reference/mesa.md §2.7–2.8) and few-shot repurposing (repurpose.py, §2.9)."""

from __future__ import annotations

import functools
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from mesalab.analysis.compress import Interpolated, compress, compressed_parameter_count, interpolate, interpolated
from mesalab.analysis.probes import by_position, probe
from mesalab.models.run import run as run_model
from mesalab.models.transformer import Transformer
from mesalab.studies.mesa_dynamics import curves
from mesalab.studies.mesa_dynamics.models import model_setup, parameter_count
from mesalab.studies.mesa_reverse import repurpose
from mesalab.studies.mesa_reverse.config import RETRAIN_SEED_OFFSET, TEST_SEED, Config, training
from mesalab.studies.protocol import RunContext
from mesalab.tasks.dynamics import DynamicsConfig, probe_targets, sample_states, tokens
from mesalab.train import TrainConfig, Trainer, member_of
from mesalab.train.engine import as_members, init_models

SLOTS = 4  # constructed tokens [0, s_t, s_t, s_{t−1}]: CompressedAlg-d averages a 4 × 4 grid of blocks


def states_for(cfg: Config, seed: int, n: int) -> jax.Array:
    return sample_states(DynamicsConfig(d=cfg.d, seq_len=cfg.seq_len, noise=cfg.noise), jax.random.PRNGKey(seed), n)[1]


def train(cfg: Config, ctx: RunContext, name: str, train_cfg: TrainConfig):
    """Train `cfg.seeds` members of a named mesa-dynamics model as part `name` (untrained in the null run)."""
    task, model = model_setup(name, cfg.d, cfg.seq_len, cfg.noise, cfg.init_std, cfg.act_clip, key_size=cfg.deep_key)
    res = ctx.fit(Trainer(task, functools.partial(Transformer, model), train_cfg), cfg.seeds, name)
    return task, model, res


def eval_history(res: Any) -> dict[str, list]:
    """The evaluation-loss history of a part: steps [S], test_loss [member][S] and optimizer time [S] (step 0 only
    when untrained; the convergence rule reads it)."""
    c = res.curve("test_loss")
    return {"steps": c["steps"], "test_loss": c["values"], "time": c["time"]}


# One compiled forward pass per model shape and site list (sites is static: a tuple).
cached_run = eqx.filter_jit(run_model)


def probe_model(model, task: DynamicsConfig, fit_states, test_states, lam: float) -> dict[str, list]:
    """Held-out R² [site, position] for each target, sites = the embedding and every layer's residual output."""
    sites = ("hook_embed",) + tuple(f"blocks.{i}.hook_resid_post" for i in range(model.cfg.n_layers))

    def acts(states):
        _, cache = cached_run(model, tokens(states, task.token_format), sites=sites)
        return jnp.stack([by_position(cache[s]) for s in sites])  # [site, T, N, f]

    train_a, test_a = acts(fit_states), acts(test_states)
    train_t, test_t = probe_targets(fit_states), probe_targets(test_states)
    return {name: np.asarray(probe(train_a, by_position(train_t[name]), test_a, by_position(test_t[name]),
                                   lam).r2).tolist()
            for name in ("s_next", "preconditioned", "s_t")}


def stack(model):
    """One model as a 1-member ensemble (what `mesa_dynamics.curves` takes)."""
    return jax.tree_util.tree_map(lambda a: a[None] if eqx.is_array(a) else a, model)


def mean_loss(model, task, states) -> float:
    return float(curves(stack(model), task, states)[0].mean())


def interpolation(model, task, states, points: int) -> list[float]:
    """Loss along (1 − a)·trained + a·compressed products, a ∈ [0, 1] (static; the authors retrain with the mix)."""
    return [mean_loss(interpolate(model, SLOTS, float(a)), task, states) for a in np.linspace(0.0, 1.0, points)]


def run_deep(cfg: Config, ctx: RunContext, layers: int, states, fit_states, probe_states) -> dict[str, Any]:
    name = f"linear-{layers}"
    task, model_cfg, res = train(cfg, ctx, name, training(cfg, cfg.deep_steps, cfg.deep_batch_size, cfg.lr))
    out: dict[str, Any] = {"layers": layers, "params": parameter_count(model_cfg), "loss": [], "compressed_loss": [],
                           "probes": [], "interpolation": [], "fewshot": [], "seconds": res.seconds,
                           "history": eval_history(res)}
    out["compressed_params"] = compressed_parameter_count(member_of(res.models, 0), SLOTS)
    deepest = layers == max(cfg.depths)
    if deepest:
        x, y = repurpose.sample_regression(jax.random.PRNGKey(TEST_SEED + 7), cfg.fewshot_test, cfg.fewshot_examples,
                                           cfg.d)
        out["fewshot_lsq"] = np.asarray(repurpose.least_squares_curve(x, y)).tolist()
        out["fewshot_zero"] = float(0.5 * jnp.mean(jnp.sum(y**2, -1)))  # the zero predictor on the few-shot set
    for i in range(cfg.seeds):
        model = member_of(res.models, i)
        out["loss"].append(mean_loss(model, task, states))
        out["compressed_loss"].append(mean_loss(compress(model, SLOTS), task, states))
        out["probes"].append(probe_model(model, task, fit_states, probe_states, cfg.probe_lambda))
        out["interpolation"].append(interpolation(model, task, states, cfg.interpolation_points))
        if deepest:
            out["fewshot"].append(fewshot(cfg, model, task, x, y, i))
    if deepest:
        out["retrained"] = retrain_interpolated(cfg, ctx, layers, task, model_cfg, res.models, states)
    return out


def retrain_interpolated(cfg: Config, ctx: RunContext, layers: int, task, model_cfg, trained, states) -> dict[str, Any]:
    """The authors' interpolation experiment (reference/mesa.md §2.7): fresh models (new seeds) whose heads average
    their own products with the frozen CompressedAlg products of the trained members, trained with the same budget.
    Returns each member's evaluation history and its final loss on `states`."""
    members = [RETRAIN_SEED_OFFSET + i for i in range(cfg.seeds)]
    fresh = init_models(functools.partial(Transformer, model_cfg), as_members(members))
    start = interpolated(fresh, trained, SLOTS)
    make = lambda key: interpolated(Transformer(model_cfg, key=key), Transformer(model_cfg, key=key), SLOTS)  # noqa: E731
    trainer = Trainer(task, make, training(cfg, cfg.deep_steps, cfg.deep_batch_size, cfg.lr),
                      frozen=Interpolated.frozen_leaves)
    res = ctx.fit(trainer, members, f"interpolated-{layers}", init=start)
    hist = eval_history(res)
    return {**hist, "loss": curves(res.models, task, states).mean(1).tolist(), "seconds": res.seconds}


def fewshot(cfg: Config, model, task, x, y, seed: int) -> dict[str, list]:
    """Few-shot loss curves [example] of one member: plain format, the separator untuned (its N(0, I) initial value:
    the format without tuning), EOS-tuned, and EOS + prefix tuned."""
    def curve(eos=None, prefix=None):
        return np.asarray(repurpose.few_shot_curve(
            repurpose.few_shot_predictions(model, task.token_format, x, y, eos, prefix), y)).tolist()

    key = jax.random.PRNGKey(100 + seed)
    tuned = {}
    for prefix_len in (0, cfg.fewshot_prefix):
        tuned[prefix_len] = repurpose.tune_tokens(
            model, task.token_format, cfg.d, cfg.fewshot_examples, prefix_len=prefix_len, steps=cfg.fewshot_steps,
            batch=cfg.fewshot_batch_size, lr=cfg.fewshot_lr, key=key)
    untuned = repurpose.initial_tokens(key, cfg.d, 0)
    return {"plain": curve(), "eos_untuned": curve(untuned["eos"]), "eos": curve(tuned[0]["eos"]),
            "prefix": curve(tuned[cfg.fewshot_prefix]["eos"], tuned[cfg.fewshot_prefix]["prefix"])}
