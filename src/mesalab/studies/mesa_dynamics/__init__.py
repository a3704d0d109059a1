"""S2 mesa-dynamics (von Oswald et al. 2023b): autoregressive transformers trained on linear dynamics become
mesa-optimizers, and the mesa layer solves the in-context least-squares problem outright.

Measured here (DESIGN.md §4 S2; reference/mesa.md §2.2–2.7), all on one fixed test set:
- the default model (2-layer, 4-head causal linear attention on constructed tokens, the authors' sandbox settings)
  after 2.5k steps of their 20k-step schedule, against their 0.431 mean loss;
- per-position loss curves of every trained model next to per-position least squares (all pairs seen so far, and
  the authors' one-pair-fewer convention) and one GD step with the best η;
- a comparison group trained alike: a single mesa layer, the softmax + mesa hybrid, deeper linear and softmax
  stacks and a full transformer on raw tokens (models.py names them);
- the 1-layer, 2-head linear model on masked tokens and its compressed form (analysis/compress.py), whose η-term is
  one GD step from W_0 = 0.

Layout: config.py (Config, PRESETS), models.py (the named models), training.py (the parts and what is measured on
them), claims.py (findings and checks with their thresholds and sources), figures.py.
"""

from __future__ import annotations

from typing import Any

from mesalab.studies.mesa_dynamics import figures as _figures
from mesalab.studies.mesa_dynamics.claims import claims
from mesalab.studies.mesa_dynamics.config import PRESETS, Config
from mesalab.studies.mesa_dynamics.training import (
    baselines, curves, experiment, one_layer_analysis, run, scale_notes, setup, test_states, train_part, training,
)
from mesalab.studies.protocol import Figure, RunContext

NAME = "mesa-dynamics"
SUMMARY = "transformers trained on linear dynamics become mesa-optimizers; the mesa layer solves least squares"
SOURCE = "von Oswald et al. 2023b, Uncovering mesa-optimization algorithms in Transformers (arXiv 2309.05858)"


def figures(cfg: Config, results: dict[str, Any], ctx: RunContext) -> list[Figure]:
    return _figures.draw(cfg, results, ctx)


__all__ = ["NAME", "SUMMARY", "SOURCE", "Config", "PRESETS", "run", "claims", "figures", "experiment", "curves",
           "baselines", "one_layer_analysis", "scale_notes", "setup", "test_states", "train_part", "training"]
