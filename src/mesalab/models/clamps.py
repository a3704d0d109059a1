"""The clamp catalogue of Singh et al. 2024 ("artificial optogenetics", reference/induction.md §3.3), as interventions.

Each builder returns `{site: intervention}` to merge into the interventions of a forward pass or of the Trainer
(which applies them in every training step). All of them are data (`models.hooks`), so they work under jit, vmap,
grad and the training scan; gradients reach every parameter the clamped value does not cut off.

Sequences are the authors' interleaved ones (`tasks.exemplar_label`): exemplar, label, …, exemplar, label, query,
so label tokens sit at the odd positions and the query last. Layers and heads are 0-indexed as in the authors'
`opto.py` (their "layer 1" of the paper is layer 0 here, "layer 2" layer 1).

    ablate_values        opto_ablate_heads: the head's values v set to 0.
    prev_token           opto_prev_token_heads: pattern (1 − s)·I + s·(previous token), row 0 all on itself;
                         optionally on label tokens' rows only (opto_prev_token_only_label).
    induction            opto_induction_heads: the query row gets s on the label whose label is the query's, 1 − s on
                         the other, 0 on exemplars and itself (needs the batch: a FromBatch, see `batch_resolved`).
    match                opto_match_heads: the query row from the cosine similarity of the query exemplar to each
                         context exemplar (raw input features), softmax at temperature τ (τ = 0: hardmax), put on
                         the label after each exemplar.
    perfect_copy         opto_perfect_copy_from_head_pattern: the output logits at the query are −1e9 except at the
                         two context labels, which get the head's pre-softmax scores (query → their positions).
    perfect_layer        opto_specific_fn perfect_prev_token_input: block `layer`'s output is replaced by the
                         embeddings; block layer+1's patterns are those of a first pass where that output was the
                         embeddings shifted one position on.
    preserve             opto_preserve_patterns / values / queries / keys: held at their clean-pass values.
    graft                opto_graft_in_*: a site's activation taken from another model (a checkpoint).

The Fig. 5b conditions: no clamp; prev_token (1); perfect_layer (1, 2); induction (1, 2, 3qk, 4 — the authors'
"perfect match" run uses opto_induction_heads, not opto_match_heads); perfect_copy (3v, 5); perfect_copy with
first_pass=shifted_embedding_pass() (1, 2, 3v, 5) — each with the other layer-2 heads' values ablated.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Mapping, Sequence

import jax
import jax.numpy as jnp

from mesalab.models.computed import Computed, FromBatch, FromPass
from mesalab.models.hooks import _idx, clamp, zero_ablate

NEG = -1e9  # the authors' logit for labels that are not in context


def _pattern_site(layer: int) -> str:
    return f"blocks.{layer}.attn.hook_pattern"


def ablate_values(layer: int, heads: int | Sequence[int]) -> dict[str, Any]:
    """Zero the values of `heads` in `layer` (their outputs vanish; their patterns are untouched)."""
    return {f"blocks.{layer}.attn.hook_v": zero_ablate(heads=heads)}


def prev_token_pattern(seq_len: int, strength: Any = 1.0) -> jax.Array:
    """[seq_len, seq_len]: s on the previous token, 1 − s on itself; the first token all on itself (opto.py)."""
    s = jnp.asarray(strength, jnp.float32)
    sub = jnp.eye(seq_len, k=-1)
    return (1.0 - s) * jnp.eye(seq_len) + s * sub + s * jnp.zeros((seq_len, seq_len)).at[0, 0].set(1.0)


def prev_token(layer: int, heads: int | Sequence[int], seq_len: int = 5, strength: Any = 1.0,
               labels_only: bool = False) -> dict[str, Any]:
    """Clamp the pattern of `heads` to `prev_token_pattern`; with labels_only, only the label tokens' rows."""
    rows = list(range(1, seq_len, 2)) if labels_only else None
    return {_pattern_site(layer): clamp(prev_token_pattern(seq_len, strength), heads=heads, positions=rows)}


def induction_rows(batch: Any, strength: jax.Array) -> jax.Array:
    """[B, 1, 1, T] query rows of the perfect induction pattern from the batch's context_labels and label."""
    labels, target = batch.info["context_labels"], batch.info["label"]
    n = labels.shape[1]
    w = jnp.where(labels == target[:, None], strength, 1.0 - strength)
    row = jnp.zeros((labels.shape[0], 2 * n + 1), jnp.float32).at[:, 1:2 * n:2].set(w)
    return row[:, None, None, :]


def induction(layer: int, heads: int | Sequence[int], strength: Any = 1.0) -> dict[str, Any]:
    """The query row of `heads`' pattern: s on the matching label, 1 − s on the other (induction strength 2s − 1).
    A FromBatch: resolve it with hooks.resolve_batch, or train with loss_fn=hooks.batch_resolved(...)."""
    return {_pattern_site(layer): FromBatch(induction_rows, jnp.asarray(strength, jnp.float32), _idx(heads), _idx(-1))}


@dataclasses.dataclass(frozen=True)
class MatchRow:
    """Computed fn: the query row from exemplar cosine similarities (features = tokens[:, start:stop])."""

    start: int
    stop: int

    def __call__(self, pattern: jax.Array, env: Mapping[str, jax.Array], temperature: jax.Array) -> jax.Array:
        x = env["tokens"][:, self.start:self.stop]
        x = x / jnp.linalg.norm(x, axis=-1, keepdims=True)
        t = x.shape[0]
        raw = x[0:t - 1:2] @ x[-1]  # context exemplars vs the query
        hard = (raw == jnp.max(raw)).astype(pattern.dtype)
        soft = jax.nn.softmax(raw / jnp.maximum(temperature, 1e-30))
        scores = jnp.where(temperature > 0, soft, hard)
        return jnp.zeros((t,), pattern.dtype).at[1:t - 1:2].set(scores)


def match(layer: int, heads: int | Sequence[int], exemplar_slice: tuple[int, int],
          temperature: Any = 0.0) -> dict[str, Any]:
    """The query row of `heads`' pattern from input similarity (opto_match_heads); exemplar_slice is the task's
    (start, stop) of the exemplar features in a token (ExemplarLabelConfig.exemplar_slice)."""
    fn = MatchRow(*exemplar_slice)
    return {_pattern_site(layer): Computed(fn, jnp.asarray(temperature, jnp.float32), _idx(heads), _idx(-1))}


@dataclasses.dataclass(frozen=True)
class CopyLogits:
    """FromPass fn: query logits from one head's scores [head, q, k] on the context label positions."""

    head: int
    start: int
    stop: int

    def __call__(self, scores: jax.Array, tokens: jax.Array, value: Any) -> jax.Array:
        t = tokens.shape[0]
        labels = jnp.argmax(tokens[1:t - 1:2, self.start:self.stop], axis=-1)  # the context labels
        row = jnp.full((self.stop - self.start,), NEG, scores.dtype)
        return row.at[labels].set(scores[self.head, -1, 1:t - 1:2])[None, :]


def shifted_embedding_pass(layer: int = 0) -> dict[str, Any]:
    """The first pass of perfect_layer: block `layer`'s output replaced by the embeddings shifted one position on
    (positions 1 … T−2 get the embedding of the token before; the first and last keep their own), so each label
    token carries its exemplar's embedding. This is the authors' code (`embedding.at[1:-1].set(embedding[:-2])`);
    its docstring describes zeros on the other tokens instead, which the code does not do."""
    return {f"blocks.{layer}.hook_resid_post": Computed(_shifted_embedding)}


def _shifted_embedding(x: jax.Array, env: Mapping[str, jax.Array], value: Any) -> jax.Array:
    e = env["hook_embed"]
    return e.at[1:-1].set(e[:-2])


def _embedding(x: jax.Array, env: Mapping[str, jax.Array], value: Any) -> jax.Array:
    return env["hook_embed"]


def perfect_copy(layer: int, head: int, label_slice: tuple[int, int],
                 first_pass: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Replace the query's output logits by −1e9 except at the two context labels, which get `head`'s pre-softmax
    scores from the query to their positions (site blocks.{layer}.attn.hook_attn_scores, scaled by 1/√d_head) in
    a first pass (clean, or `first_pass`, e.g. shifted_embedding_pass() for "layer 1 + copy"). label_slice: the
    task's one-hot label columns (ExemplarLabelConfig.label_slice); output column j is label j."""
    fn = CopyLogits(head, *label_slice)
    return {"hook_out": FromPass(f"blocks.{layer}.attn.hook_attn_scores", first_pass=dict(first_pass or {}),
                                 fn=fn, positions=_idx(-1))}


def perfect_layer(layer: int = 0) -> dict[str, Any]:
    """"Perfect layer 1" (steps 1 + 2): block `layer`'s output becomes the raw embeddings (what block layer+1's
    values read), and block layer+1's patterns (all heads, all rows) are those of the shifted-embedding pass."""
    site = _pattern_site(layer + 1)
    return {f"blocks.{layer}.hook_resid_post": Computed(_embedding),
            site: FromPass(site, first_pass=shifted_embedding_pass(layer))}


PRESERVABLE = {"patterns": "hook_pattern", "values": "hook_v", "queries": "hook_q", "keys": "hook_k"}


def preserve(what: Iterable[str], layers: Iterable[int]) -> dict[str, Any]:
    """Hold the chosen activations ("patterns", "values", "queries", "keys") of `layers` at their clean-pass values
    (one shared first pass). Queries and keys are held before the rotary rotation (the rotation is fixed, so this
    equals the authors' holding them after it)."""
    out: dict[str, Any] = {}
    for w in what:
        if w not in PRESERVABLE:
            raise ValueError(f"preserve: {w!r} is not allowed; expected one of {', '.join(map(repr, PRESERVABLE))}")
        for layer in layers:
            site = f"blocks.{layer}.attn.{PRESERVABLE[w]}"
            out[site] = FromPass(site)
    return out


def graft(model: Any, sites: Iterable[str], first_pass: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Take `sites` from `model` (another checkpoint, run on the same tokens with `first_pass` interventions):
    graft in up to layer l is graft(other, ["blocks.{l}.hook_resid_post"]). The other model is a constant."""
    return {s: FromPass(s, first_pass=dict(first_pass or {}), model=model) for s in sites}
