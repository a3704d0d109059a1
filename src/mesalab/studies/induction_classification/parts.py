"""Training parts: an ensemble trained on one task with its metric curves, the attention maps of seed 0, the final
models evaluated on test sets drawn at each member's own task values, and the phenomenological model's flows."""

from __future__ import annotations

import functools
from typing import Any, Mapping, Sequence

import equinox as eqx
import jax
import numpy as np

from mesalab.analysis import phenomenology as pheno
from mesalab.analysis.heads import classification_progress
from mesalab.config import override
from mesalab.models.run import run as run_model
from mesalab.models.transformer import Transformer
from mesalab.studies.induction_classification.config import Config, model_of, training
from mesalab.studies.protocol import RunContext
from mesalab.tasks.classification import ClassificationConfig, eval_sets
from mesalab.train import Trainer
from mesalab.train.engine import Member, member_of

EVAL_SEED = 4242
EVAL_SETS = ("ic", "ic2", "iw")


def _test_batches(task: ClassificationConfig, size: int) -> dict[str, Any]:
    sets = eval_sets(task)
    return {name: sets[name].sample(jax.random.PRNGKey(EVAL_SEED), size) for name in EVAL_SETS}


def eval_metrics(task: ClassificationConfig, size: int, model, batch, interventions=None) -> Mapping[str, Any]:
    """Accuracy on IC, IC2 and IW, and the progress measures on IC, on fixed sequences (the same at every step)."""
    out = {}
    for name, b in _test_batches(task, size).items():
        m = classification_progress(model, b.inputs, b.info["context_labels"], b.info["label"], task.n_labels)
        out[f"{name}_accuracy"] = m.pop("accuracy")
        if name == "ic":
            out.update(m)
    return out


def train_part(cfg: Config, ctx: RunContext, part: str, task: ClassificationConfig, seeds: int | list[Member],
               steps: int, maps: bool = False, sweep: bool = False) -> dict[str, Any]:
    """Train an ensemble (seeds, or Members with their own task values) through ctx.fit and collect its metric
    curves [seed][step] (test_loss is on each member's own training distribution); a sweep's curves are sampled
    every sweep_chunk_steps. With Members carrying task values, "own" holds the final models' IC, IC2 and IW
    accuracy on test sets drawn at those values."""
    chunk = cfg.sweep_chunk_steps if sweep else cfg.chunk_steps
    trainer = Trainer(task, functools.partial(Transformer, model_of(cfg, task)), training(cfg, steps, chunk),
                      metrics_fn=functools.partial(eval_metrics, task, cfg.eval_size))
    res = ctx.fit(trainer, seeds, part)
    n = len(res.members)
    hist = res.history
    curves = {m: [hist[(hist.metric == m) & (hist.member == i)].sort_values("step").value.tolist() for i in range(n)]
              for m in hist.metric.unique()}
    loss = res.curve("test_loss")
    out = {"steps": loss["steps"], "time": loss["time"], "curves": curves,
           "seconds": res.seconds, "n_labels": task.n_labels, "burstiness": task.burstiness}
    if maps:
        out["patterns"] = attention_maps(cfg, task, res.models)
    if any(m.task for m in res.members):
        out["own"] = own_accuracy(cfg, task, res.models, res.members)
    return out


@eqx.filter_jit
def _progress(model, inputs, context_labels, label, n_labels):
    return classification_progress(model, inputs, context_labels, label, n_labels)


def own_accuracy(cfg: Config, task: ClassificationConfig, models, members: Sequence[Member]) -> dict[str, list]:
    """Final IC, IC2 and IW accuracy of each member on test sets drawn at its own task values (review S4-D3: the
    reference's test sets share the training generator), [member] lists keyed by test set."""
    out: dict[str, list] = {name: [] for name in EVAL_SETS}
    for i, member in enumerate(members):
        batches = _test_batches(override(task, **member.task), cfg.eval_size)
        model = member_of(models, i)
        for name, b in batches.items():
            m = _progress(model, b.inputs, b.info["context_labels"], b.info["label"], task.n_labels)
            out[name].append(float(m["accuracy"]))
    return out


def attention_maps(cfg: Config, task: ClassificationConfig, models) -> dict[str, list]:
    """Layer-1 and layer-2 patterns of seed 0 on one IC sequence, at initialisation and after training."""
    batch = eval_sets(task)["ic"].sample(jax.random.PRNGKey(EVAL_SEED + 1), 1)
    initial = Transformer(model_of(cfg, task), key=jax.random.fold_in(jax.random.PRNGKey(0), 0))
    sites = ("blocks.0.attn.hook_pattern", "blocks.1.attn.hook_pattern")
    out = {"labels": np.asarray(batch.info["context_labels"][0]).tolist(), "target": int(batch.info["label"][0])}
    for name, model in (("initial", initial), ("trained", member_of(models, 0))):
        _, cache = run_model(model, batch.inputs, sites=sites)
        out[name] = [np.asarray(cache[s][0, 0]).tolist() for s in sites]
    return out


def finals(part: dict[str, Any], metric: str) -> list[float]:
    """The last recorded value of `metric` per member."""
    return [c[-1] for c in part["curves"][metric]]


def phenomenology(cfg: Config) -> dict[str, Any]:
    """Gradient flow of the three-logit model from the origin for L > N and L = N, the same flow under the first
    reconstruction of layer 1 (y = σ(β), i.e. from β = log N: see analysis/phenomenology.py), and the (α, ξ)
    landscape. Deterministic: the same in the trained and the null run."""
    n, big = cfg.n_pairs, cfg.n_labels
    flows = {}
    for name, labels, start in (("l_gt_n", big, (0.0, 0.0, 0.0)), ("l_eq_n", n, (0.0, 0.0, 0.0)),
                                ("l_gt_n_sigma_beta", big, (float(np.log(n)), 0.0, 0.0))):
        tr = pheno.gradient_flow(n, labels, lr=0.05, steps=4000, record_every=10, start=start)
        flows[name] = {"time": tr.time.tolist(), "loss": tr.loss.tolist(), "accuracy": tr.accuracy.tolist(),
                       "params": tr.params.tolist(), "n_labels": labels}
    alphas, xis = np.linspace(0, 30, 61), np.linspace(0, 30, 61)
    return {"flows": flows, "alphas": alphas.tolist(), "xis": xis.tolist(),
            "landscape": pheno.landscape(n, big, alphas, xis, beta=2.0).tolist(),
            "gradient_origin_eq": np.asarray(pheno.gradient(np.zeros(3), n, n)).tolist(),
            "gradient_origin_gt": np.asarray(pheno.gradient(np.zeros(3), n, big)).tolist()}
