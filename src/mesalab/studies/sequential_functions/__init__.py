"""Study S9b `sequential-functions`: transformers learn sliding-window sequential function classes in context, and
keep part of that ability when a share of the labels they are shown is random (Campbell et al. 2023; reference/
icll.md §3; issue 20 part B).

Sequences x_1, ỹ_1, …, x_N in Garg et al.'s interleaved format, y_t = wᵀ[x_{t−k+1}; …; x_t] / √(k·d) with w drawn per
sequence, a share p of the shown labels ỹ replaced by N(0, 1) draws and the targets kept clean (tasks/sequential.py).
One ensemble trains every p in `noise_grid` × `seeds` (p is a member knob: one compiled program). At the end each
member is measured on one fixed set of fresh sequences at its own p: the squared error at every example position,
beside three in-context learners computed on the same sequences (algorithms/windowed.py): least squares on the
window features (the right model class), least squares on the last input only (window-blind), and the no-context
predictor 0.

What Campbell et al. leave unknown, and what this study chose instead (before any run): the window's definition
(y_t a linear function of the last k inputs, k = 2, d = 2: 4 unknowns per sequence, identified from 4 examples; N =
12), the label distribution (Var y = 1) and the randomisation (a shown label replaced by an N(0, 1) draw with
probability p, the target kept clean), the model (Garg et al.'s "tiny" GPT-2: 3 layers, width 64, 2 heads), the
grid p ∈ {0, 0.25, 0.5, 0.75} and the "moderate" p = 0.5. Their paper's numbers could not be read (only the
abstract), so the thresholds come from the plain statements and from Garg et al. (claims.py).
"""

from __future__ import annotations

import functools
from typing import Any

import equinox as eqx
import jax
import numpy as np

from mesalab.algorithms.windowed import no_context, windowed_least_squares
from mesalab.models.run import run as run_model
from mesalab.models.transformer import Transformer
from mesalab.studies.protocol import Experiment, RunContext
from mesalab.studies.sequential_functions import figures as sequential_figures
from mesalab.studies.sequential_functions.claims import claims  # noqa: F401  (the study's interface)
from mesalab.studies.sequential_functions.config import PRESETS, Config, model_of, task_of, training  # noqa: F401
from mesalab.train import Member, Trainer
from mesalab.train.engine import member_of
from mesalab.train.optim import optimizer_time

NAME = "sequential-functions"
SUMMARY = "transformers learn sliding-window sequential functions in context, and partly keep it under random labels"
SOURCE = "Campbell et al. 2023, Can Transformers Learn Sequential Function Classes In Context? (arXiv 2312.12655)"
EVAL_SEED = 4321
_least_squares = jax.jit(windowed_least_squares, static_argnums=2)


@eqx.filter_jit
def _predict(model: Any, inputs: jax.Array) -> jax.Array:
    return model.readout(run_model(model, inputs))


def experiment(cfg: Config) -> Experiment:
    return Experiment(task_of(cfg), model_of(cfg), training(cfg))


def members(cfg: Config) -> list[Member]:
    """One member per (p, seed): seeds 0 … S−1 at every p, so seed s sees the same initial weights at every p."""
    return [Member(seed, task={"label_noise": float(p)}) for p in cfg.noise_grid for seed in range(cfg.seeds)]


def position_errors(cfg: Config, model: Any, p: float) -> dict[str, list[float]]:
    """Mean squared error at each example position 1 … N on the fixed evaluation set at share p: the model and the
    three in-context learners, all on the same sequences (the shown labels noisy, the errors against the clean y)."""
    batch = task_of(cfg, p).sample(jax.random.PRNGKey(EVAL_SEED), cfg.eval_sequences)
    x, y, shown = batch.info["x"], np.asarray(batch.info["y"]), batch.info["shown"]
    pred = np.asarray(_predict(model, batch.inputs))[:, ::2, 0]  # the predictions at the x tokens
    learners = {"model": pred, "lsq": np.asarray(_least_squares(x, shown, cfg.window)),
                "blind": np.asarray(_least_squares(x, shown, 1)), "none": np.asarray(no_context(x))}
    return {name: np.mean((p_ - y) ** 2, axis=0).tolist() for name, p_ in learners.items()}


def run(cfg: Config, ctx: RunContext) -> dict[str, Any]:
    trainer = Trainer(task_of(cfg), functools.partial(Transformer, model_of(cfg)), training(cfg))
    ms = members(cfg)
    res = ctx.fit(trainer, ms, "gpt2-tiny")
    hist = res.history
    steps = sorted(hist[hist.metric == "test_loss"].step.unique().tolist())
    curves = [hist[(hist.metric == "test_loss") & (hist.member == i)].sort_values("step").value.tolist()
              for i in range(len(ms))]
    by_p: dict[str, Any] = {}
    for p in cfg.noise_grid:
        idx = [i for i, m in enumerate(ms) if m.task["label_noise"] == float(p)]
        errs = [position_errors(cfg, member_of(res.models, i), float(p)) for i in idx]
        by_p[f"{p:g}"] = {"model": [e["model"] for e in errs], "lsq": errs[0]["lsq"], "blind": errs[0]["blind"],
                          "none": errs[0]["none"], "curves": [curves[i] for i in idx]}
    return {"grid": [float(p) for p in cfg.noise_grid], "steps": steps, "time": optimizer_time(training(cfg), steps),
            "by_p": by_p, "seconds": res.seconds}


def figures(cfg: Config, results: dict[str, Any], ctx: RunContext):
    return sequential_figures.draw(cfg, results, ctx)
