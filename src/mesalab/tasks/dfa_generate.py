"""REGBENCH on the host (numpy): random DFAs sampled as Akyürek et al. 2024 sample them, minimised and trimmed, and
prompts of strings drawn from them (reference/icll.md §1.2; the authors' `src/dataloaders/dfa.py`).

Vocabulary, as the authors' sorted `Vocab`: id 0 = PAD ("."), ids 1…18 = the letters a…r, id 19 = SEP ("|").
No BOS: a prompt starts with the first letter of its first string.

One DFA (`sample_dfa`), with numpy's `integers(lo, hi)` excluding hi, in the authors' order of draws from the main
generator `rng`: #states ~ U{min_states…max_states} (4…12); alphabet size ~ U{min_alphabet…18} (4…18); the alphabet,
letters without replacement; a child seed. From the child generator (the authors' `RandomDFASampler.sample`), for
every state in turn: #edges ~ U{1…max_edges} (1…3); that many distinct letters of the alphabet; as many distinct
target states, none of them the state itself (no self-loops). State 0 is initial and every state accepts, so a
string is in the language iff every transition on its path exists (the language is prefix-closed). Then a second
child seed, which drives the DFA's strings (the authors' per-DFA `dfa_rng`).

Minimised and trimmed (`minimise`): the authors call pythomata's `minimize().trim()`. Here unreachable states go
first, then Moore's partition refinement (the partial DFA is read as completed by a rejecting sink, so two states are
equivalent iff they define the same letters and their successors are equivalent), then the states are numbered in
breadth-first order from the initial state, letters in increasing order. Either order gives the unique minimal
trimmed DFA of the language up to renaming, so the result is the authors' DFA (checked against pythomata 0.3.2's
`minimize().trim()` on 400 draws: identical tables after renumbering); the breadth-first numbering makes it
canonical: two DFAs recognise the same language iff their canonical tables are equal, which is how duplicates are
found. Why not a library: pythomata and automata-lib (its DFA needs networkx, frozendict and cached_method) build
Python objects per DFA and state; refinement on ≤ 12 states × 18 letters is 30 lines of numpy, tested against an
independent check (tests/test_regbench.py), and runs ≈ 50k DFAs in seconds.

Prompts (`make_prompts`): #strings ~ U{min_strings…max_strings} (10…19), each of length ~ U{1…max_string_len}
(1…49), each letter uniform among the letters defined at the current state (a PFA with uniform transitions), strings
joined by SEP. Deviation: the authors draw the counts and lengths from the data module's generator in split order,
and the letters with `rng.choice` over pythomata's (unordered) letter list; here all three come from the DFA's own
child generator (letters ordered), so a prompt depends only on its DFA's draw and a data set of N training prompts
is the first N prompts of a larger one. The distributions are the same.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

N_LETTERS = 18
PAD, SEP = 0, 19
VOCAB_SIZE = 20


class DFA(NamedTuple):
    """A minimal trimmed DFA: delta [n_states, 18] int8, the next state on each letter or −1; state 0 initial.
    seed: the child seed its strings are drawn from."""

    delta: np.ndarray
    seed: int

    @property
    def key(self) -> bytes:
        """Equal for two DFAs iff they recognise the same language (the table is canonical)."""
        return self.delta.tobytes()


def sample_raw_dfa(rng: np.random.Generator, *, min_states: int = 4, max_states: int = 12, min_alphabet: int = 4,
                   max_edges: int = 3) -> tuple[np.ndarray, int]:
    """The unminimised table [n, 18] (−1: no edge) and the strings' child seed, drawn as the module docstring says."""
    n = int(rng.integers(min_states, max_states + 1))
    k = int(rng.integers(min_alphabet, N_LETTERS + 1))
    alphabet = rng.choice(N_LETTERS, size=k, replace=False)
    sub = np.random.default_rng(rng.integers(0, 2**32))
    delta = np.full((n, N_LETTERS), -1, np.int64)
    for state in range(n):
        m = int(sub.integers(1, max_edges + 1))
        letters = sub.choice(alphabet, size=m, replace=False)
        others = [s for s in range(n) if s != state]
        delta[state, letters] = sub.choice(others, size=m, replace=False)
    return delta, int(sub.integers(0, 2**32))


def reachable(delta: np.ndarray, start: int = 0) -> np.ndarray:
    """[n] bools: states reachable from `start`."""
    seen = np.zeros(len(delta), bool)
    seen[start] = True
    frontier = [start]
    while frontier:
        nxt = delta[frontier].ravel()
        nxt = np.unique(nxt[nxt >= 0])
        nxt = nxt[~seen[nxt]]
        seen[nxt] = True
        frontier = nxt.tolist()
    return seen


def _refine(delta: np.ndarray) -> np.ndarray:
    """Moore's partition refinement on a partial DFA whose states all accept: [n] block ids."""
    block = np.zeros(len(delta), np.int64)
    n_blocks = 1
    while True:
        succ = np.where(delta >= 0, block[np.maximum(delta, 0)], -1)     # a missing edge goes to the sink (−1)
        signature = np.concatenate([block[:, None], succ], axis=1)
        _, new = np.unique(signature, axis=0, return_inverse=True)
        new = new.ravel()
        if new.max() + 1 == n_blocks:
            return new
        block, n_blocks = new, int(new.max()) + 1


def canonical(delta: np.ndarray, start: int = 0) -> np.ndarray:
    """The table with its reachable states renumbered in breadth-first order from `start` (letters ascending)."""
    order, index = [start], {start: 0}
    i = 0
    while i < len(order):
        for dst in delta[order[i]]:
            if dst >= 0 and int(dst) not in index:
                index[int(dst)] = len(order)
                order.append(int(dst))
        i += 1
    renum = np.full(len(delta), -1, np.int64)
    renum[order] = np.arange(len(order))
    out = delta[order]
    return np.where(out >= 0, renum[np.maximum(out, 0)], -1)


def minimise(delta: np.ndarray) -> np.ndarray:
    """The canonical minimal trimmed DFA of a partial DFA (state 0 initial, all states accepting), as int8."""
    keep = np.flatnonzero(reachable(delta))
    renum = np.full(len(delta), -1, np.int64)
    renum[keep] = np.arange(len(keep))
    sub = np.where(delta[keep] >= 0, renum[np.maximum(delta[keep], 0)], -1)
    block = _refine(sub)
    n_blocks = int(block.max()) + 1
    first = np.array([np.flatnonzero(block == b)[0] for b in range(n_blocks)])  # equivalent states agree
    quotient = np.where(sub[first] >= 0, block[np.maximum(sub[first], 0)], -1)
    return canonical(quotient, int(block[0])).astype(np.int8)


def sample_dfas(seed: int, count: int, *, max_draws: int | None = None, **ranges: int) -> list[DFA]:
    """`count` DFAs with pairwise different languages, in draw order, from np.random.default_rng(seed) (the authors
    draw up to 10 × the number wanted; here a shortfall raises ValueError). ranges: min_states, max_states,
    min_alphabet, max_edges."""
    rng = np.random.default_rng(seed)
    out, seen = [], set()
    if count == 0:
        return out
    for _ in range(max_draws or 10 * count):
        raw, child = sample_raw_dfa(rng, **ranges)
        dfa = DFA(minimise(raw), child)
        if dfa.key not in seen:
            seen.add(dfa.key)
            out.append(dfa)
            if len(out) == count:
                return out
    raise ValueError(f"only {len(out)} distinct DFAs in {max_draws or 10 * count} draws; {count} were asked for")


def outgoing(delta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per state, its defined letters in increasing order: (letters [n, 18], targets [n, 18], degree [n]); unused
    slots hold 0."""
    has = delta >= 0
    order = np.argsort(~has, axis=1, kind="stable")                      # defined letters first, ascending
    letters = np.where(np.take_along_axis(has, order, 1), order, 0)
    targets = np.where(np.take_along_axis(has, order, 1), np.take_along_axis(delta, order, 1), 0)
    return letters, targets, has.sum(1)


def max_prompt_tokens(max_strings: int, max_string_len: int) -> int:
    """Tokens of the longest possible prompt: max_strings strings of max_string_len letters and the SEPs between."""
    return max_strings * max_string_len + max_strings - 1


class Prompts(NamedTuple):
    """tokens [P, L] uint8 (PAD after the prompt); states [P, L] int8: the DFA state after reading token t within
    its string (0 after SEP, the initial state; −1 on PAD); delta [P, max_states, 18] int8; n_states [P]."""

    tokens: np.ndarray
    states: np.ndarray
    delta: np.ndarray
    n_states: np.ndarray


def make_prompts(dfas: list[DFA], *, length: int, max_states: int = 12, min_strings: int = 10,
                 max_strings: int = 19, max_string_len: int = 49) -> Prompts:
    """One prompt per DFA, cut or padded to `length` tokens. Vectorised over prompts: one pass over positions."""
    p = len(dfas)
    kind = np.zeros((p, length), np.int8)                                # 0 PAD, 1 letter, 2 SEP
    u = np.zeros((p, length))
    for i, dfa in enumerate(dfas):
        rng = np.random.default_rng(dfa.seed)
        lens = rng.integers(1, max_string_len + 1, size=int(rng.integers(min_strings, max_strings + 1)))
        row = np.repeat(np.tile(np.array([1, 2], np.int8), len(lens)), np.stack([lens, np.ones_like(lens)], 1).ravel())
        row = row[:-1][:length]                                          # no SEP after the last string
        kind[i, :len(row)] = row
        u[i, :len(row)] = rng.random(len(row))                           # a SEP's uniform is drawn and unused
    delta = np.full((p, max_states, N_LETTERS), -1, np.int8)
    n_states = np.array([len(d.delta) for d in dfas], np.int64)
    for i, dfa in enumerate(dfas):
        delta[i, :len(dfa.delta)] = dfa.delta
    if p == 0:
        return Prompts(np.zeros((0, length), np.uint8), np.zeros((0, length), np.int8),
                       np.zeros((0, max_states, N_LETTERS), np.int8), np.zeros(0, np.int64))
    letters, targets, degree = zip(*(outgoing(d) for d in delta.astype(np.int64)))
    letters, targets, degree = np.stack(letters), np.stack(targets), np.stack(degree)
    tokens = np.zeros((p, length), np.uint8)
    states = np.full((p, length), -1, np.int8)
    rows, state = np.arange(p), np.zeros(p, np.int64)
    for t in range(length):
        deg = degree[rows, state]
        j = np.minimum((u[:, t] * deg).astype(np.int64), np.maximum(deg - 1, 0))
        letter, nxt = letters[rows, state, j], targets[rows, state, j]
        is_letter, is_sep = kind[:, t] == 1, kind[:, t] == 2
        tokens[:, t] = np.where(is_letter, letter + 1, np.where(is_sep, SEP, PAD))
        state = np.where(is_letter, nxt, 0)
        states[:, t] = np.where(is_letter | is_sep, state, -1)
    return Prompts(tokens, states, delta, n_states)
