"""The S8 model (issue 19: "feature families ... n-gram continuation for the S8 model"; finding 3: "S8: n-gram features
on the n-gram heads"): the same SAE ensemble on the last layer's hook_z of the `in-context-language-learning`
transformer (REGBENCH, 2 softmax layers, learned positions), loaded from a run (`--set s8_from_run=RUN`: its
transformer members at the largest N, one per seed), with activations streamed from REGBENCH *test* prompts (DFAs the
model never trained on). Without s8_from_run the row is NOT RUN.

Budget: REGBENCH sequences are T input positions long (S6's are 5), so a step draws ⌈sae_batch · 5 / T⌉ prompts —
the S6 SAEs' tokens per step, rounded up to whole prompts; the metrics read ⌈eval_batch · 5 / T⌉ prompts likewise.

The n-gram-continuation family (rule fixed before any S8 SAE was trained): the k-gram targets of position q are the
keys s + 1 < q that follow an earlier occurrence of the k-gram ending at q (analysis/regbench.ngram_targets with
n = k + 1: where the authors' hard-wired n-gram layer of order k attends). Per live feature and k ∈ NGRAM_KS, with a
its activation (PAD inputs left out) and DFA⁺[q, s] the positive part of its direct feature attribution (as the
induction rule, families.py):
- coverage_k: the share of its activation at positions that have a k-gram target;
- share_k: over those positions, the share of a·DFA⁺ on the k-gram targets.
A feature is n-gram continuation when, for some k, coverage_k ≥ AT_MATCH and share_k ≥ NGRAM_SHARE. The rule reads
attribution, not the activation alone, because whether a k-gram recurred is confounded with position (a 1-gram
recurs at almost every late position), and learned positions give even untrained models position features. A head
attending uniformly to the prefix puts ≈ 1/|alphabet| ≤ ¼ of its mass on the 1-gram targets (less for k = 2, 3).

Heads: a head of that layer is an n-gram head when its largest n-gram-head score over n = k + 1 ∈ measure.ORDERS
(2, 3, 4), on the test prompts, is ≥ HEAD_SCORE (the S8 study's threshold, in_context_language.claims).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mesalab.analysis import sae_metrics as sm
from mesalab.analysis.regbench import ngram_targets
from mesalab.analysis.sae import train_saes
from mesalab.config import ConfigError
from mesalab.models.run import run as run_model
from mesalab.models.transformer import Transformer
from mesalab.store import load_run
from mesalab.studies import in_context_language as s8
from mesalab.studies.attention_saes.families import AT_QUERY
from mesalab.studies.attention_saes.parts import chosen_member, mean_norm
from mesalab.studies.in_context_language import measure
from mesalab.studies.in_context_language.claims import HEAD_SCORE
from mesalab.studies.protocol import RunContext
from mesalab.train import Trainer
from mesalab.train.engine import member_of

NGRAM_KS = (1, 2, 3)       # issue 19 / the brief: k-gram matches for k = 1, 2, 3 (the n-gram-head scores' n = 2, 3, 4)
AT_MATCH = AT_QUERY        # half the feature's activation where a k-gram target exists (as S6's AT_QUERY)
NGRAM_SHARE = HEAD_SCORE   # most of the feature's attribution on the targets: the S8 n-gram-head threshold, 0.5
S6_SEQ = 5                 # tokens in an S6 sequence: the SAE budget is matched in tokens per step
EVAL_SEED = 7107


def load(path: str) -> Any:
    """The in-context-language-learning run at path (a ConfigError naming s8_from_run otherwise)."""
    try:
        run = load_run(path)
    except FileNotFoundError as e:
        raise ConfigError(f"Config.s8_from_run = {path!r} is not allowed; expected a run folder ({e})",
                          owner="Config", field="s8_from_run", value=path) from None
    if run.meta.get("study") != s8.NAME or not (run.path / "checkpoints" / "transformer").exists():
        raise ConfigError(f"Config.s8_from_run = {path!r} is not allowed; expected an {s8.NAME} run with its "
                          f"transformer checkpoint; it is a {run.meta.get('study')} run", owner="Config",
                          field="s8_from_run", value=path)
    return run


def models(run: Any, ctx: RunContext) -> list[Any]:
    """One transformer per seed: the run's member at its largest N (the null: the same models at initialisation)."""
    c = run.config
    if ctx.untrained:
        trainer = Trainer(s8.task_of(c), functools.partial(Transformer, s8.model_of(c, "transformer")), s8.training(c))
        res = ctx.fit(trainer, c.seeds, "s8")
        return [member_of(res.models, i) for i in range(c.seeds)]
    ms = s8.members(c)
    stacked = run.models("transformer")
    return [member_of(stacked, i) for i, m in enumerate(ms) if m.task["n_use"] == max(c.n_grid)]


def ngram_sums(acts: jax.Array, dfa: jax.Array, targets: jax.Array) -> tuple[jax.Array, ...]:
    """One prompt's sums the rule reads: acts [T, F] (0 at PAD inputs), dfa [T (q), T (s), F], targets [K, T, T]
    bools → (on-target a·DFA⁺ [K, F], a·DFA⁺ at positions with a target [K, F], activation there [K, F], activation
    [F])."""
    w = acts[:, None, :] * jnp.maximum(dfa, 0.0)
    has = targets.any(-1).astype(w.dtype)
    return (jnp.einsum("kqs,qsf->kf", targets.astype(w.dtype), w), jnp.einsum("kq,qsf->kf", has, w),
            jnp.einsum("kq,qf->kf", has, acts), acts.sum(0))


def classify(on: np.ndarray, at: np.ndarray, cover: np.ndarray, mass: np.ndarray) -> np.ndarray:
    """[F] 1 n-gram continuation, 0 other, −1 dead, from ngram_sums summed over prompts (module docstring)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        share, coverage = on / at, cover / mass
    hit = ((np.nan_to_num(coverage) >= AT_MATCH) & (np.nan_to_num(share) >= NGRAM_SHARE)).any(0)
    return np.where(mass > 0, hit.astype(int), -1)


@functools.partial(jax.jit, static_argnums=(2,))
def _sums(model: Any, sae: Any, layer: int, x: jax.Array, targets: jax.Array, mask: jax.Array):
    pre = f"blocks.{layer}.attn."

    def one(args):
        xi, ti, mi = args
        _, cache = run_model(model, xi[None], sites=(pre + "hook_pattern", pre + "hook_v", pre + "hook_z"))
        z = cache[pre + "hook_z"][0]
        acts = sae.encode(z.reshape(z.shape[0], -1)) * mi[:, None]
        return ngram_sums(acts, sm.dfa_by_source(cache[pre + "hook_pattern"][0], cache[pre + "hook_v"][0],
                                                 sae.W_enc), ti)

    return jax.tree_util.tree_map(lambda a: a.sum(0), jax.lax.map(one, (x, targets, mask)))


def families(model: Any, sae: Any, layer: int, data: dict[str, np.ndarray]) -> np.ndarray:
    """[F] the rule's classes on the analysis prompts (data: measure.test_data)."""
    targets = np.stack([np.asarray(ngram_targets(data["inputs"], k + 1)) for k in NGRAM_KS], axis=1)  # [P, K, T, T]
    sums = _sums(model, sae, layer, jnp.asarray(data["onehot"]), jnp.asarray(targets),
                 jnp.asarray(data["input_mask"]))
    return classify(*(np.asarray(s, np.float64) for s in sums))


def one_model(cfg: Any, run: Any, model: Any, seed: int) -> dict[str, Any]:
    """The SAE ensemble on one S8 model's last-layer hook_z, its chosen member's family and head attribution."""
    c = run.config
    layer, n_heads = c.n_layers - 1, c.n_heads
    site = f"blocks.{layer}.attn.hook_z"
    task = s8.data_of(c, "test")
    norm = mean_norm(model, site, task)
    seqs = -(-cfg.sae_batch * S6_SEQ // task.seq_len)
    d_sae = cfg.expansion * c.d_attn
    sae_cfg = dataclasses.replace(cfg.sae(layer, norm), batch_size=seqs,
                                  resample_batches=max(1, -(-d_sae // (seqs * task.seq_len))))
    result = train_saes(sae_cfg, model, task, data_seed=seed)
    ev = {k: np.asarray(v, float) for k, v in sm.evaluate(
        model, result.saes, task, site, key=jax.random.PRNGKey(EVAL_SEED),
        batch_size=-(-cfg.eval_batch * S6_SEQ // task.seq_len)).items()}
    best = chosen_member(ev["l0"], ev["loss_recovered"])
    sae = result.member(best)
    data = measure.test_data(s8.data_of(c), min(c.n_test, max(c.head_prompts, 1)))
    family = families(model, sae, layer, data)
    scores = measure.head_scores(model, data, c.head_prompts)["scores"]
    best_score = [max(scores[str(n)][layer][h] for n in measure.ORDERS) for h in range(n_heads)]
    marked = [h for h, s in enumerate(best_score) if s >= HEAD_SCORE]
    attribution = np.asarray(sm.head_attribution(sae.W_dec, n_heads))
    mass = attribution[family == 1].sum(0)
    n_live = int((family >= 0).sum())
    return {"layer": layer, "chosen": best, "l0": ev["l0"].tolist(), "loss_recovered": ev["loss_recovered"].tolist(),
            "n_live": n_live, "ngram_share": float((family == 1).sum() / n_live) if n_live else float("nan"),
            "head_score": best_score, "marked": marked, "ngram_by_head": mass.tolist(),
            "ngram_marked": float(mass[marked].sum() / mass.sum()) if (family == 1).any() else float("nan"),
            "seconds": result.seconds}


def part(cfg: Any, ctx: RunContext) -> dict[str, Any] | None:
    """The S8 results ({from_run, per seed}), or None without s8_from_run."""
    if not cfg.s8_from_run:
        return None
    run = load(cfg.s8_from_run)
    return {"from_run": cfg.s8_from_run, "n_heads": run.config.n_heads,
            "per_seed": [one_model(cfg, run, m, i) for i, m in enumerate(models(run, ctx))]}

