"""Study S5 `induction-heads`: a 2-layer, 1-head attention-only network learns in-context copying abruptly by
forming an induction head (seed 003; Olsson et al. 2022; reference/induction.md §4; DESIGN.md §4 S5).

Sequences x₁ ℓ₁ … x_N ℓ_N x_q with a fresh item→label map each (tasks/copying.py): only copying ℓ from the pair
whose item matches x_q solves it. Tracked over training, from the cache at every chunk boundary
(analysis/heads.py): the copying loss and accuracy; the layer-1 head's previous-token score (label → its item); the
layer-2 head's prefix-matching (induction) score on the task's own sequences and on repeated random tokens; and the
layer-2 head's copying score (OV-circuit eigenvalues). A 1-layer model, which cannot compose a previous-token head
with a matching head, is trained alongside as the control Olsson et al. use.

"Abrupt" is `analysis.phenomenology.abruptness`: the 10%→90% part of the loss drop takes under a fifth of the
plateau before it (the definition the induction-classification study shares).
"""

from __future__ import annotations

import functools
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from mesalab.analysis.heads import copying_score, prefix_matching_score, previous_token_score
from mesalab.analysis.phenomenology import ABRUPT_RATIO, abruptness
from mesalab.config import config, require, require_positive
from mesalab.models.run import run as run_model
from mesalab.models.transformer import Transformer, TransformerConfig
from mesalab.studies.induction_heads import figures as induction_heads_figures
from mesalab.studies.protocol import Claim, Experiment, RunContext, measured_claim
from mesalab.tasks.copying import CopyingConfig, repeated_tokens
from mesalab.train import TrainConfig, Trainer
from mesalab.train.engine import member_of
from mesalab.train.loss import masked_accuracy

NAME = "induction-heads"
SUMMARY = "a 2-layer attention-only network learns in-context copying abruptly by forming an induction head"
SOURCE = "Reddy 2024 (seed 003); Olsson et al. 2022"

# Thresholds, fixed before any run. Abrupt: the cliff is narrower than a fifth of the plateau (the rule).
ABRUPT = 1 / ABRUPT_RATIO
# Accuracy: the task is learned (chance with context labels is 1/N).
FINAL_ACCURACY = 0.9
# Scores of a formed circuit: most of the head's attention on the right token (both scores lie in [0, 1]).
FORMED_SCORE = 0.5
# The 1-layer control stays far from solving the task: at most twice the 1/N of picking a context label.
CONTROL_FACTOR = 2.0
# The induction score's rise and the loss's drop (each from 10% to 90%) overlap in at least this share of seeds.
COINCIDE_SHARE = 0.75
REPEAT_SEED = 777


@config
class Config:
    """Task: n_items, n_labels, n_pairs (tasks/copying.py). Model: d_model (= d_head, one head per layer), learned
    positions. Training: Adam at lr, batch_size, steps, metrics every chunk_steps; seeds members."""

    n_items: int = 64
    n_labels: int = 16
    n_pairs: int = 4
    d_model: int = 64
    # Measured on this task (2 seeds each, batch 128): Adam 1e-3 with init 0.02 never left the 1/N plateau in 3k
    # steps; 3e-3 with init 0.05 left it after ≈ 2.4k steps or not at all, with 0.1 after ≈ 500 (too short a
    # plateau to see it), and 1e-2 jumped then collapsed. 3e-3 with 0.07 jumped in every seed, after 0.7k–2k steps.
    init_scale: float = 0.07
    seeds: int = 4
    steps: int = 4000
    batch_size: int = 128
    lr: float = 3e-3
    chunk_steps: int = 50
    eval_batch_size: int = 512
    repeat_half_len: int = 4

    def __post_init__(self) -> None:
        require_positive(self, "d_model", "init_scale", "seeds", "steps", "batch_size", "lr", "chunk_steps",
                         "eval_batch_size", "repeat_half_len")
        require(self, "repeat_half_len", 2 * self.repeat_half_len <= 2 * self.n_pairs + 1,
                f"at most n_pairs + 0.5 = {self.n_pairs + 0.5}: the repeated sequence must fit the learned positions")
        CopyingConfig(n_items=self.n_items, n_labels=self.n_labels, n_pairs=self.n_pairs)  # validates the task


PRESETS = {
    "smoke": Config(seeds=4, steps=100, chunk_steps=25, d_model=16, n_items=16, n_labels=8, eval_batch_size=64),
    "cpu": Config(),
    # Olsson et al. train for billions of tokens; on this toy task a longer run changes only the tail.
    "paper": Config(seeds=8, steps=20_000, batch_size=256, chunk_steps=100, eval_batch_size=2048),
}


def task_of(cfg: Config) -> CopyingConfig:
    return CopyingConfig(n_items=cfg.n_items, n_labels=cfg.n_labels, n_pairs=cfg.n_pairs)


def model_of(cfg: Config, layers: int) -> TransformerConfig:
    task = task_of(cfg)
    return TransformerConfig(d_model=cfg.d_model, n_layers=layers, n_heads=1, d_head=cfg.d_model,
                             attention="softmax", d_in=task.vocab_size, d_out=task.vocab_size,
                             pos_embedding="learned", max_len=task.seq_len, init_scale=cfg.init_scale)


def training(cfg: Config) -> TrainConfig:
    return TrainConfig(steps=cfg.steps, batch_size=cfg.batch_size, optimizer="adam", lr=cfg.lr,
                       chunk_steps=cfg.chunk_steps, eval_batch_size=cfg.eval_batch_size)


def experiment(cfg: Config) -> Experiment:
    return Experiment(task_of(cfg), model_of(cfg, 2), training(cfg))


def head_metrics(cfg: Config, model, batch, interventions=None) -> Mapping[str, jax.Array]:
    """Accuracy and head scores from the cache of the evaluation batch (and of repeated random tokens)."""
    layers = len(model.blocks)
    sites = tuple(f"blocks.{i}.attn.hook_pattern" for i in range(layers))
    out, cache = run_model(model, batch.inputs, sites=sites, interventions=interventions)
    logits = model.readout(out)
    metrics = {"accuracy": masked_accuracy(logits, batch.targets, batch.loss_mask),
               "prev_token_l1": previous_token_score(cache["blocks.0.attn.hook_pattern"])[0]}
    if layers > 1:
        last = f"blocks.{layers - 1}.attn.hook_pattern"
        metrics["induction_l2"] = prefix_matching_score(cache[last], batch.info["tokens"])[0]
        ids, onehot = _repeats(cfg)
        _, rep = run_model(model, onehot, sites=(last,))
        metrics["induction_repeated_l2"] = prefix_matching_score(rep[last], ids)[0]
        task = task_of(cfg)
        metrics["copying_l2"] = copying_score(model, layers - 1, 0, np.arange(task.n_items, task.vocab_size))
    return metrics


def _repeats(cfg: Config) -> tuple[jax.Array, jax.Array]:
    """Repeated random *items* (distinct within a block), one-hot over the whole vocabulary."""
    task = task_of(cfg)
    ids, _ = repeated_tokens(jax.random.PRNGKey(REPEAT_SEED), 256, task.n_items, cfg.repeat_half_len, distinct=True)
    return ids, jax.nn.one_hot(ids, task.vocab_size, dtype=jnp.float32)


def train_part(cfg: Config, ctx: RunContext, layers: int) -> dict[str, Any]:
    part = f"{layers}-layer"
    trainer = Trainer(task_of(cfg), functools.partial(Transformer, model_of(cfg, layers)), training(cfg),
                      metrics_fn=functools.partial(head_metrics, cfg))
    res = trainer.fit(cfg.seeds, checkpoint_dir=ctx.checkpoint_dir(part), resume=ctx.resume, progress=ctx.progress)
    ctx.add_metrics(res.history, part)
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
    task = task_of(cfg)
    batch = task.sample(jax.random.PRNGKey(REPEAT_SEED + 1), 1)
    trained = member_of(models, 0)
    initial = Transformer(model_of(cfg, 2), key=jax.random.fold_in(jax.random.PRNGKey(0), 0))
    sites = ("blocks.0.attn.hook_pattern", "blocks.1.attn.hook_pattern")
    maps = {}
    for name, model in (("initial", initial), ("trained", trained)):
        _, cache = run_model(model, batch.inputs, sites=sites)
        maps[name] = [np.asarray(cache[s][0, 0]).tolist() for s in sites]
    return maps


def run(cfg: Config, ctx: RunContext) -> dict[str, Any]:
    return {"two": train_part(cfg, ctx, 2), "one": train_part(cfg, ctx, 1)}


def transitions(part: dict[str, Any], metric: str, rising: bool) -> list:
    return [abruptness(np.asarray(part["steps"]), np.asarray(c), rising=rising) for c in part["curves"][metric]]


def accuracy_transitions(part: dict[str, Any], chance: float, metric: str = "accuracy") -> list:
    """Transitions of a rising curve measured from `chance` (1/N): values below it count as the plateau's start, so
    the fast early rise to picking *some* context label (accuracy), or to attending evenly to the N labels (an
    induction score), is not mistaken for the jump."""
    steps = np.r_[0, part["steps"]]
    return [abruptness(steps, np.maximum(np.r_[chance, c], chance), rising=True) for c in part["curves"][metric]]


def claims(cfg: Config, r: dict[str, Any]) -> list[Claim]:
    src = "Olsson et al. 2022; Reddy 2024 (seed 003); DESIGN.md §4 S5"
    two, one = r["two"], r["one"]
    rows: list[Claim] = []
    chance = 1.0 / cfg.n_pairs
    acc_t = accuracy_transitions(two, chance)
    ratios = np.asarray([t.ratio for t in acc_t])
    rows.append(measured_claim(
        "in-context copying is learned abruptly after a plateau: accuracy from the 1/N of picking a context label to "
        "its final value; cliff width (10%→90% of the rise) over plateau length (start → 10%)", src,
        "a phase change: plateau, then a sudden jump", ratios, f"< {ABRUPT:.2f} for the median seed",
        bool(finite_median(ratios) < ABRUPT),
        "per seed: " + ", ".join(f"{t.ratio:.3f} (plateau {t.plateau:.0f}, cliff {t.width:.0f} steps)" for t in acc_t)))

    score_t = accuracy_transitions(two, chance, "induction_l2")  # 1/N: even attention over the N labels
    overlap = np.asarray([_overlap(a, b) for a, b in zip(acc_t, score_t)], float)
    rows.append(measured_claim(
        "the layer-2 head's prefix-matching (induction) score jumps when the copying accuracy does: share of seeds "
        "whose 10%→90% windows of the two overlap", src, "induction heads form exactly when in-context learning "
        "appears", [overlap.mean()], f"≥ {COINCIDE_SHARE:.0%}", bool(overlap.mean() >= COINCIDE_SHARE),
        "per seed, accuracy window / score window (steps): " + "; ".join(
            f"{a.t10:.0f}–{a.t90:.0f} / {b.t10:.0f}–{b.t90:.0f}" for a, b in zip(acc_t, score_t))))

    final = {m: np.asarray([c[-1] for c in two["curves"][m]]) for m in two["curves"]}
    rows.append(measured_claim(
        "after training the 2-layer model copies in context: accuracy on fresh sequences", src,
        "the task is solved once the induction head has formed", final["accuracy"],
        f"median ≥ {FINAL_ACCURACY}", bool(np.median(final["accuracy"]) >= FINAL_ACCURACY)))
    formed = np.minimum(final["prev_token_l1"], final["induction_l2"])
    rows.append(measured_claim(
        "the circuit is a previous-token head in layer 1 feeding an induction head in layer 2: the smaller of the two "
        "final scores (previous-token, layer 1; prefix-matching, layer 2)", src,
        "a previous-token head composes with an induction head", formed, f"median > {FORMED_SCORE}",
        bool(np.median(formed) > FORMED_SCORE),
        "per seed (previous-token, induction, induction on repeated random items, copying score): " + "; ".join(
            f"{a:.2f}, {b:.2f}, {c:.2f}, {d:+.2f}" for a, b, c, d in zip(
                final["prev_token_l1"], final["induction_l2"], final["induction_repeated_l2"], final["copying_l2"]))))
    rows.append(measured_claim(
        "the layer-2 head copies what it attends to: copying score Σλ/Σ|λ| of its OV circuit on the label tokens",
        src,
        "induction heads copy (positive OV eigenvalues)", final["copying_l2"], "median > 0",
        bool(np.median(final["copying_l2"]) > 0)))
    acc_one = np.asarray([c[-1] for c in one["curves"]["accuracy"]])
    limit = CONTROL_FACTOR / cfg.n_pairs
    rows.append(measured_claim(
        f"a 1-layer model trained the same way does not learn the task: final accuracy (1/N = {1 / cfg.n_pairs:.3g})",
        src, "one-layer models form no induction heads", acc_one, f"median ≤ {limit:.3g} (2/N)",
        bool(np.median(acc_one) <= limit)))
    return rows


def finite_median(values) -> float:
    """The median of the finite values; nan (and so a failed comparison) when no seed made the transition."""
    v = np.asarray(values, float)
    return float(np.median(v[np.isfinite(v)])) if np.isfinite(v).any() else float("nan")


def _overlap(a, b) -> bool:
    """The two transitions' 10%→90% windows intersect (False when either has no transition)."""
    if not (np.isfinite(a.t10) and np.isfinite(b.t10)):
        return False
    return bool(max(a.t10, b.t10) <= min(a.t90, b.t90))


def figures(cfg: Config, results: dict[str, Any], ctx: RunContext):
    return induction_heads_figures.draw(cfg, results, ctx)
