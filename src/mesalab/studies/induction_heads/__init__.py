"""Study S5 `induction-heads`: a 2-layer, 1-head attention-only network learns in-context copying abruptly by
forming an induction head (seed 003; Olsson et al. 2022; reference/induction.md §4; DESIGN.md §4 S5).

Sequences BOS x₁ ℓ₁ … x_N ℓ_N x_q with a fresh item→label map each (tasks/copying.py): only copying ℓ from the pair
whose item matches x_q solves it. Tracked over training at every chunk boundary (analysis/heads.py): the copying loss
and accuracy; the layer-1 head's previous-token score (mean attention i → i − 1, Olsson's definition); the layer-2
head's prefix-matching score on Olsson's sequences (BOS + a random block repeated, averaged over block lengths
3, 4 and 6) — the judged induction score — and on the task's own sequences (plotted only: there it is the accuracy mechanism itself); and the layer-2
head's copying score (Olsson's logit-raise evaluator; the OV-eigenvalue form is plotted beside it). A 1-layer
model, which cannot compose a previous-token head with a matching head, is trained alongside as Olsson et al.'s
control. The findings and their rules are in claims.py.
"""

from __future__ import annotations

import functools
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from mesalab.analysis.heads import (
    copying_score, logit_raise_copying_score, prefix_matching_score, previous_token_score,
)
from mesalab.models.run import run as run_model
from mesalab.models.transformer import Transformer
from mesalab.studies.induction_heads import figures as induction_heads_figures
from mesalab.studies.induction_heads.claims import claims  # noqa: F401  (the study's interface)
from mesalab.studies.induction_heads.config import PRESETS, Config, model_of, task_of, training  # noqa: F401
from mesalab.studies.protocol import Experiment, RunContext
from mesalab.tasks.copying import repeated_tokens
from mesalab.train import Trainer
from mesalab.train.engine import member_of
from mesalab.train.loss import masked_accuracy

NAME = "induction-heads"
SUMMARY = "a 2-layer attention-only network learns in-context copying abruptly by forming an induction head"
SOURCE = "Reddy 2024 (seed 003); Olsson et al. 2022"
REPEAT_SEED = 777
N_REPEATS = 256  # Olsson average over 10 examples; more sequences make the score smoother over training


def experiment(cfg: Config) -> Experiment:
    return Experiment(task_of(cfg), model_of(cfg, 2), training(cfg))


def olsson_sequences(cfg: Config, block: int) -> tuple[jax.Array, jax.Array]:
    """Olsson's prefix-matching sequences for one block length: BOS (when the task has one) + a block of distinct
    random non-BOS tokens, repeated as often as the trained positions hold; (ids [B, T], one-hot [B, T, vocab])."""
    task = task_of(cfg)
    repeats = (task.seq_len - int(cfg.bos)) // block
    ids, _ = repeated_tokens(jax.random.fold_in(jax.random.PRNGKey(REPEAT_SEED), block), N_REPEATS,
                             task.n_items + task.n_labels, block, repeats=repeats, distinct=True)
    if cfg.bos:
        ids = jnp.concatenate([jnp.full((N_REPEATS, 1), task.bos_id, jnp.int32), ids], axis=1)
    return ids, jax.nn.one_hot(ids, task.vocab_size, dtype=jnp.float32)


def head_metrics(cfg: Config, model, batch, interventions=None) -> Mapping[str, jax.Array]:
    """Accuracy and head scores from the cache of the evaluation batch and of Olsson's repeated sequences."""
    layers = len(model.blocks)
    sites = tuple(f"blocks.{i}.attn.hook_pattern" for i in range(layers))
    out, cache = run_model(model, batch.inputs, sites=sites, interventions=interventions)
    metrics = {"accuracy": masked_accuracy(model.readout(out), batch.targets, batch.loss_mask),
               "prev_token_l1": previous_token_score(cache["blocks.0.attn.hook_pattern"])[0]}
    if layers > 1:
        last = f"blocks.{layers - 1}.attn.hook_pattern"
        task = task_of(cfg)
        labels = np.arange(task.n_items, task.n_items + task.n_labels)
        scores = {}
        for block in cfg.repeat_blocks:
            ids, onehot = olsson_sequences(cfg, block)
            _, rep = run_model(model, onehot, sites=(last,))
            scores[block] = prefix_matching_score(rep[last], ids)[0]
            metrics[f"prefix_matching_l2_b{block}"] = scores[block]
        metrics["prefix_matching_l2"] = jnp.mean(jnp.stack(list(scores.values())))
        metrics["task_induction_l2"] = prefix_matching_score(cache[last], batch.info["tokens"])[0]
        metrics["copying_l2"] = logit_raise_copying_score(model, layers - 1, 0, labels)
        metrics["ov_eigen_l2"] = copying_score(model, layers - 1, 0, labels)
    return metrics


def train_part(cfg: Config, ctx: RunContext, layers: int) -> dict[str, Any]:
    trainer = Trainer(task_of(cfg), functools.partial(Transformer, model_of(cfg, layers)), training(cfg),
                      metrics_fn=functools.partial(head_metrics, cfg))
    res = ctx.fit(trainer, cfg.seeds, f"{layers}-layer")
    hist = res.history
    curves = {m: [hist[(hist.metric == m) & (hist.member == i)].sort_values("step").value.tolist()
                  for i in range(cfg.seeds)] for m in hist.metric.unique()}
    steps = sorted(hist[hist.metric == "test_loss"].step.unique().tolist())
    out = {"layers": layers, "steps": steps, "curves": curves, "seconds": res.seconds}
    if layers == 2:
        out["patterns"] = attention_maps(cfg, res.models)
    return out


def attention_maps(cfg: Config, models) -> dict[str, list]:
    """Attention patterns of seed 0 on one fresh task sequence, at initialisation and after training (one sequence,
    not a mean: where the query's match sits differs between sequences)."""
    batch = task_of(cfg).sample(jax.random.PRNGKey(REPEAT_SEED + 1), 1)
    initial = Transformer(model_of(cfg, 2), key=jax.random.fold_in(jax.random.PRNGKey(0), 0))
    sites = ("blocks.0.attn.hook_pattern", "blocks.1.attn.hook_pattern")
    maps = {}
    for name, model in (("initial", initial), ("trained", member_of(models, 0))):
        _, cache = run_model(model, batch.inputs, sites=sites)
        maps[name] = [np.asarray(cache[s][0, 0]).tolist() for s in sites]
    return maps


def run(cfg: Config, ctx: RunContext) -> dict[str, Any]:
    return {"two": train_part(cfg, ctx, 2), "one": train_part(cfg, ctx, 1)}


def figures(cfg: Config, results: dict[str, Any], ctx: RunContext):
    return induction_heads_figures.draw(cfg, results, ctx)
