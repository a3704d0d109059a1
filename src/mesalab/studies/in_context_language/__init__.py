"""Study S8 `in-context-language-learning`: which architectures learn random regular languages in context, with
which mechanism, and whether hard-wiring that mechanism helps the others (Akyürek, Wang, Kim, Andreas 2024, "In-Context
Language Learning: Architectures and Algorithms", ICML; reference/icll.md §1; issue 18).

REGBENCH (tasks/dfa.py, the authors' generator): every prompt holds 10–19 strings of one random DFA, joined by a
separator; training and test DFAs are disjoint. Every model is scored on the test split's held-out languages
(measure.py): greedy DFA accuracy, TVD to the true next-token distribution, per-token loss, its TVD to the in-context
3-gram model, and n-gram-head scores for every softmax head. The in-context 2- and 3-gram models with back-off
(algorithms/ngram.py) are the reference rows. The model grid (config.ARCHS): a softmax transformer with learned
positions, linear attention, the mesa layer (not in the paper), an LSTM, a Mamba-style selective SSM (models/ssm.py
says why that SSM), and linear attention and the LSTM with hard-wired n-gram layers (k = 1, 2 at cpu scale, the authors' 1, 2, 3 in
paper: `ngram_orders`) inserted after their
first layer. Each architecture is one ensemble: every training-set size N (data.py: the first N prompts of one data
set) × seed is a member, so seed s starts from the same weights at every N.

How the cpu preset was chosen (before any finding was judged; issue 18: ≤ 30 min on 2 cores, "small models and the
smaller Ns"). Step costs measured on this 2-core machine (batch 32, one jitted AdamW step, forward and backward, one
model alone): at prompts cut to T = 128 input positions, a 2-layer 64-wide transformer (110k parameters) 46 ms,
linear attention 40, the LSTM (80 wide, 107k) 58, the selective SSM (88 wide, d_state 16, 121k) 253, linear
attention + n-gram layers 135, LSTM + n-gram layers 54, and the mesa layer 820 (its Sherman–Morrison scan runs
position by position; 18× the transformer). Hence: the mesa layer is left out of the cpu grid (and of smoke, whose
compile it would double; it runs in paper, or with --set models=…); the SSM keeps Mamba's block but with d_state 8
(Mamba's default is 16), which halves its scan, the dominant cost, and 88 wide (112k parameters); at the authors'
whole prompts (≈ 375 tokens on average, padded to ≈ 720) every step costs ≥ 6× more, so prompts are cut to T = 128
input positions (the first 5–6 of their 10–19 strings; the baselines and every model read the same cut prompts, so
the comparisons stay like with like, but the absolute numbers sit below the paper's). Two training-set sizes, N ∈
{1000, 2500} (the two smallest of the authors'), with 2 seeds each: 4 members per ensemble, ≈ 1.8 s per step for the
six ensembles, so 700 steps fill ≈ 21 minutes, the rest going to compiling, the held-out evaluation and the
untrained (null) run. Two pilots (on N ∈ {1000, 2500}, T = 128) chose the recipe from the transformer's training
dynamics: batch 32 at lr 1e-3 reached a lower held-out loss in 800 steps than batch 16 at lr 3e-3 in 1600 (1.86–1.94
against 1.87–1.99), and both overfit N = 1000 (training loss below the N = 2500 member's, held-out loss above). The
first pilot also trained the LSTM, for its step time, and printed its held-out accuracy (0.50–0.51, the
transformer's 0.54–0.56 at 800 steps): disclosed here; nothing was changed after it, and no finding was computed.
Machines shared with other jobs run this slower (the pilots ran 2.5× slower with four other jobs on the two cores).

What differs from the authors, besides scale: a fixed step budget for every N (they train 200 epochs, so larger N
also trains longer), no validation-based checkpoint selection, batches drawn with replacement, 2 layers for every
architecture (their best LSTMs had 2, their Mambas 4–8, their transformers 2–12), the n-gram layers' k = 1, 2 at
cpu scale (theirs, and the paper preset's, 1, 2, 3).
"""

from __future__ import annotations

import functools
from typing import Any

from mesalab.models.transformer import Transformer
from mesalab.studies.in_context_language import figures as icl_figures
from mesalab.studies.in_context_language import measure
from mesalab.studies.in_context_language.claims import claims  # noqa: F401  (the study's interface)
from mesalab.studies.in_context_language.config import (  # noqa: F401
    PRESETS,
    Config,
    data_of,
    model_of,
    task_of,
    training,
)
from mesalab.studies.protocol import Experiment, RunContext
from mesalab.train import Member, Trainer
from mesalab.train.engine import member_of
from mesalab.train.optim import optimizer_time

NAME = "in-context-language-learning"
SUMMARY = ("transformers learn random regular languages in context better than recurrent and SSM models, with "
           "n-gram heads; hard-wired n-gram layers help the others")
SOURCE = "Akyürek, Wang, Kim, Andreas 2024, In-Context Language Learning: Architectures and Algorithms (ICML)"


def experiment(cfg: Config) -> Experiment:
    return Experiment(task_of(cfg), model_of(cfg, "transformer"), training(cfg))


def members(cfg: Config) -> list[Member]:
    """One member per (N, seed): seeds 0 … S−1 at every N."""
    return [Member(seed, task={"n_use": float(n)}) for n in cfg.n_grid for seed in range(cfg.seeds)]


def param_count(model: Any) -> int:
    """Parameters of one (unstacked) model."""
    import equinox as eqx
    import jax

    return int(sum(a.size for a in jax.tree_util.tree_leaves(eqx.filter(model, eqx.is_array))))


def run(cfg: Config, ctx: RunContext) -> dict[str, Any]:
    data = measure.test_data(data_of(cfg), cfg.eval_prompts)
    rows = measure.ngram_rows(data)
    ms = members(cfg)
    out: dict[str, Any] = {"grid": list(cfg.n_grid), "models": list(cfg.models), "seeds": cfg.seeds,
                           "baselines": measure.baselines(data, rows), "params": {}, "by_model": {}}
    for name in cfg.models:
        trainer = Trainer(task_of(cfg), functools.partial(Transformer, model_of(cfg, name)), training(cfg))
        res = ctx.fit(trainer, ms, name)
        curve = res.curve("test_loss")
        out["steps"], out["time"] = curve["steps"], optimizer_time(training(cfg), curve["steps"])
        entry: dict[str, Any] = {"metrics": {}, "heads": {}, "curves": {}}
        for i, m in enumerate(ms):
            model = member_of(res.models, i)
            key = str(int(m.task["n_use"]))
            entry["metrics"].setdefault(key, []).append(measure.scores(model, data, rows))
            entry["heads"].setdefault(key, []).append(measure.head_scores(model, data, cfg.head_prompts))
            entry["curves"].setdefault(key, []).append(curve["values"][i])
        out["params"][name] = param_count(member_of(res.models, 0))
        out["by_model"][name] = entry
    out["notes"] = notes(cfg, out)
    return out


def notes(cfg: Config, r: dict[str, Any]) -> list[str]:
    """The learning-curve table under the report's rows: mean accuracy / TVD over seeds per model and N."""
    b = r["baselines"]
    lines = [(f"Held-out: the first {cfg.eval_prompts} test prompts (DFAs never trained on), cut to "
              f"{data_of(cfg).seq_len} input positions. In-context 2-gram {b['2']['accuracy']:.3f} / "
              f"{b['2']['tvd']:.3f}, 3-gram {b['3']['accuracy']:.3f} / {b['3']['tvd']:.3f} (accuracy / TVD).")]
    for name, entry in r["by_model"].items():
        cells = [f"N = {n}: " + " / ".join(f"{sum(s[k] for s in seeds) / len(seeds):.3f}" for k in ("accuracy", "tvd"))
                 for n, seeds in entry["metrics"].items()]
        lines.append(f"{name} ({r['params'][name]:,} parameters): " + "; ".join(cells))
    return lines


def figures(cfg: Config, results: dict[str, Any], ctx: RunContext):
    return icl_figures.draw(cfg, results, ctx)
