"""In-context n-gram models with back-off: the baselines of REGBENCH (Akyürek et al. 2024; reference/icll.md §1.8,
the authors' `ngram.py::predict_with_n_gram_back_off` as `eval.py` calls it: maximum likelihood, no add-one, no
`uniform` spreading).

At every input position t the model is fit afresh to the prompt read so far, x_0 … x_t, split at SEP into texts
(the last one the current, unfinished string), each left-padded with n − 1 "_". Counts c_m(·) are of m-grams over
these padded texts, so "_" counts as a unigram too. The history h is the last n − 1 symbols of the current text
(padded). For a letter v seen so far (the vocabulary: letters in x_0 … x_t):

    P_m(v | h_m) = c_m(h_m v) / c_{m−1}(h_m)      if c_m(h_m v) > 0        (m ≥ 2; h_m: the last m − 1 of h)
                 = β_m · P_{m−1}(v) / Σ_{u ∈ E_m} P_{m−1}(u)   otherwise,
    β_m = 1 − Σ_{u ∉ E_m} c_m(h_m u) / c_{m−1}(h_m),   E_m: the vocabulary's letters with c_m(h_m u) = 0,
    P_1(v) = c_1(v) / (letters + (n − 1)·texts)                            (the "_" take their share of unigrams).

The denominator c_{m−1}(h_m) counts every occurrence of h_m, including the one that ends at t and is not followed
by anything yet, so when no letter backs off the probabilities sum to less than one. The authors keep that
deficit (their TVD and loss use the raw rows) and so does `ngram_probs`; `normalize=True` renormalises.

Vectorised over prompts and positions: the counts at every t are running sums within runs of equal histories (one
sort per order, O(B·T·(V + log BT)), float64 as the authors), against the authors' pure-Python refit of every
count at every position (O(T²) per prompt, with a loop over the vocabulary inside).
Token ids follow tasks/dfa_generate.py: PAD 0, letters 1…18, SEP 19; rows at PAD inputs are zero.
"""

from __future__ import annotations

import numpy as np

PAD, SEP, N_LETTERS, VOCAB_SIZE = 0, 19, 18, 20


def _history(x: np.ndarray, n: int) -> np.ndarray:
    """[B, T, n − 1]: entry j is the letter j steps back from t within t's string (j = 0: x_t itself), 0 ("_") before
    the string's start, and all 0 at SEP and PAD."""
    b, t = x.shape
    letter = (x >= 1) & (x <= N_LETTERS)
    idx = np.broadcast_to(np.arange(t), (b, t))
    boundary = np.where(letter, -1, idx)                                 # last non-letter position ≤ t
    start = np.maximum.accumulate(boundary, axis=1) + 1                  # first position of t's string
    hist = np.zeros((b, t, max(n - 1, 0)), np.int64)
    for j in range(n - 1):
        back = idx - j
        ok = letter & (back >= start)
        hist[:, :, j] = np.where(ok, np.take_along_axis(x, np.maximum(back, 0), axis=1), 0)
    return hist


def _prefix_sums(keys: np.ndarray, counted: np.ndarray, weights: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """[B, T, W]: at every t, Σ weights[i] over the counted positions i ≤ t with keys[i] = queries[t] (per prompt).

    One sort of (prompt, key, position) and a cumulative sum within each key's run; a query finds the last counted
    position of its key at or before t by binary search. O(B·T·(W + log BT))."""
    b, t = keys.shape
    g = int(max(keys.max(initial=0), queries.max(initial=0))) + 1
    row = np.arange(b)[:, None]
    code = (row * g + keys) * t + np.arange(t)                           # distinct, ordered by (prompt, key, t)
    sel = counted.ravel()
    order = np.argsort(code.ravel()[sel], kind="stable")
    codes = code.ravel()[sel][order]
    w = weights.reshape(b * t, -1)[sel][order]
    cum = np.cumsum(w, axis=0)
    group = codes // t
    start = np.maximum.accumulate(np.where(np.r_[True, group[1:] != group[:-1]], np.arange(len(codes)), 0))
    within = cum - (cum[start] - w[start]) if len(codes) else cum
    query = ((row * g + queries) * t + np.arange(t)).ravel()
    pos = np.searchsorted(codes, query, side="right") - 1
    hit = (pos >= 0) & (group[np.maximum(pos, 0)] == query // t) if len(codes) else np.zeros(len(query), bool)
    out = np.where(hit[:, None], within[np.maximum(pos, 0)] if len(codes) else 0.0, 0.0)
    return out.reshape(b, t, -1)


def _ids(hist: np.ndarray, k: int) -> np.ndarray:
    """One integer per k-symbol history (symbols 0…18, "_" = 0)."""
    return (hist[..., :k] * (N_LETTERS + 1) ** np.arange(k)).sum(-1)


def _ngram_batch(x: np.ndarray, n: int) -> np.ndarray:
    b, t = x.shape
    letter = (x >= 1) & (x <= N_LETTERS)
    onehot = np.zeros((b, t, N_LETTERS))
    np.put_along_axis(onehot, np.clip(x - 1, 0, N_LETTERS - 1)[..., None], 1.0, axis=-1)
    onehot *= letter[..., None]
    texts = np.cumsum(x == SEP, axis=1) + 1.0                            # texts in x_0 … x_t, the current included
    unigram = np.cumsum(onehot, axis=1)                                  # c_1(v)
    vocab = unigram > 0
    probs = unigram / (unigram.sum(-1) + (n - 1) * texts)[..., None]     # P_1
    hist = _history(x, n)
    ctx = np.concatenate([np.zeros((b, 1, max(n - 1, 0)), np.int64), hist[:, :-1]], axis=1)  # history before i
    for m in range(2, n + 1):
        k = m - 1
        here, before = _ids(hist, k), _ids(ctx, k)
        follow = _prefix_sums(before, letter, onehot, here)             # c_m(h_m v)   [B, T, 18]
        denom = np.where(letter, _prefix_sums(here, letter, np.ones((b, t, 1)), here)[..., 0],
                         (n - m + 1) * texts)                            # c_{m−1}(h_m); all "_" after SEP
        ml = follow / denom[..., None]
        seen = follow > 0
        unseen = vocab & ~seen
        beta = 1.0 - ml.sum(-1, keepdims=True)
        mass = np.where(unseen, probs, 0.0).sum(-1, keepdims=True)
        backed = beta * probs / np.where(mass > 0, mass, 1.0)
        probs = np.where(seen, ml, np.where(unseen, backed, 0.0))
    out = np.zeros((b, t, VOCAB_SIZE))
    out[..., 1:1 + N_LETTERS] = probs
    return out * (x != PAD)[..., None]


def ngram_probs(inputs, n: int = 3, *, normalize: bool = False, chunk: int = 512) -> np.ndarray:
    """[..., T, 20] in-context n-gram (with back-off) next-token probabilities after each input position.

    inputs: [..., T] token ids (a prompt's inputs: PAD 0, letters 1…18, SEP 19); n ≥ 1 the order (the paper's
    baselines: 2 and 3). normalize: rescale each row to sum to one (the authors do not). chunk: prompts per
    vectorised pass (memory ≈ chunk · T · 600 bytes)."""
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise ValueError(f"ngram_probs: n = {n!r} is not allowed; expected an integer >= 1")
    x = np.asarray(inputs).astype(np.int64)
    flat = x.reshape(-1, x.shape[-1])
    out = np.concatenate([_ngram_batch(flat[i:i + chunk], n) for i in range(0, len(flat), chunk)], axis=0)
    if normalize:
        out = out / np.maximum(out.sum(-1, keepdims=True), 1e-300)
    return out.reshape(x.shape + (VOCAB_SIZE,))
