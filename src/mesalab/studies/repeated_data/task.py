"""Language-model data where in-context copying pays off, with a repeated subset (Hernandez et al. 2022; reference/
induction.md §6).

Each sequence is BOS followed by T tokens over a vocabulary of n_tokens ids (BOS is id n_tokens, the last):

- a **background** of i.i.d. Zipfian tokens (rank i drawn ∝ (i + 1)^−zipf), which a model learns in its weights;
- a **span** of `span` uniform random tokens written twice: once at s₁ in the first half, again at s₂ in the second
  half (both offsets random, so no fixed attention offset copies it). The span's second occurrence after its first
  token is predictable only by copying from the first: an induction head's job (Olsson et al. 2022, §4).

Every position predicts the next token (inputs: the first T + 1 tokens one-hot, targets: the next ones; all in the
loss). `info["copyable"]` marks the targets that copying predicts (span tokens 2 … L of the second occurrence).

**The repeated subset.** The first round(repeated_fraction · B) rows of every batch (the same share of tokens, since
all rows have one length) come from a fixed set of `subset_size` sequences: row i is the sequence generated from the
key fold_in(PRNGKey(subset_seed), j) with j uniform in [0, subset_size). Trained for S steps at batch B, the subset
makes up D = repeated_fraction · B · S of the rows seen, so a subset of D / r sequences is seen r times each on
average. Hernandez et al. repeat each sequence exactly r times (epochs); a sampler here sees only a random key, not
the step, so counts are Poisson around r instead (at r = 100 the spread is ±10%). `subset_size = 0` means no
repetition: those rows are fresh draws like the rest (the null, r = 1). `subset_size` is a dynamic field, so members
with different r train in one compiled program. The other rows are fresh; `info["repeated"]` marks the subset's
rows (at subset_size = 0 those fresh rows, so that the null's "subset loss" is measured on the same rows).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mesalab.config import config, require
from mesalab.tasks.base import Batch, sampler


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@config(dynamic=("subset_size",))
class RepeatedConfig:
    """n_tokens: the vocabulary without BOS; seq_len: T positions per sequence (BOS included); span: L, the copied
    span's length; zipf: the background's Zipf exponent; repeated_fraction: the share of each batch's rows drawn from
    the repeated subset; subset_size: how many distinct sequences it holds (0: none, every row fresh); subset_seed:
    the key the subset's sequences are generated from."""

    n_tokens: int = 64
    seq_len: int = 32
    span: int = 6
    zipf: float = 1.0
    repeated_fraction: float = 0.1
    subset_size: float = 0.0
    subset_seed: int = 2022

    def __post_init__(self) -> None:
        require(self, "n_tokens", _is_int(self.n_tokens) and self.n_tokens >= 2, "an integer >= 2")
        require(self, "span", _is_int(self.span) and self.span >= 2, "an integer >= 2 (a span of 1 has nothing to copy)")
        half = (self.seq_len + 1) // 2 if _is_int(self.seq_len) else 0
        require(self, "seq_len", _is_int(self.seq_len) and half - 1 >= self.span and self.seq_len + 1 - half >= self.span,
                f"an integer >= {2 * self.span + 1}: both halves must hold the span (span = {self.span}) after BOS")
        require(self, "zipf", isinstance(self.zipf, (int, float)) and self.zipf >= 0, "a number >= 0 (0: uniform)")
        require(self, "repeated_fraction", isinstance(self.repeated_fraction, (int, float))
                and 0 <= self.repeated_fraction < 1, "a number in [0, 1)")
        require(self, "subset_size", not isinstance(self.subset_size, (int, float)) or self.subset_size >= 0,
                "a number >= 0 (0: no repeated subset)")
        require(self, "subset_seed", _is_int(self.subset_seed), "an integer")

    @property
    def vocab_size(self) -> int:
        return self.n_tokens + 1

    @property
    def bos_id(self) -> int:
        return self.n_tokens

    @property
    def token_width(self) -> int:
        return self.vocab_size

    @property
    def target_width(self) -> int:
        return self.vocab_size

    @property
    def loss_positions(self) -> str:
        return "masked"

    @property
    def loss_kind(self) -> str:
        return "cross_entropy"

    def repeated_rows(self, batch_size: int) -> int:
        """Rows of a batch drawn from the repeated subset."""
        return round(self.repeated_fraction * batch_size)

    def zipf_probs(self) -> jax.Array:
        """The background's token probabilities by id (id = rank)."""
        w = (jnp.arange(self.n_tokens) + 1.0) ** -float(self.zipf)
        return w / jnp.sum(w)

    def sample(self, key: jax.Array, batch_size: int) -> Batch:
        return sample(self, key, batch_size)


def sequence(cfg: RepeatedConfig, key: jax.Array) -> tuple[jax.Array, jax.Array]:
    """One sequence from its key: (tokens [T + 1] int32, copyable [T] float, 1 where target t is a copied token)."""
    t, n, span = cfg.seq_len, cfg.n_tokens, cfg.span
    half = (t + 1) // 2
    u = jax.random.uniform(key, (t + span + 2,))
    background = jnp.searchsorted(jnp.cumsum(cfg.zipf_probs()), u[:t], side="right").clip(0, n - 1)
    block = jnp.minimum((u[t:t + span] * n).astype(jnp.int32), n - 1)
    s1 = 1 + jnp.minimum((u[-2] * (half - span)).astype(jnp.int32), half - span - 1)          # in [1, half − L]
    s2 = half + jnp.minimum((u[-1] * (t + 2 - half - span)).astype(jnp.int32), t + 1 - half - span)  # [half, T+1−L]
    pos = jnp.arange(t + 1)
    body = jnp.concatenate([jnp.full((1,), cfg.bos_id, jnp.int32), background.astype(jnp.int32)])
    first, second = (pos >= s1) & (pos < s1 + span), (pos >= s2) & (pos < s2 + span)
    tokens = jnp.where(first, block[jnp.clip(pos - s1, 0, span - 1)], body)
    tokens = jnp.where(second, block[jnp.clip(pos - s2, 0, span - 1)], tokens)
    target_pos = pos[1:]                                   # target t is token t + 1
    copyable = ((target_pos > s2) & (target_pos < s2 + span)).astype(jnp.float32)
    return tokens, copyable


@sampler
def sample(cfg: RepeatedConfig, key: jax.Array, batch_size: int) -> Batch:
    """A batch: the first repeated_rows(B) rows from the subset (fresh when subset_size = 0), the rest fresh."""
    fresh_key, pick_key = jax.random.split(key)
    fresh = jax.random.split(fresh_key, batch_size)
    k = cfg.repeated_rows(batch_size)
    if k:
        size = jnp.asarray(cfg.subset_size, jnp.float32)
        j = jnp.floor(jax.random.uniform(pick_key, (k,)) * size).astype(jnp.int32)
        j = jnp.minimum(j, jnp.maximum(size.astype(jnp.int32) - 1, 0))
        base = jax.random.PRNGKey(cfg.subset_seed)
        subset = jax.vmap(lambda i: jax.random.fold_in(base, i))(j)
        fresh = fresh.at[:k].set(jnp.where(size > 0, subset, fresh[:k]))
    tokens, copyable = jax.vmap(lambda kk: sequence(cfg, kk))(fresh)
    onehot = jax.nn.one_hot(tokens, cfg.vocab_size, dtype=jnp.float32)
    repeated = jnp.arange(batch_size) < k  # the subset's rows (fresh ones when subset_size = 0: the null's)
    return Batch(onehot[:, :-1], onehot[:, 1:], jnp.ones(tokens[:, 1:].shape, jnp.float32),
                 {"tokens": tokens[:, :-1], "copyable": copyable, "repeated": repeated})


@sampler
def subset_sequences(cfg: RepeatedConfig, indices) -> Batch:
    """The repeated subset's sequences at `indices` (as the sampler generates them), e.g. to measure memorisation."""
    keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.PRNGKey(cfg.subset_seed), i))(jnp.asarray(indices))
    tokens, copyable = jax.vmap(lambda kk: sequence(cfg, kk))(keys)
    onehot = jax.nn.one_hot(tokens, cfg.vocab_size, dtype=jnp.float32)
    return Batch(onehot[:, :-1], onehot[:, 1:], jnp.ones(tokens[:, 1:].shape, jnp.float32),
                 {"tokens": tokens[:, :-1], "copyable": copyable, "repeated": jnp.ones(len(keys), bool)})
