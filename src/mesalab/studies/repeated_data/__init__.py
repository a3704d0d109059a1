"""Study S9a `repeated-data`: repeating a small share of the training data many times hurts most at a middle range
of repetition counts, can make test loss rise midway through training, and damages induction heads (Hernandez et
al. 2022, "Scaling laws and interpretability of learning from repeated data"; reference/induction.md §6; issue 20
part A). The paper has no public code, and only its abstract and introduction could be read.

Data (task.py): BOS + Zipfian background tokens with a span of random tokens written twice, so that in-context
copying pays off; 10% of every batch's rows come from a fixed repeated subset of D / r sequences (D: the subset rows
drawn over training), each seen r times on average. One ensemble per model trains every r in `repeats` × `seeds`
(the subset size is a member knob: one compiled program per model); seed s has the same initial weights and the
same fresh rows at every r, so the r's are compared pairwise. Models: a 2-layer transformer with 4 heads a layer,
attention-only, and the same with MLPs (d_mlp = 4·d_model). Measured at every evaluation (measures.py): the loss on
unique data, on the repeated subset and on the copyable tokens; Olsson's prefix-matching and copying scores on
repeated random tokens (the prefix-matching one is S5's induction score). The findings and their rules are in
claims.py; r = 1 (no repetition) is each finding's reference, and untrained models the runner's null.

What Hernandez et al. leave unknown, and what this study chose instead (before any run): the data (theirs is
natural text; here a synthetic Zipf background with copyable spans, where copying predicts 7 of the 31 targets),
the model sizes (1.5M–800M there; here d_model 64: 43k parameters attention-only, 109k with MLPs), the r grid (theirs unknown beyond the
headline 0.1% × 100; here r ∈ {1, 4, 16, 64, 256} at 10% of tokens, subsets of 2,250 to 35 sequences at cpu
scale), exact repetition counts (Poisson around r here: the sampler sees a key, not the step; task.py), and how
induction-head damage was measured (here Olsson's evaluators, as reference/induction.md §6 guesses).

How the cpu preset was chosen (before any finding was judged; 2 cores, the issue's ≤ 20 minutes, the brief's ≤ 30):
the recipe (span 8, no LayerNorm, init 0.1, Adam 3e-3, 3,000 steps at batch 32) is the cheapest found in which both
r = 1 seeds form an induction head (config.py says which probes). Measured speed of the full ensembles (10 members:
5 r × 2 seeds, evaluations every 100 steps) on the shared 2 cores: attention-only 9.9 steps/s at load 6, with MLPs
3.0 steps/s at load 12 (≈ 6 at load 6); compiling ≈ 40–80 s per model. So ≈ 300 s + 500 s of training, ≈ 15 minutes
with the null run and figures at load 6, and past 20 minutes only on a machine loaded well beyond that. Two seeds (a
strict majority is then both) and five r's are what that budget holds; the r grid spans subsets of 2,250 to 35
sequences (D = 3 rows × 3,000 steps = 9,000 subset rows), from far more sequences than the toy can memorise to
few enough to learn by heart.
"""

from __future__ import annotations

import functools
from typing import Any

from mesalab.models.transformer import Transformer
from mesalab.studies.protocol import Experiment, RunContext
from mesalab.studies.repeated_data import figures as repeated_figures
from mesalab.studies.repeated_data.claims import claims  # noqa: F401  (the study's interface)
from mesalab.studies.repeated_data.config import (  # noqa: F401
    PRESETS,
    Config,
    model_of,
    subset_size,
    task_of,
    training,
)
from mesalab.studies.repeated_data.measures import metrics
from mesalab.train import Member, Trainer
from mesalab.train.optim import optimizer_time

NAME = "repeated-data"
SUMMARY = "repeating a small share of the data hurts most at middle repetition counts and damages induction heads"
SOURCE = "Hernandez et al. 2022, Scaling laws and interpretability of learning from repeated data (arXiv 2205.10487)"
MEASURES = ("unique_loss", "subset_loss", "copy_loss", "prefix_matching", "copying", "prev_token")


def experiment(cfg: Config) -> Experiment:
    return Experiment(task_of(cfg), model_of(cfg, cfg.parts[0]), training(cfg))


def members(cfg: Config) -> list[Member]:
    """One member per (r, seed): seeds 0 … S−1 at every r (same initial weights and fresh rows for a seed)."""
    return [Member(seed, task={"subset_size": float(subset_size(cfg, r))}) for r in cfg.repeats
            for seed in range(cfg.seeds)]


def train_part(cfg: Config, ctx: RunContext, part: str) -> dict[str, Any]:
    """One model's ensemble over the r grid: its measures' curves, by r then seed."""
    trainer = Trainer(task_of(cfg), functools.partial(Transformer, model_of(cfg, part)), training(cfg),
                      metrics_fn=functools.partial(metrics, cfg))
    ms = members(cfg)
    res = ctx.fit(trainer, ms, part)
    hist = res.history
    steps = sorted(hist[hist.metric == "unique_loss"].step.unique().tolist())
    curves = {}
    for m in MEASURES:
        rows = hist[hist.metric == m]
        per_member = [rows[rows.member == i].sort_values("step").value.tolist() for i in range(len(ms))]
        curves[m] = {str(r): [per_member[i] for i, mem in enumerate(ms) if mem.task["subset_size"]
                              == float(subset_size(cfg, r))] for r in cfg.repeats}
    return {"steps": steps, "time": optimizer_time(training(cfg), steps), "curves": curves, "seconds": res.seconds}


def run(cfg: Config, ctx: RunContext) -> dict[str, Any]:
    return {"repeats": list(cfg.repeats), "subset_sizes": [subset_size(cfg, r) for r in cfg.repeats],
            "parts": {part: train_part(cfg, ctx, part) for part in cfg.parts}}


def figures(cfg: Config, results: dict[str, Any], ctx: RunContext):
    return repeated_figures.draw(cfg, results, ctx)
