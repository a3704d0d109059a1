"""What the repeated-data study measures at every evaluation during training (inside the compiled program).

On the member's evaluation batch (task.py; the same fresh rows for every member, and its own subset's rows):
- unique_loss: next-token cross-entropy on the fresh rows: Hernandez et al.'s test loss on unique data;
- subset_loss: on the rows drawn from the member's repeated subset (fresh rows at r = 1): memorisation;
- copy_loss: on the fresh rows' copyable targets only (the span's second occurrence after its first token):
  the in-context copying the data rewards, Olsson et al.'s behavioural side of an induction head.
Head scores (analysis/heads.py; Olsson et al. 2022, reference/induction.md §4, §4.1), with several heads a layer:
- prefix_matching: S5's induction score (studies/induction_heads): Olsson's prefix-matching score on BOS + a block
  of distinct random tokens repeated as often as fits, averaged over the block lengths `repeat_blocks`, for each
  head of the last layer; the largest over those heads (the model's induction head);
- copying: Olsson's copying evaluator (logit raise, rescaled to [−1, 1]) of that same head, on a fixed sample of
  25 tokens that leaves out the most and least common (Olsson: 25 random tokens, excluding both; here the top
  and bottom tenth of the Zipf ranks);
- prev_token: the largest previous-token score among the first layer's heads (plotted only).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mesalab.analysis.heads import (
    logit_raise_copying_score,
    prefix_matching_score,
    previous_token_score,
)
from mesalab.models.run import run as run_model
from mesalab.studies.repeated_data.config import Config, task_of
from mesalab.tasks.copying import repeated_tokens

REPEAT_SEED = 777
N_REPEATS = 128      # Olsson averages over 10 examples; more make the score smoother over training
COPY_SAMPLE = 25     # Olsson's copying evaluator: 25 random tokens
COPY_SEED = 25


def copy_tokens(cfg: Config) -> np.ndarray:
    """The copying evaluator's fixed token sample: up to 25 ids drawn (fixed seed) from the Zipf ranks between the
    top and the bottom tenth."""
    n = cfg.n_tokens
    middle = np.arange(n // 10, n - n // 10)
    return np.sort(np.random.default_rng(COPY_SEED).choice(middle, min(COPY_SAMPLE, len(middle)), replace=False))


def olsson_sequences(cfg: Config, block: int) -> jax.Array:
    """BOS + a block of distinct random non-BOS tokens, repeated as often as the trained positions hold: one-hot
    [N_REPEATS, T', vocab] and ids."""
    task = task_of(cfg)
    ids, _ = repeated_tokens(jax.random.fold_in(jax.random.PRNGKey(REPEAT_SEED), block), N_REPEATS, task.n_tokens,
                             block, repeats=(cfg.seq_len - 1) // block, distinct=True)
    ids = jnp.concatenate([jnp.full((N_REPEATS, 1), task.bos_id, jnp.int32), ids], axis=1)
    return ids, jax.nn.one_hot(ids, task.vocab_size, dtype=jnp.float32)


def token_losses(model: Any, batch: Any, interventions=None) -> tuple[jax.Array, Mapping[str, jax.Array]]:
    """Next-token cross-entropy at every position [B, T], and the first layer's attention pattern."""
    out, cache = run_model(model, batch.inputs, sites=("blocks.0.attn.hook_pattern",), interventions=interventions)
    nll = -jnp.sum(batch.targets * jax.nn.log_softmax(model.readout(out), axis=-1), axis=-1)
    return nll, cache


def _mean(x: jax.Array, w: jax.Array) -> jax.Array:
    return jnp.sum(x * w) / jnp.maximum(jnp.sum(w), 1.0)


def metrics(cfg: Config, model: Any, batch: Any, interventions=None) -> dict[str, jax.Array]:
    """The measures above, for the engine's metrics_fn (evaluated at every chunk boundary)."""
    nll, cache = token_losses(model, batch, interventions)
    subset = batch.info["repeated"].astype(nll.dtype)[:, None] * jnp.ones_like(nll)
    unique = 1.0 - subset
    out = {"unique_loss": _mean(nll, unique), "subset_loss": _mean(nll, subset),
           "copy_loss": _mean(nll, unique * batch.info["copyable"]),
           "prev_token": jnp.max(previous_token_score(cache["blocks.0.attn.hook_pattern"]))}
    last = len(model.blocks) - 1
    site = f"blocks.{last}.attn.hook_pattern"
    per_block = []
    for block in cfg.repeat_blocks:
        ids, onehot = olsson_sequences(cfg, block)
        _, rep = run_model(model, onehot, sites=(site,))
        per_block.append(prefix_matching_score(rep[site], ids))          # [head]
    heads = jnp.mean(jnp.stack(per_block), axis=0)
    best = jnp.argmax(heads)
    tokens = copy_tokens(cfg)
    copying = jnp.stack([logit_raise_copying_score(model, last, h, tokens) for h in range(cfg.n_heads)])
    out["prefix_matching"] = heads[best]
    out["copying"] = copying[best]
    return out
