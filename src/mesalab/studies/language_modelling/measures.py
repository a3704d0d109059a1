"""What the language-modelling study measures on each trained ensemble: validation loss (the curve during training
and the final value), the loss at every context position (Olsson's ICL score), tokens/s, and the learned mesa λ.

All validation numbers come from fixed windows of the validation split (documents the training split never holds;
tasks/corpus.py), the same windows for every model and seed, so differences between models are paired.
"""

from __future__ import annotations

import math
import time
from typing import Any, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from mesalab.tasks.base import Batch
from mesalab.tasks.corpus import VOCAB, split_bytes
from mesalab.train.callbacks import Callback
from mesalab.train.loss import classification_loss

# Olsson et al. 2022's ICL score: the loss at the 500th token minus the loss at the 50th, in 512-token contexts
# (reference/induction.md §4). For a context of T tokens the same fractions of it: tokens round(T·50/512) and
# round(T·500/512) (T = 512 gives 50 and 500 exactly; T = 128 gives 13 and 125).
OLSSON_CONTEXT, OLSSON_EARLY, OLSSON_LATE = 512, 50, 500
WINDOWS_PER_CALL = 64  # validation windows scored per step of the evaluation's lax.map (bounds its memory)


def icl_positions(seq_len: int) -> tuple[int, int]:
    """(early, late): the 1-based tokens whose losses Olsson's ICL score compares, scaled to a context of seq_len."""
    scale = seq_len / OLSSON_CONTEXT
    early = max(1, math.floor(OLSSON_EARLY * scale + 0.5))
    late = min(seq_len, math.floor(OLSSON_LATE * scale + 0.5))
    return early, late


def icl_score(position_loss: Any, seq_len: int) -> np.ndarray:
    """Olsson's ICL score per row of position_loss [..., T]: loss at the late token minus at the early one (nats;
    negative: later tokens are predicted better, i.e. the model learns in context). The loss "at token k" is that of
    the prediction made there, having read tokens 1 … k."""
    early, late = icl_positions(seq_len)
    loss = np.asarray(position_loss, float)
    return loss[..., late - 1] - loss[..., early - 1]


def windows(split: np.ndarray, n: int, seq_len: int, seed: int) -> np.ndarray:
    """n windows of seq_len + 1 bytes at fixed random offsets of a split, [n, seq_len + 1] uint8."""
    starts = np.random.default_rng(seed).integers(0, len(split) - seq_len - 1, n)
    return np.stack([split[s:s + seq_len + 1] for s in starts])


def as_batch(tokens: jax.Array) -> Batch:
    """A next-byte batch from windows [n, T + 1] (the corpus task's layout)."""
    tokens = jnp.asarray(tokens, jnp.int32)
    inputs = jax.nn.one_hot(tokens[:, :-1], VOCAB, dtype=jnp.float32)
    targets = jax.nn.one_hot(tokens[:, 1:], VOCAB, dtype=jnp.float32)
    return Batch(inputs, targets, jnp.ones(tokens[:, 1:].shape, jnp.float32), {})


def validation_metric(tokens: np.ndarray):
    """A Trainer metrics_fn: "val_loss", the mean next-byte loss on these fixed validation windows (a constant of the
    compiled program, scored at every chunk boundary with the chunk's final weights)."""
    fixed = np.asarray(tokens, np.uint8)

    def metrics(model: Any, batch: Batch, interventions: Any = None) -> dict[str, jax.Array]:
        return {"val_loss": classification_loss(model, as_batch(jnp.asarray(fixed)), interventions)}

    return metrics


@eqx.filter_jit
def _position_losses(models: Any, tokens: jax.Array) -> jax.Array:
    def one_model(model):
        def chunk(tok):  # [W, T + 1] -> summed NLL per position [T]
            logits = jax.vmap(model)(jax.nn.one_hot(tok[:, :-1], VOCAB, dtype=jnp.float32))
            nll = -jnp.take_along_axis(jax.nn.log_softmax(logits, -1), tok[:, 1:, None], -1)[..., 0]
            return nll.sum(0)

        return jax.lax.map(chunk, tokens).sum(0)

    return eqx.filter_vmap(one_model)(models)


def position_losses(models: Any, tokens: np.ndarray) -> np.ndarray:
    """Mean next-byte loss at every context position [member, T] of stacked models on fixed windows [n, T + 1]."""
    n = len(tokens) - len(tokens) % WINDOWS_PER_CALL or len(tokens)
    per = min(WINDOWS_PER_CALL, n)
    grouped = jnp.asarray(tokens[:n].reshape(n // per, per, -1), jnp.int32)
    return np.asarray(_position_losses(models, grouped)) / n


def unigram_loss(train: np.ndarray, tokens: np.ndarray) -> float:
    """The unigram model's loss on the windows' next bytes: byte frequencies of the training split, add-one
    smoothed (the trivial predictor that uses no context)."""
    counts = np.bincount(train, minlength=VOCAB).astype(float) + 1.0
    return float(-np.log(counts / counts.sum())[np.asarray(tokens)[:, 1:]].mean())


def training_split(cfg: Any) -> np.ndarray:
    from mesalab.studies.language_modelling.config import task_of

    return split_bytes(task_of(cfg, "train"))


def ridges(models: Any) -> list[list[list[float]]]:
    """The learned mesa λ, [member][mesa layer][head] (empty lists for models without mesa layers)."""
    per_layer = [np.asarray(block.attn.ridge) for block in models.blocks if getattr(block.attn, "kind", "") == "mesa"]
    if not per_layer:
        return []
    return np.stack(per_layer, axis=1).tolist()  # [member, layer, head]


class Throughput(Callback):
    """Wall-clock tokens/s of training, from the chunk boundaries: the time from the end of the first chunk (whose
    compilation it leaves out) to the end of the last, or the whole fit when there is one chunk."""

    def __init__(self, tokens_per_step: int):
        self.tokens_per_step = tokens_per_step
        self.marks: list[tuple[int, float]] = []

    def on_train_start(self, members: Sequence[Any], step: int, history: Any) -> None:
        self.marks = [(step, time.perf_counter())]

    def on_chunk_end(self, step: int, records: Any) -> None:
        self.marks.append((step, time.perf_counter()))

    @property
    def tokens_per_second(self) -> float:
        """Tokens of all members per second (nan when nothing was trained)."""
        first = self.marks[1] if len(self.marks) > 2 else self.marks[0] if self.marks else None
        if first is None or len(self.marks) < 2 or self.marks[-1][0] <= first[0]:
            return float("nan")
        (s0, t0), (s1, t1) = first, self.marks[-1]
        return (s1 - s0) * self.tokens_per_step / (t1 - t0)
