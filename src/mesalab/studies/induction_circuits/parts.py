"""Training parts of the induction-circuits study: the Fig. 5b conditions as interventions held through training, the
measures recorded at every chunk boundary, and the head analysis of the final unclamped models.

Layers and heads are 0-indexed as in the authors' `opto.py` (the paper's "layer 1" is layer 0 here, "layer 2"
layer 1; reference/induction.md §3.3). Label tokens sit at positions 1 and 3, the query at 4.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from mesalab.analysis.heads import previous_token_score
from mesalab.models import clamps, hooks
from mesalab.models.run import run as run_model
from mesalab.models.transformer import Transformer
from mesalab.studies.induction_circuits.config import Config, model_of, training
from mesalab.studies.protocol import RunContext
from mesalab.tasks.exemplar_label import ExemplarLabelConfig, eval_sets
from mesalab.train import Trainer
from mesalab.train.engine import Member, member_of
from mesalab.train.loss import default_loss, masked_cross_entropy

EVAL_SEED = 5151
# The authors' phase-change rule: the first evaluation at which the training loss is below 0.4·ln 2 (ln 2: picking
# one of the two context labels at random; reference/induction.md §3.4).
PHASE_LOSS = 0.4 * math.log(2)
P1, P2 = "blocks.0.attn.hook_pattern", "blocks.1.attn.hook_pattern"

# The Fig. 5b conditions (reference/induction.md §3.3), with the steps of the circuit each one provides.
CONDITIONS: dict[str, str] = {
    "none": "no clamp",
    "prev_token": "1: one previous-token head",
    "perfect_layer": "1, 2: perfect layer 1",
    "perfect_match": "1, 2, 3qk, 4: perfect match",
    "perfect_copy": "3v, 5: perfect copy",
    "layer1_copy": "1, 2, 3v, 5: layer 1 + copy",
}
# Conditions whose output logits are written from the kept head's scores alone: the other layer-2 heads cannot reach
# the loss, so "all heads" trains exactly the same model as "one head kept" and is not trained twice.
LOGITS_FROM_KEPT_HEAD = ("perfect_copy", "layer1_copy")
VARIANTS = {"one": "one layer-2 head kept (the authors' Fig. 5b)", "all": "all layer-2 heads"}


def condition_interventions(cfg: Config, task: ExemplarLabelConfig, condition: str, variant: str) -> dict[str, Any]:
    """The interventions held through training for a condition; with variant "one", the values of every layer-2
    head but `kept_head` are ablated too (models/clamps.py builds each clamp)."""
    h = cfg.kept_head
    ivs = {
        "none": {},
        "prev_token": clamps.prev_token(0, cfg.prev_head, task.seq_len),
        "perfect_layer": clamps.perfect_layer(0),
        # the authors' perfect-match run clamps the query row to the ideal induction pattern (opto_induction_heads)
        "perfect_match": clamps.induction(1, h),
        "perfect_copy": clamps.perfect_copy(1, h, task.label_slice),
        "layer1_copy": clamps.perfect_copy(1, h, task.label_slice, first_pass=clamps.shifted_embedding_pass(0)),
    }[condition]
    if variant == "one":
        ivs = hooks.merge(ivs, clamps.ablate_values(1, others(cfg, h)))
    return ivs


def others(cfg: Config, head: int) -> list[int]:
    return [i for i in range(cfg.n_heads) if i != head]


def evaluator_batches(task: ExemplarLabelConfig, size: int) -> dict[str, Any]:
    """Fixed batches of the three held-out evaluators (the training one is the Trainer's evaluation batch)."""
    return {name: t.sample(jax.random.PRNGKey(EVAL_SEED), size) for name, t in eval_sets(task).items()
            if name != "train"}


def query_accuracy(logits: jax.Array, batch: Any) -> jax.Array:
    return jnp.mean((jnp.argmax(logits[:, -1], axis=-1) == batch.info["label"]).astype(jnp.float32))


def induction_strength(pattern: jax.Array, batch: Any) -> jax.Array:
    """[head] the authors' induction strength: mean over sequences of the query's attention on the correct label
    minus that on the incorrect one (reference/induction.md §3.4). pattern: [B, head, q, k]."""
    row, right = pattern[:, :, -1, :], batch.info["match_position"]
    b = jnp.arange(row.shape[0])
    return jnp.mean(row[b, :, right] - row[b, :, 4 - right], axis=0)


def step_metrics(task: ExemplarLabelConfig, evaluators: Mapping[str, Any], model, batch, interventions=None
                 ) -> dict[str, jax.Array]:
    """At a chunk boundary, under the condition's interventions: accuracy on the training evaluator (its loss is the
    Trainer's test_loss), loss and accuracy on each held-out evaluator, and per head the layer-2 induction strength
    and the layer-1 previous-token score (Olsson's mean attention i → i − 1)."""
    ivs = hooks.resolve_batch(interventions, batch)
    out, cache = run_model(model, batch.inputs, sites=(P1, P2), interventions=ivs)
    metrics = {"accuracy": query_accuracy(model.readout(out), batch)}
    strength, prev = induction_strength(cache[P2], batch), previous_token_score(cache[P1])
    for h in range(strength.shape[0]):
        metrics[f"induction_h{h}"] = strength[h]
        metrics[f"prev_token_h{h}"] = prev[h]
    for name, b in evaluators.items():
        logits = model.readout(run_model(model, b.inputs, interventions=hooks.resolve_batch(interventions, b)))
        metrics[f"{name}_loss"] = masked_cross_entropy(logits[:, -1], b.targets[:, -1], b.loss_mask[:, -1])
        metrics[f"{name}_accuracy"] = query_accuracy(logits, b)
    return metrics


def phase_steps(steps: Sequence[int], losses: Sequence[Sequence[float]]) -> list[float]:
    """Per member, the first recorded step whose training-distribution loss is below PHASE_LOSS (nan: never)."""
    out = []
    for curve in losses:
        hit = [s for s, v in zip(steps, curve) if np.isfinite(v) and v < PHASE_LOSS]
        out.append(float(hit[0]) if hit else float("nan"))
    return out


def train_part(cfg: Config, ctx: RunContext, part: str, task: ExemplarLabelConfig, ivs: Mapping[str, Any],
               members: int | Sequence[Member], steps: int, chunk_steps: int, evaluators: bool = True
               ) -> tuple[dict[str, Any], Any]:
    """Train one ensemble with `ivs` held through training, recording metrics every `chunk_steps`; returns (its
    curves [member][step] and phase-change steps, the trained models)."""
    metrics = functools.partial(step_metrics, task, evaluator_batches(task, cfg.eval_size) if evaluators else {})
    trainer = Trainer(task, functools.partial(Transformer, model_of(cfg, task)), training(cfg, steps, chunk_steps),
                      loss_fn=hooks.batch_resolved(default_loss(task)), metrics_fn=metrics, interventions=ivs)
    res = ctx.fit(trainer, members, part)
    hist = res.history
    n = len(res.members)
    curves = {m: [hist[(hist.metric == m) & (hist.member == i)].sort_values("step").value.tolist() for i in range(n)]
              for m in hist.metric.unique()}
    loss = res.curve("test_loss")
    out = {"steps": loss["steps"], "time": loss["time"], "curves": curves, "seconds": res.seconds,
           "phase": phase_steps(loss["steps"], curves["test_loss"]),
           "members": [{"seed": m.seed, **dict(m.task)} for m in res.members]}
    return out, res.models


def conditions(cfg: Config, ctx: RunContext) -> tuple[dict[str, Any], Any]:
    """Every Fig. 5b condition, one layer-2 head kept and all heads, seeds as one ensemble per condition (each
    condition compiles its own program: the clamps differ in structure). Returns (parts by "condition/variant",
    the final unclamped all-heads models)."""
    task, out, unclamped = cfg.task(), {}, None
    for condition in CONDITIONS:
        for variant in VARIANTS:
            if variant == "all" and (condition in LOGITS_FROM_KEPT_HEAD
                                     or (condition != "none" and not cfg.all_heads_clamped)):
                continue
            steps, chunk = ((cfg.steps, cfg.chunk_steps) if condition == "none" else
                            (cfg.clamp_steps, cfg.clamp_chunk_steps))
            ivs = condition_interventions(cfg, task, condition, variant)
            part, models = train_part(cfg, ctx, f"{condition}-{variant}", task, ivs, cfg.seeds, steps, chunk)
            out[f"{condition}/{variant}"] = part
            if (condition, variant) == ("none", "all"):
                unclamped = models
    return out, unclamped


@eqx.filter_jit
def _layer2_patterns(model, inputs):
    return run_model(model, inputs, sites=(P2,))


@eqx.filter_jit
def _accuracy(model, batch, ivs):
    return query_accuracy(model.readout(run_model(model, batch.inputs, interventions=ivs)), batch)


def _float_accuracy(model, batch, ivs) -> float:
    return float(_accuracy(model, batch, ivs))


def head_analysis(cfg: Config, models: Any) -> dict[str, list]:
    """The final unclamped all-heads models on a fixed training-distribution batch (per seed): full accuracy; the
    accuracy with only one layer-2 head kept (the others' values ablated), per head; the strongest head by induction
    strength and the accuracy with it ablated; and all layer-1 heads' values ablated, with layer-2 patterns and values
    held at their clean values (only layer 1's direct path removed) and without (every path removed)."""
    batch = cfg.task().sample(jax.random.PRNGKey(EVAL_SEED + 1), cfg.eval_size)
    every = list(range(cfg.n_heads))
    out: dict[str, list] = {k: [] for k in ("full", "keep_one", "strength", "strongest", "ablate_strongest",
                                            "l1_ablated_preserved", "l1_ablated")}
    for i in range(cfg.seeds):
        model = member_of(models, i)
        _, cache = _layer2_patterns(model, batch.inputs)
        strength = np.asarray(induction_strength(cache[P2], batch)).tolist()
        strongest = int(np.argmax(strength))
        acc = functools.partial(_float_accuracy, model, batch)
        out["full"].append(acc({}))
        out["keep_one"].append([acc(clamps.ablate_values(1, others(cfg, h))) for h in every])
        out["strength"].append(strength)
        out["strongest"].append(strongest)
        out["ablate_strongest"].append(acc(clamps.ablate_values(1, [strongest])))
        out["l1_ablated_preserved"].append(acc(hooks.merge(clamps.preserve(["patterns", "values"], [1]),
                                                           clamps.ablate_values(0, every))))
        out["l1_ablated"].append(acc(clamps.ablate_values(0, every)))
    return out


def class_grid(cfg: Config, ctx: RunContext) -> dict[str, Any]:
    """The match subcircuit's timing against the class count: the "layer 1 + copy" condition (only matching, 3qk + 4,
    left to learn), one head kept, every class count × seed one member of one ensemble (classes_used is dynamic)."""
    task = cfg.task(n_classes=max(cfg.class_grid))
    members = [Member(s, task={"classes_used": float(k)}) for k in cfg.class_grid for s in range(cfg.scaling_seeds)]
    ivs = condition_interventions(cfg, task, "layer1_copy", "one")
    part, _ = train_part(cfg, ctx, "classes", task, ivs, members, cfg.scaling_steps,
                         cfg.clamp_chunk_steps, evaluators=False)
    return {"grid": list(cfg.class_grid), **_by_grid(part, len(cfg.class_grid), cfg.scaling_seeds)}


def label_grid(cfg: Config, ctx: RunContext) -> dict[str, Any]:
    """The copy subcircuit's timing against the label count: the "perfect match" condition (only copying, 3v + 5,
    left to learn), one head kept, one ensemble of seeds per label count (L sets the shapes)."""
    parts = []
    for labels in cfg.label_grid:
        task = cfg.task(n_labels=labels)
        ivs = condition_interventions(cfg, task, "perfect_match", "one")
        part, _ = train_part(cfg, ctx, f"labels-{labels}", task, ivs, cfg.scaling_seeds, cfg.scaling_steps,
                             cfg.clamp_chunk_steps, evaluators=False)
        parts.append(part)
    return {"grid": list(cfg.label_grid), "steps": parts[0]["steps"],
            "loss": [p["curves"]["test_loss"] for p in parts], "phase": [p["phase"] for p in parts],
            "seconds": sum(p["seconds"] for p in parts)}


def _by_grid(part: dict[str, Any], points: int, seeds: int) -> dict[str, Any]:
    """Members ordered grid point-major → loss [point][seed][step] and phase [point][seed]."""
    loss, phase = part["curves"]["test_loss"], part["phase"]
    return {"steps": part["steps"], "seconds": part["seconds"],
            "loss": [loss[p * seeds:(p + 1) * seeds] for p in range(points)],
            "phase": [phase[p * seeds:(p + 1) * seeds] for p in range(points)]}
