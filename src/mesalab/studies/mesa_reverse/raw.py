"""The mesa dataset (von Oswald et al. 2023b §4; reference/mesa.md §2.8): a softmax model on raw tokens s_t must
build the pairs (s_{t−1}, s_t) itself. Layer 1's output is probed for earlier states, and its sensitivity to its own,
the previous and older tokens is measured."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mesalab.analysis.probes import by_position, probe
from mesalab.analysis.sensitivity import own_previous_other, token_sensitivity
from mesalab.studies.mesa_reverse.config import Config, training
from mesalab.studies.mesa_reverse.deep import cached_run, eval_history, mean_loss, train
from mesalab.studies.protocol import RunContext
from mesalab.tasks.dynamics import probe_targets, tokens
from mesalab.train import member_of

LAGS = ("s_t-1", "s_t-2", "s_t-3", "s_next")
SENSITIVITY_SEQUENCES = 16


def run_raw(cfg: Config, ctx: RunContext, states, fit_states, probe_states) -> dict[str, Any]:
    name = f"softmax-raw-{cfg.raw_layers}"
    task, _, res = train(cfg, ctx, name, training(cfg, cfg.raw_steps, cfg.raw_batch_size, cfg.raw_lr))
    out: dict[str, Any] = {"model": name, "r2": [], "r2_embed": [], "sensitivity": [], "loss": [],
                           "seconds": res.seconds, "history": eval_history(res)}
    sites = ("hook_embed", "blocks.0.hook_resid_post")
    fit_t, test_t = probe_targets(fit_states, lags=(1, 2, 3)), probe_targets(probe_states, lags=(1, 2, 3))
    for i in range(cfg.seeds):
        model = member_of(res.models, i)
        out["loss"].append(mean_loss(model, task, states))

        def acts(states):
            _, cache = cached_run(model, tokens(states, task.token_format), sites=sites)
            return jnp.stack([by_position(cache[s]) for s in sites])  # [site, T, N, f]

        a_fit, a_test = acts(fit_states), acts(probe_states)
        # Before position k the target s_{t−k} is the constant 0 and R² is undefined; the claims and the figure
        # skip those positions. Site 0 (the embedding: the token alone) is the control.
        r2 = {k: np.asarray(probe(a_fit, by_position(fit_t[k]), a_test, by_position(test_t[k]),
                                  cfg.probe_lambda).r2) for k in LAGS}
        out["r2"].append({k: v[1].tolist() for k, v in r2.items()})
        out["r2_embed"].append({k: v[0].tolist() for k, v in r2.items()})
        norms = jax.vmap(lambda t: token_sensitivity(model, t, sites[1]))(
            tokens(probe_states[:SENSITIVITY_SEQUENCES], task.token_format))
        out["sensitivity"].append(np.asarray(jnp.mean(jax.vmap(own_previous_other)(norms), 0)).tolist())
    return out
