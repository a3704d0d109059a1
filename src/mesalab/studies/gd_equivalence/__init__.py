"""S1 gd-equivalence (von Oswald et al. 2023): a trained linear self-attention layer is one step of gradient descent
on in-context linear regression, and deeper stacks beat plain GD.

Measured here (DESIGN.md §4 S1): the trained 1-layer LSA's loss against GD-1 at the optimal η (closed form, fitted
on separate tasks); agreement of predictions and of sensitivities ∂ŷ/∂x_q with the GD construction; the trained
weights against the construction up to the K-Q / V-P scale symmetry; the interpolated model (one_layer.py);
out-of-distribution input scales and the iterated layer with damping (transfer.py); 2–5-layer stacks against K-step
GD and GD++, fitted to its optimum and in the authors' way (depth.py); and the interleaved-token model whose first
layer should learn to copy (copying.py); §5's MLP feature map + LSA on sine regression against the same MLP under
a fixed GD head (nonlinear.py). The rows and their thresholds are in claims.py, the figures in figures.py.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mesalab.studies.gd_equivalence import depth, transfer
from mesalab.studies.gd_equivalence import figures as gd_equivalence_figures
from mesalab.studies.gd_equivalence.claims import (  # noqa: F401  (public surface)
    claims, copy_row, depth_rows, nonlinear_row,
)
from mesalab.studies.gd_equivalence.config import (  # noqa: F401  (public surface)
    ETA_FIT_SEED, PRESETS, RIDGE_LAMBDA, VALIDATION_SEED, Config,
)
from mesalab.studies.gd_equivalence.copying import run_copying
from mesalab.studies.gd_equivalence.nonlinear import run_nonlinear
from mesalab.studies.gd_equivalence.one_layer import experiment, fit_eta, lsa_config, run_one_layer  # noqa: F401
from mesalab.studies.protocol import Figure, RunContext

NAME = "gd-equivalence"
SUMMARY = "one linear self-attention layer learns one step of gradient descent"
SOURCE = "von Oswald et al. 2023, Transformers learn in-context by gradient descent (ICML)"


def run(cfg: Config, ctx: RunContext) -> dict[str, Any]:
    out, models = run_one_layer(cfg, ctx)
    task = experiment(cfg).task
    out["ood"] = transfer.ood_scan(models, task, out["eta"], np.linspace(0.5, 2.0, cfg.ood_points),
                                   cfg.n_validation, VALIDATION_SEED)
    out["iterated"] = transfer.iteration_curves(models, task, out["eta"], cfg.iterations, cfg.damping,
                                                cfg.n_validation, VALIDATION_SEED)
    out["depth"] = depth.run_depths(cfg, ctx, task, experiment(cfg).model) if cfg.depths else None
    out["copying"] = run_copying(cfg, ctx, VALIDATION_SEED) if cfg.copy_steps else None
    out["nonlinear"] = run_nonlinear(cfg, ctx) if cfg.nonlinear_steps else None
    return out


def figures(cfg: Config, results: dict[str, Any], ctx: RunContext) -> list[Figure]:
    return gd_equivalence_figures.draw(cfg, results, ctx)
