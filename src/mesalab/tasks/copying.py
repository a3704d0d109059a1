"""In-context copying (Reddy's blog, seed 003; DESIGN S5) and repeated random tokens (Olsson et al. 2022).

Copying: the vocabulary holds n_items items (ids 0 … n_items − 1) and n_labels labels (ids n_items …
n_items + n_labels − 1). Each sequence draws N distinct items and gives each a random label — a fresh item→label map
per sequence, so only copying from the context solves it — then repeats one of the items as the query; the target
is that item's label, read at the last token. With items A = 0, B = 1 and labels 1 ↦ id 9, 2 ↦ id 10
(n_items = 8, N = 2), "B 2 A 1 B → 2" is::

    tokens   [1, 10, 0, 9, 1]      inputs: one-hot over the V = n_items + n_labels ids, [2N + 1, V]
    target   10 at the last position (one-hot over V), loss there only

With bos=True every sequence starts with a BOS token (id n_items + n_labels, the last id), as Olsson et al.'s
evaluation sequences do.

`repeated_tokens` draws the sequences on which induction and prefix-matching scores are measured: a random block
of tokens repeated (TransformerLens: 50 tokens twice; Olsson's prefix-matching: 25 tokens 4 times with a BOS;
reference/induction.md §4). At a position t ≥ half_len the token's previous occurrence is t − half_len, so an
induction head attends to t − half_len + 1 (TransformerLens's stripe at diagonal offset 1 − half_len).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mesalab.config import config, require
from mesalab.tasks.base import Batch, sampler, uniform_block


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@config
class CopyingConfig:
    """n_items, n_labels: the two parts of the vocabulary; n_pairs N item-label pairs before the query;
    distinct_labels: labels within a sequence are distinct (as in the phenomenological model's N distinct context
    labels; needs N <= n_labels), else drawn i.i.d.; bos: start every sequence with a BOS token (id n_items +
    n_labels)."""

    n_items: int = 32
    n_labels: int = 8
    n_pairs: int = 4
    distinct_labels: bool = True
    bos: bool = False

    def __post_init__(self) -> None:
        require(self, "n_items", _is_int(self.n_items) and self.n_items >= 1, "a positive integer")
        require(self, "n_labels", _is_int(self.n_labels) and self.n_labels >= 1, "a positive integer")
        require(self, "n_pairs", _is_int(self.n_pairs) and 1 <= self.n_pairs <= self.n_items,
                f"an integer in [1, n_items] = [1, {self.n_items}] (the N context items are distinct)")
        require(self, "distinct_labels", isinstance(self.distinct_labels, bool), "True or False")
        require(self, "bos", isinstance(self.bos, bool), "True or False")
        require(self, "n_pairs", not self.distinct_labels or self.n_pairs <= self.n_labels,
                f"at most n_labels ({self.n_labels}) with distinct_labels=True")

    @property
    def vocab_size(self) -> int:
        return self.n_items + self.n_labels + int(self.bos)

    @property
    def bos_id(self) -> int:
        """The BOS token's id (the last one; present only with bos=True)."""
        return self.n_items + self.n_labels

    @property
    def token_width(self) -> int:
        return self.vocab_size

    @property
    def target_width(self) -> int:
        return self.vocab_size

    @property
    def seq_len(self) -> int:
        return 2 * self.n_pairs + 1 + int(self.bos)

    @property
    def loss_positions(self) -> str:
        return "last"

    @property
    def loss_kind(self) -> str:
        return "cross_entropy"

    def sample(self, key: jax.Array, batch_size: int) -> Batch:
        return sample(self, key, batch_size)


def _distinct(u: jax.Array, n: int) -> jax.Array:
    """[batch, n] distinct ids from range(pool), in random order, from uniforms u [batch, pool] (top-k)."""
    return jax.lax.top_k(u, n)[1].astype(jnp.int32)


@sampler
def sample(cfg: CopyingConfig, key: jax.Array, batch_size: int) -> Batch:
    """Draw a batch of copying sequences: x₁ ℓ₁ … x_N ℓ_N x_q with x_q one of the x_i; target ℓ of x_q."""
    s, n, v = batch_size, cfg.n_pairs, cfg.vocab_size
    u = uniform_block(key, items=(s, cfg.n_items), labels=(s, cfg.n_labels if cfg.distinct_labels else n),
                      query=(s, 1))
    items = _distinct(u["items"], n)
    if cfg.distinct_labels:
        labels = _distinct(u["labels"], n)
    else:
        labels = jnp.minimum((u["labels"] * cfg.n_labels).astype(jnp.int32), cfg.n_labels - 1)
    labels = labels + cfg.n_items
    qi = jnp.minimum((u["query"] * n).astype(jnp.int32), n - 1)
    query = jnp.take_along_axis(items, qi, axis=1)
    target = jnp.take_along_axis(labels, qi, axis=1)[:, 0]
    tokens = jnp.concatenate([jnp.stack([items, labels], axis=2).reshape(s, 2 * n), query], axis=1)
    if cfg.bos:
        tokens = jnp.concatenate([jnp.full((s, 1), cfg.bos_id, jnp.int32), tokens], axis=1)
    inputs = jax.nn.one_hot(tokens, v, dtype=jnp.float32)
    targets = jnp.zeros_like(inputs).at[:, -1].set(jax.nn.one_hot(target, v, dtype=inputs.dtype))
    mask = jnp.zeros(tokens.shape, inputs.dtype).at[:, -1].set(1.0)
    return Batch(inputs, targets, mask, {"label": target, "query_index": qi[:, 0], "tokens": tokens})


@sampler
def repeated_tokens(key: jax.Array, batch_size: int, vocab_size: int, half_len: int, *, repeats: int = 2,
                    low: int = 0, distinct: bool = False) -> tuple[jax.Array, jax.Array]:
    """A random block of half_len tokens, repeated: (ids int32 [B, repeats·half_len], one-hot [B, …, vocab_size]).

    low: draw ids from [low, vocab_size) (e.g. to keep BOS or label ids out); distinct: no id twice within a block,
    so every token's earlier occurrence, and hence the induction target, is unique.
    """
    pool = vocab_size - low if _is_int(vocab_size) and _is_int(low) else 0
    for name, value, ok, allowed in (
        ("vocab_size", vocab_size, _is_int(vocab_size) and vocab_size >= 1, "a positive integer"),
        ("low", low, pool >= 1 and low >= 0, f"an integer in [0, vocab_size) = [0, {vocab_size})"),
        ("half_len", half_len, _is_int(half_len) and half_len >= 1 and (not distinct or half_len <= pool),
         f"a positive integer{f', at most vocab_size − low = {pool} with distinct=True' if distinct else ''}"),
        ("repeats", repeats, _is_int(repeats) and repeats >= 1, "a positive integer"),
        ("batch_size", batch_size, _is_int(batch_size) and batch_size >= 1, "a positive integer"),
    ):
        if not ok:
            raise ValueError(f"repeated_tokens: {name} = {value!r} is not allowed; expected {allowed}")
    if distinct:
        block = _distinct(jax.random.uniform(key, (batch_size, pool)), half_len) + low
    else:
        block = jax.random.randint(key, (batch_size, half_len), low, vocab_size, dtype=jnp.int32)
    ids = jnp.tile(block, (1, repeats))
    return ids, jax.nn.one_hot(ids, vocab_size, dtype=jnp.float32)
