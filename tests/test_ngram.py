"""The vectorised in-context n-gram baseline equals a direct count (the authors' algorithm, written out slowly)."""

from collections import Counter

import numpy as np
import pytest

from mesalab.algorithms.ngram import SEP, ngram_probs


def _chars(ids) -> str:
    return "".join("|" if i == SEP else chr(ord("a") + i - 1) for i in ids if i != 0)


def direct_ngram(ids, n: int) -> np.ndarray:
    """The authors' `predict_with_n_gram_back_off` (MLE, back-off, no add-one) as plain loops: refit every count at
    every position, recurse on the letters an order has not seen."""
    text = _chars(ids)
    rows = np.zeros((len(ids), 20))
    for t in range(1, len(text) + 1):
        texts = text[:t].split("|")
        counts = {m: Counter() for m in range(1, n + 1)}
        for s in texts:
            padded = "_" * (n - 1) + s
            for m in range(1, n + 1):
                for i in range(len(padded) - m + 1):
                    counts[m][padded[i:i + m]] += 1
        vocab = sorted(set("".join(texts)))

        def cond(h, c, m, counts=counts):
            if m == 1:
                return counts[1][c] / sum(counts[1].values())
            return counts[m][h + c] / counts[m - 1][h]

        def prob(h, c, m, counts=counts, vocab=vocab):
            if counts[m][h + c] > 0:
                return cond(h, c, m)
            seen = sum(cond(h, u, m) for u in vocab if counts[m][h + u] > 0)
            unseen = [u for u in vocab if counts[m][h + u] == 0]
            lower = {u: prob(h[1:], u, m - 1) for u in unseen}
            return (1.0 - seen) * lower[c] / sum(lower.values())

        h = texts[-1][-(n - 1):] if n > 1 else ""
        h = "_" * (n - 1 - len(h)) + h
        for c in vocab:
            rows[t - 1, ord(c) - ord("a") + 1] = prob(h, c, n)
    return rows


def _random_prompts(rng, count, length):
    out = np.zeros((count, length), np.int64)
    for p in range(count):
        k = int(rng.integers(length // 2, length + 1))
        row = rng.integers(1, 5, size=k)                                 # 4 letters: many repeats
        row[rng.random(k) < 0.2] = SEP
        row[0] = 1
        row[1:][(row[1:] == SEP) & (row[:-1] == SEP)] = 2                # no empty strings
        out[p, :k] = row
    return out


@pytest.mark.parametrize("n", [2, 3, 4])
def test_equals_a_direct_count(n):
    prompts = _random_prompts(np.random.default_rng(n), 6, 30)
    fast = ngram_probs(prompts, n, chunk=4)
    for p in range(len(prompts)):
        np.testing.assert_allclose(fast[p], direct_ngram(prompts[p], n), rtol=1e-12, atol=1e-12)


def test_hand_prompt_bigram():
    """'ab|a': after the last 'a' the bigram has seen a→b once out of two a's (one is the current): P(b) = 1/2, and
    'a' backs off to the unigram with the remaining 1/2."""
    ids = np.array([1, 2, SEP, 1])
    row = ngram_probs(ids, 2)[-1]
    assert row[2] == pytest.approx(0.5) and row[1] == pytest.approx(0.5) and row.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(ngram_probs(ids, 2), direct_ngram(ids, 2))


def test_rows_and_padding():
    prompts = _random_prompts(np.random.default_rng(0), 4, 40)
    raw = ngram_probs(prompts, 3)
    assert np.all(raw.sum(-1) <= 1 + 1e-12) and np.all(raw[prompts == 0] == 0)
    norm = ngram_probs(prompts, 3, normalize=True)
    np.testing.assert_allclose(norm.sum(-1)[prompts != 0], 1.0)
    assert np.all(raw[..., [0, SEP]] == 0)
    with pytest.raises(ValueError, match="n = 0"):
        ngram_probs(prompts, 0)
