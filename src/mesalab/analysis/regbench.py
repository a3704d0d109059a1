"""REGBENCH metrics and n-gram heads (Akyürek et al. 2024; reference/icll.md §1.4, §1.7).

Metrics, on arrays [..., T, V] of next-token scores at each input position (numpy or jax; means over every
counted position of every prompt, as the authors' per-batch totals):

- `greedy_accuracy` (the paper's "accuracy", eval.py `_get_dfa_accuracy`): the arg-max token is a valid next
  letter under the prompt's DFA. Counted where the target is a letter: every non-PAD input except those followed by
  SEP (the last input of a prompt counts). An arg-max on SEP or PAD counts as wrong.
- `tvd` (the paper's TVD): ½ Σ_v |p_t(v) − q_t(v)| against the true next-token distribution q_t
  (tasks.dfa.true_next_distribution), averaged over every non-PAD input — including the inputs followed by SEP,
  whose targets the loss masks (eval.py compares `get_dfa_probs` with the model at every input position). eval.py
  logs the un-halved L1 (`model_dfa_diff`); the paper's figures halve it (`halve=False` gives eval.py's number).
  Also the distance between a model and an in-context n-gram model (`model_ngram_diff`): pass the n-gram rows as q.
- `token_loss`: cross-entropy per target letter (the training loss); `nll_of_probs` for probability rows, with the
  authors' +1e-5 inside the log (their `n_gram_loss`).

n-gram heads: `ngram_targets` generalises analysis/heads.py's prefix matching (n = 2) to the tokens that follow
earlier occurrences of the (n − 1)-gram ending at t — where the authors' hard-wired n-gram layer with k = n − 1
(`src/models/sequence/rnn/ngram.py`) attends: key s + 1 with x_{s−i} = x_{t−i} for i = 0 … n − 2 and s + 1 < t
(so the diagonal is left out, as there). `ngram_head_score` is heads.prefix_matching_score on those targets.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from mesalab.analysis.heads import induction_targets, prefix_matching_score

PAD = 0


def _xp(*arrays):
    return jnp if any(isinstance(a, jax.Array) for a in arrays) else np


def _masked_mean(values, mask):
    xp = _xp(values, mask)
    mask = xp.asarray(mask, dtype=values.dtype)
    return xp.sum(values * mask) / xp.maximum(xp.sum(mask), 1.0)


def greedy_hits(scores, valid):
    """[..., T] 1.0 where the arg-max of scores [..., T, V] is a valid next token (valid [..., T, V] bools)."""
    xp = _xp(scores, valid)
    top = xp.argmax(scores, axis=-1)
    return xp.take_along_axis(xp.asarray(valid), top[..., None], axis=-1)[..., 0].astype(np.float32)


def greedy_accuracy(scores, valid, target_mask):
    """Share of target positions (target_mask [..., T], tasks.dfa.masks) whose arg-max token is valid."""
    return _masked_mean(greedy_hits(scores, valid), target_mask)


def l1_rows(p, q):
    """[..., T] Σ_v |p − q|."""
    xp = _xp(p, q)
    return xp.sum(xp.abs(p - q), axis=-1)


def tvd(p, q, input_mask, *, halve: bool = True):
    """Mean over input positions (input_mask [..., T]) of ½ Σ_v |p_t(v) − q_t(v)| (Σ without the ½ if not halve).

    p: probabilities [..., T, V] (softmax of a model's logits, or an n-gram model's rows); q likewise."""
    return _masked_mean(l1_rows(p, q), input_mask) * (0.5 if halve else 1.0)


def token_nll(logits, targets):
    """[..., T] −log softmax(logits)[target] (targets: [..., T] ids)."""
    xp = _xp(logits, targets)
    if xp is jnp:
        logp = jax.nn.log_softmax(logits, axis=-1)
    else:
        z = logits - logits.max(-1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    return -xp.take_along_axis(logp, xp.asarray(targets)[..., None], axis=-1)[..., 0]


def token_loss(logits, targets, target_mask):
    """Mean cross-entropy over target letters: the training loss (SEP and PAD targets masked)."""
    return _masked_mean(token_nll(logits, targets), target_mask)


def nll_of_probs(probs, targets, target_mask, *, eps: float = 1e-5):
    """Mean −log(p[target] + eps) over target letters (the authors' `n_gram_loss`, eps = 1e-5)."""
    xp = _xp(probs, targets)
    p = xp.take_along_axis(probs, xp.asarray(targets)[..., None], axis=-1)[..., 0]
    return _masked_mean(-xp.log(p + eps), target_mask)


def regbench_metrics(scores, data, *, logits: bool = True) -> dict[str, float]:
    """accuracy, tvd, l1 (eval.py's un-halved number) and loss of one model on a split (tasks.dfa.eval_arrays).

    scores: [P, T, V] logits (logits=True) or probabilities."""
    probs = np.asarray(jax.nn.softmax(jnp.asarray(scores), axis=-1)) if logits else np.asarray(scores)
    out = {"accuracy": greedy_accuracy(probs, data["valid"], data["target_mask"]),
           "tvd": tvd(probs, data["q"], data["input_mask"])}
    out["l1"] = 2.0 * out["tvd"]
    out["loss"] = (token_loss(np.asarray(scores, np.float64), data["targets"], data["target_mask"]) if logits else
                   nll_of_probs(probs, data["targets"], data["target_mask"]))
    return {k: float(v) for k, v in out.items()}


# ---- n-gram heads ------------------------------------------------------------------------------------------------


def gram_ids(tokens, k: int, *, pad_id: int | None = PAD):
    """[..., T] one integer per position for the k-gram of tokens ending there (k ≥ 1): equal ids iff equal
    k-grams. Positions t < k − 1, and k-grams holding pad_id (None: no padding), get distinct negative ids, so they
    match nothing. tokens: [..., T] ids ≥ 0 (jax arrays: below 2**(30 // k))."""
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"gram_ids: k = {k!r} is not allowed; expected an integer >= 1")
    xp = _xp(tokens)
    x = xp.asarray(tokens).astype(np.int64 if xp is np else jnp.int32)
    t = x.shape[-1]
    base = int(x.max()) + 1 if t and xp is np else 1 << (30 // k)       # jax: int32 ids
    ids, ok = xp.zeros_like(x), xp.ones(x.shape, bool)
    for i in range(k):                                                   # token i steps back
        back = xp.concatenate([xp.zeros(x.shape[:-1] + (i,), x.dtype), x[..., :t - i]], axis=-1)
        ids = ids * base + back
        ok = ok & (xp.arange(t) >= i)
        if pad_id is not None:
            ok = ok & (back != pad_id)
    return xp.where(ok, ids, -1 - xp.arange(t))


def ngram_targets(tokens, n: int, *, pad_id: int | None = PAD):
    """[batch, q, k] bools: key k = s + 1 follows an earlier occurrence s of the (n − 1)-gram ending at q, s + 1 < q
    (n = 2: heads.induction_targets, the prefix-matching targets). tokens: [batch, T]."""
    return induction_targets(jnp.asarray(gram_ids(tokens, n - 1, pad_id=pad_id)))


def ngram_head_score(pattern, tokens, n: int, *, pad_id: int | None = PAD):
    """[head] attention mass on the n-gram-head targets (`ngram_targets`), averaged over the queries that have one;
    heads.prefix_matching_score applied to the ids of the (n − 1)-grams. pattern: [batch, head, q, k] with tokens
    [batch, T], or one sequence's [head, q, k] with tokens [T]."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 2:
        raise ValueError(f"ngram_head_score: n = {n!r} is not allowed; expected an integer >= 2")
    pattern = jnp.asarray(pattern)
    if pattern.ndim == 3:
        pattern, tokens = pattern[None], tokens[None]
    return prefix_matching_score(pattern, jnp.asarray(gram_ids(tokens, n - 1, pad_id=pad_id)))


def ngram_head_scores(patterns, tokens, orders=(2, 3, 4), *, pad_id: int | None = PAD):
    """{n: [layer, head]} n-gram-head scores of every layer's pattern. patterns: [layer, batch, head, q, k] or a
    sequence of per-layer [batch, head, q, k] (e.g. the `blocks.{l}.attn.hook_pattern` sites of a cache)."""
    return {n: jnp.stack([ngram_head_score(p, tokens, n, pad_id=pad_id) for p in patterns]) for n in orders}
