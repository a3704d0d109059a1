"""What the study measures on held-out languages: the test split's DFAs, never seen in training (the engine's own
evaluation draws from the training prompts, so its curve is a training-split loss and the findings never read it).

- `scores`: each model's REGBENCH metrics (analysis/regbench.py: greedy DFA accuracy, TVD to the true next-token
  distribution, per-token loss) and its TVD to the in-context 2- and 3-gram models (the authors' `model_ngram_diff`,
  halved).
- `baselines`: the in-context n-gram models with back-off (algorithms/ngram.py) scored the same way.
- `head_scores`: n-gram-head scores (analysis/regbench.py) of every softmax head and hard-wired n-gram layer.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from mesalab.algorithms.ngram import ngram_probs
from mesalab.analysis.regbench import ngram_head_score, regbench_metrics, tvd
from mesalab.models.config import ngram_order
from mesalab.models.run import run as run_model
from mesalab.tasks.dfa import eval_arrays

ORDERS = (2, 3, 4)  # n of the n-gram-head scores (the issue: n = 2, 3, 4)
BASELINE_ORDERS = (2, 3)  # the paper's dashed lines
CHUNK = 100  # prompts per forward pass (memory: CHUNK · T · d floats per site)


def test_data(data_cfg: Any, prompts: int) -> dict[str, np.ndarray]:
    """The first `prompts` prompts of the test split (tasks.dfa.eval_arrays), with their one-hot inputs."""
    arrays = {k: v[:prompts] for k, v in eval_arrays(data_cfg, "test").items()}
    arrays["onehot"] = np.eye(data_cfg.vocab_size, dtype=np.float32)[arrays["inputs"]]
    return arrays


@eqx.filter_jit
def _logits(model: Any, x: jax.Array) -> jax.Array:
    return run_model(model, x)


@eqx.filter_jit
def _patterns(model: Any, x: jax.Array, names: tuple[str, ...]) -> dict[str, jax.Array]:
    return run_model(model, x, sites=names)[1]  # names: static (not an array), one program per model structure


def logits(model: Any, onehot: np.ndarray) -> np.ndarray:
    return np.concatenate([np.asarray(_logits(model, jnp.asarray(onehot[i:i + CHUNK])))
                           for i in range(0, len(onehot), CHUNK)])


def ngram_rows(data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """{n: [P, T, 20]} the in-context n-gram models' next-token rows (raw back-off rows, as the authors use them)."""
    return {str(n): ngram_probs(data["inputs"], n) for n in BASELINE_ORDERS}


def baselines(data: dict[str, np.ndarray], rows: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """{n: metrics} of the in-context n-gram models, scored as the models are."""
    return {n: regbench_metrics(probs, data, logits=False) for n, probs in rows.items()}


def scores(model: Any, data: dict[str, np.ndarray], rows: dict[str, np.ndarray]) -> dict[str, float]:
    """accuracy, tvd, l1, loss on the test prompts, and tvd_<n>gram: ½ L1 to each in-context n-gram's rows (the
    authors' `model_ngram_diff`, halved)."""
    out = logits(model, data["onehot"])
    metrics = regbench_metrics(out, data)
    probs = np.asarray(jax.nn.softmax(jnp.asarray(out), axis=-1))
    for n, q in rows.items():
        metrics[f"tvd_{n}gram"] = float(tvd(probs, q, data["input_mask"]))
    return metrics


def _pattern_sites(model: Any) -> list[tuple[int, str]]:
    """(layer, kind) of every layer with a pattern that is a distribution: softmax attention and n-gram layers
    (linear and mesa scores are not normalised, so attention *mass* means nothing there)."""
    return [(i, b.attn.kind) for i, b in enumerate(model.blocks)
            if b.attn.kind == "softmax" or ngram_order(b.attn.kind) is not None]


def head_scores(model: Any, data: dict[str, np.ndarray], prompts: int) -> dict[str, Any]:
    """{"layers": [(layer, kind)], "scores": {n: [[score per head] per listed layer]}} on the first `prompts` test
    prompts; empty lists for a model without such layers."""
    sites = _pattern_sites(model)
    if not sites:
        return {"layers": [], "scores": {str(n): [] for n in ORDERS}}
    x = jnp.asarray(data["onehot"][:prompts])
    tokens = jnp.asarray(data["inputs"][:prompts])
    names = tuple(f"blocks.{layer}.attn.hook_pattern" for layer, _ in sites)
    cache = _patterns(model, x, names)
    table = {str(n): [np.asarray(ngram_head_score(cache[s], tokens, n)).tolist() for s in names] for n in ORDERS}
    return {"layers": [[layer, kind] for layer, kind in sites], "scores": table}
