"""Per-head scores of induction circuits and the progress measures of in-context classification.

Head scores (Olsson et al. 2022; reference/induction.md §4, §4.1), each in [0, 1] for softmax patterns (a
linear-attention pattern is not normalised) unless said otherwise, and computed from a batched attention pattern
[batch, head, query, key] (a `models.run` cache of `hook_pattern`):

- previous-token score: mean attention from position i to i − 1;
- prefix-matching (induction) score: mean attention from a token to the positions just *after* its earlier
  occurrences — the token induction predicts comes next (on repeated random tokens the stripe 1 − half_len back);
- copying score (Olsson et al.'s evaluator): attend fully to a token; of the logit raise over a sample of tokens
  (logits minus their mean, ReLU) the share that goes to the attended token itself, rescaled to [−1, 1] as
  2·share − 1 — positive when the attended token gets more than the rest of the sample together;
- OV eigenvalue score: Σλ / Σ|λ| over the eigenvalues of a head's full OV circuit W_E W_V W_O W_U, in [−1, 1];
  positive when attending to a token raises that token's own logit (Elhage et al. 2021's eigenvalue form).

Progress measures of Reddy 2024's in-context classification (reference/induction.md §1.5; the paper's names
ILA1, TILA2, TLA2, CLA are reconstructed there from the acronyms): on sequences x₁, ℓ₁, …, x_N, ℓ_N, x_q,

- ILA1, item→label attention in layer 1: how much each label token attends to its own item (the previous token);
- TILA2, target→matching-label attention in layer 2: the query's attention on the label tokens whose label is the
  query's (the labels an induction head should copy);
- TLA2, target→label attention in layer 2: the query's attention on all label tokens;
- CLA, context-label mass: the model's probability on labels present in the context (N/L at chance, 1 once the
  model picks among context labels; accuracy of random picking among them is 1/N).
"""

from __future__ import annotations

from typing import Mapping

import jax
import jax.numpy as jnp

from mesalab.models.run import run


def previous_token_score(pattern: jax.Array) -> jax.Array:
    """[head] mean attention from each position i ≥ 1 to i − 1. pattern: [batch, head, q, k]."""
    diag = jnp.diagonal(pattern, offset=-1, axis1=-2, axis2=-1)  # [batch, head, q − 1]
    return jnp.mean(diag, axis=(0, 2))


def induction_targets(tokens: jax.Array) -> jax.Array:
    """[batch, q, k] booleans: key k is one position after an earlier occurrence of query q's token (k < q)."""
    t = tokens.shape[-1]
    same = tokens[:, :, None] == tokens[:, None, :]                      # [b, q, j]: token j equals token q
    earlier = jnp.arange(t)[None, :] < jnp.arange(t)[:, None] - 1        # j + 1 < q: the follower is in the past
    after = jnp.zeros_like(same).at[:, :, 1:].set((same & earlier)[:, :, :-1])  # shift j → j + 1
    return after


def prefix_matching_score(pattern: jax.Array, tokens: jax.Array) -> jax.Array:
    """[head] attention mass on `induction_targets`, averaged over the queries that have at least one target.

    pattern: [batch, head, q, k]; tokens: [batch, pos] integer ids (anything comparable: a repeated random sequence,
    or the item ids of a copying task)."""
    targets = induction_targets(tokens)
    mass = jnp.sum(pattern * targets[:, None], axis=-1)                  # [b, head, q]
    has = jnp.any(targets, axis=-1)[:, None, :].astype(pattern.dtype)    # [b, 1, q]
    return jnp.sum(mass * has, axis=(0, 2)) / jnp.maximum(jnp.sum(has, axis=(0, 2)), 1.0)


def _direct_ov(model, layer: int, head: int, tokens) -> jax.Array:
    """The head's direct path from token embeddings to logits, restricted to `tokens`: [len(tokens), len(tokens)]
    with row t the logits raised when the head attends fully to token t."""
    if model.W_E is None or model.W_U is None:
        raise ValueError("copying scores need a model with an input embedding and an unembedding (TransformerConfig "
                         "d_in and d_out)")
    attn = model.blocks[layer].attn
    embed = jnp.pad(model.W_E, ((0, 0), (0, attn.W_V.shape[1] - model.W_E.shape[1])))  # a position code reads 0
    tokens = jnp.asarray(tokens)
    return embed[tokens] @ attn.W_V[head] @ attn.output_matrix[head] @ model.W_U[:, tokens]


def logit_raise_copying_score(model, layer: int, head: int, tokens) -> jax.Array:
    """Olsson et al.'s copying evaluator (reference/induction.md §4), in [−1, 1].

    For each token t of the sample `tokens` (Olsson: 25 random tokens, leaving out the most and least common; here
    the caller's sample, e.g. the labels a task copies): the logits the head's direct path raises when it attends
    fully to t, minus their mean over the sample, through a ReLU; the share of that raise on t itself. The mean share
    over the sample is rescaled to 2·share − 1: +1 when every raise goes to the attended token, 0 when it gets half,
    and about −1 + 2/k for a head that raises k tokens alike."""
    logits = _direct_ov(model, layer, head, tokens)
    raised = jax.nn.relu(logits - jnp.mean(logits, axis=-1, keepdims=True))
    share = jnp.diagonal(raised) / jnp.maximum(jnp.sum(raised, axis=-1), 1e-30)
    return 2.0 * jnp.mean(share) - 1.0


def copying_score(model, layer: int, head: int, tokens=None) -> jax.Array:
    """Σλ / Σ|λ| of the head's OV circuit from tokens to logits, W_E W_V W_O W_U (row convention), in [−1, 1].

    tokens: restrict the circuit to these token ids (rows and columns), e.g. the labels a task copies; a model
    trained to never output some tokens (the items of a copying task) suppresses them through every path, which
    would swamp the score of the whole vocabulary. The direct path only: positions, other layers and any
    classifier layers are left out. For the whole vocabulary the non-zero eigenvalues of the [vocab, vocab] circuit
    are those of the [d_model, d_model] product W_V W_O W_U W_E, which is what is decomposed then."""
    if model.W_E is None or model.W_U is None:
        raise ValueError("copying_score needs a model with an input embedding and an unembedding (TransformerConfig "
                         "d_in and d_out)")
    attn = model.blocks[layer].attn
    d_model = attn.W_V.shape[1]
    embed = jnp.pad(model.W_E, ((0, 0), (0, d_model - model.W_E.shape[1])))  # a concatenated position code reads 0
    ov = attn.W_V[head] @ attn.output_matrix[head]
    if tokens is None:
        eig = jnp.linalg.eigvals(ov @ model.W_U @ embed)
    else:
        tokens = jnp.asarray(tokens)
        eig = jnp.linalg.eigvals(embed[tokens] @ ov @ model.W_U[:, tokens])
    return jnp.sum(eig.real) / jnp.maximum(jnp.sum(jnp.abs(eig)), 1e-30)


def label_positions(n_pairs: int) -> jax.Array:
    """Positions of the label tokens ℓ₁ … ℓ_N in x₁, ℓ₁, …, x_N, ℓ_N, x_q."""
    return 2 * jnp.arange(n_pairs) + 1


def classification_progress(model, inputs: jax.Array, context_labels: jax.Array, label: jax.Array,
                            n_labels: int) -> Mapping[str, jax.Array]:
    """ILA1, TILA2, TLA2 and CLA (see the module docstring) and the accuracy, averaged over a batch.

    inputs: [B, 2N+1, width]; context_labels: [B, N] int labels ℓ₁ … ℓ_N; label: [B] the query's target label."""
    logits, cache = run(model, inputs, sites=("blocks.0.attn.hook_pattern", "blocks.1.attn.hook_pattern"))
    p1 = cache["blocks.0.attn.hook_pattern"][:, 0]                       # head 0: [B, q, k]
    p2 = cache["blocks.1.attn.hook_pattern"][:, 0]
    n = context_labels.shape[-1]
    labels_at = label_positions(n)
    ila1 = jnp.mean(p1[:, labels_at, labels_at - 1])
    query_to_labels = p2[:, -1, labels_at]                               # [B, N]
    matching = (context_labels == label[:, None]).astype(p2.dtype)
    probs = jax.nn.softmax(model.readout(logits)[:, -1], axis=-1)        # [B, L]
    present = jnp.any(context_labels[:, :, None] == jnp.arange(n_labels)[None, None, :], axis=1)
    return {
        "ila1": ila1,
        "tila2": jnp.mean(jnp.sum(query_to_labels * matching, axis=-1)),
        "tla2": jnp.mean(jnp.sum(query_to_labels, axis=-1)),
        "cla": jnp.mean(jnp.sum(probs * present, axis=-1)),
        "accuracy": jnp.mean((jnp.argmax(probs, axis=-1) == label).astype(p2.dtype)),
    }
