"""REGBENCH: in-context language learning of random regular languages (Akyürek et al. 2024, ICML; reference/icll.md
§1.2–1.4). Each prompt holds 10–19 strings from one random DFA, joined by SEP; the model learns the language in
context and is scored on the validity of its next token and on its distance to the true next-token distribution.

Example (vocabulary: PAD 0, letters a…r = 1…18, SEP 19; a DFA over {a, b} with 0 -a-> 1, 1 -b-> 0): the prompt
"a b a | a | a b" is the tokens [1 2 1 19 1 19 1 2]. The model reads all but the last token and predicts the next::

    input      a  b  a  |  a  |  a          (one-hot over 20 ids)
    target     b  a  |  a  |  a  b          (one-hot; the SEP targets are masked, as in the authors' code)
    state      1  0  1  0  1  0  1          (DFA state after the input, 0 after SEP)
    true next  b  a  b  a  b  a  b          (uniform over the letters defined at that state; scored by TVD)

A data set is a fixed set of prompts, one per DFA, generated once on the host (tasks/dfa_generate.py), cached on
disk keyed by the config, and held in memory; `sample` draws prompt indices inside jit. The config stays a small
static, JSON-able dataclass (the engine stacks, overrides and checkpoints it), so the prompts are not a field: they
are looked up from the config when `sample` is traced and enter the compiled program as constants (as the class
means of tasks/classification.py): ≈ 2 bytes per token (tokens and states), 76 MB at the authors' largest N =
40k, and never a host round trip per step. Measured on 2 cores: the first jitted `sample` takes 0.6 s at N = 5k and
1.4 s at N = 40k, then 1 ms per batch of 32.

Splits: DFAs are drawn in one stream from `seed`, duplicates (same language) dropped; the first n_test are the test
split, the next n_val the validation split, the next n_train the training split. So splits are disjoint as
languages, the test set does not depend on n_train, and the N training prompts of a smaller data set are the first
N of a larger one (learning curves compare like with like). Deviation: the authors shuffle one list of DFAs and
split it (train first), and their de-duplication compares DFA objects by identity, so it keeps duplicates.

Cache: $MESALAB_CACHE/regbench, else $XDG_CACHE_HOME/mesalab/regbench, else ~/.cache/mesalab/regbench; one .npz
per config (no pickle), written atomically. Generating takes 2.6 s for the authors' default (5k training and 1k
evaluation prompts) and 28 s for 40k + 1k on one core; loading the cached file 0.03 s and 0.3 s.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from mesalab.config import config, not_allowed, override, require, require_choice
from mesalab.tasks import dfa_generate as gen
from mesalab.tasks.base import Batch, sampler

GENERATOR_VERSION = 1
SPLITS = ("train", "test", "val")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@config
class RegbenchConfig:
    """n_train, n_test, n_val: prompts (one DFA each) per split; split: the one `sample` draws from; seed: the
    generator's seed. DFA: min_states…max_states states, alphabets of min_alphabet…18 letters, 1…max_edges edges
    per state. Prompts: min_strings…max_strings strings of 1…max_string_len letters. max_len: input positions of a
    sequence (0: the longest possible prompt less one, so nothing is ever cut; a smaller value cuts longer prompts).
    Defaults are the authors' (configs/dataset/icl_dfa.yaml, sweeps: 500 test and 500 validation DFAs)."""

    n_train: int = 2500
    n_test: int = 500
    n_val: int = 500
    split: str = "train"
    seed: int = 0
    min_states: int = 4
    max_states: int = 12
    min_alphabet: int = 4
    max_edges: int = 3
    min_strings: int = 10
    max_strings: int = 19
    max_string_len: int = 49
    max_len: int = 0

    def __post_init__(self) -> None:
        for f in ("n_train", "n_test", "n_val", "seed", "max_len"):
            require(self, f, _is_int(getattr(self, f)) and getattr(self, f) >= 0, "an integer >= 0")
        require_choice(self, "split", SPLITS)
        require(self, "split", getattr(self, f"n_{self.split}") > 0, f"a split with prompts (n_{self.split} = 0)")
        require(self, "max_edges", _is_int(self.max_edges) and 1 <= self.max_edges <= gen.N_LETTERS,
                f"an integer in [1, {gen.N_LETTERS}]")
        require(self, "min_states", _is_int(self.min_states) and self.min_states >= self.max_edges + 1,
                f"an integer >= max_edges + 1 = {self.max_edges + 1} (edges go to distinct other states)")
        require(self, "max_states", _is_int(self.max_states) and self.min_states <= self.max_states <= 127,
                f"an integer in [min_states, 127] = [{self.min_states}, 127]")
        require(self, "min_alphabet", _is_int(self.min_alphabet) and self.max_edges <= self.min_alphabet <= 18,
                f"an integer in [max_edges, 18] = [{self.max_edges}, 18]")
        require(self, "min_strings", _is_int(self.min_strings) and self.min_strings >= 1, "an integer >= 1")
        require(self, "max_strings", _is_int(self.max_strings) and self.max_strings >= self.min_strings,
                f"an integer >= min_strings = {self.min_strings}")
        require(self, "max_string_len", _is_int(self.max_string_len) and self.max_string_len >= 1, "an integer >= 1")

    @property
    def vocab_size(self) -> int:
        return gen.VOCAB_SIZE

    token_width = target_width = vocab_size

    @property
    def seq_len(self) -> int:
        """Input positions T: a prompt of T + 1 tokens gives T (input, target) pairs."""
        return self.max_len or gen.max_prompt_tokens(self.max_strings, self.max_string_len) - 1

    @property
    def loss_positions(self) -> str:
        return "masked"

    @property
    def loss_kind(self) -> str:
        return "cross_entropy"

    def sample(self, key: jax.Array, batch_size: int) -> Batch:
        return sample(self, key, batch_size)


class Split(NamedTuple):
    """One split's prompts: tokens [P, T + 1] uint8, states [P, T] int8 (state after input t; −1 on PAD), delta
    [P, max_states, 18] int8 (next state or −1), n_states [P]."""

    tokens: np.ndarray
    states: np.ndarray
    delta: np.ndarray
    n_states: np.ndarray


def _generator_fields(cfg: RegbenchConfig) -> dict:
    fields = {k: getattr(cfg, k) for k in ("n_train", "n_test", "n_val", "seed", "min_states", "max_states",
                                           "min_alphabet", "max_edges", "min_strings", "max_strings",
                                           "max_string_len")}
    return {**fields, "seq_len": cfg.seq_len, "version": GENERATOR_VERSION}


def cache_path(cfg: RegbenchConfig) -> Path:
    """Where `cfg`'s data set is cached (see the module docstring)."""
    base = os.environ.get("MESALAB_CACHE")
    if base:
        root = Path(base) / "regbench"
    else:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mesalab" / "regbench"
    digest = hashlib.sha256(json.dumps(_generator_fields(cfg), sort_keys=True).encode()).hexdigest()[:20]
    return root / f"{digest}.npz"


def generate(cfg: RegbenchConfig) -> dict[str, Split]:
    """Generate every split of `cfg` (no cache)."""
    counts = {"test": cfg.n_test, "val": cfg.n_val, "train": cfg.n_train}
    try:
        dfas = gen.sample_dfas(cfg.seed, sum(counts.values()), min_states=cfg.min_states, max_states=cfg.max_states,
                               min_alphabet=cfg.min_alphabet, max_edges=cfg.max_edges)
    except ValueError as e:
        raise not_allowed("RegbenchConfig", "n_train", cfg.n_train,
                          f"fewer prompts: these DFA ranges give too few distinct languages ({e})") from None
    out, start = {}, 0
    for name, n in counts.items():
        p = gen.make_prompts(dfas[start:start + n], length=cfg.seq_len + 1, max_states=cfg.max_states,
                             min_strings=cfg.min_strings, max_strings=cfg.max_strings,
                             max_string_len=cfg.max_string_len)
        out[name] = Split(p.tokens, p.states[:, :-1], p.delta, p.n_states)
        start += n
    return out


def _save(path: Path, splits: dict[str, Split]) -> None:
    from mesalab.store import atomic_write

    arrays = {f"{s}.{f}": getattr(v, f) for s, v in splits.items() for f in Split._fields}

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)

    atomic_write(path, write)


def _load(path: Path) -> dict[str, Split]:
    with np.load(path, allow_pickle=False) as z:
        return {s: Split(*(z[f"{s}.{f}"] for f in Split._fields)) for s in SPLITS}


@functools.lru_cache(maxsize=8)
def _splits(cfg: RegbenchConfig) -> dict[str, Split]:
    path = cache_path(cfg)
    if path.exists():
        try:
            return _load(path)
        except (OSError, ValueError, KeyError):  # a damaged file is regenerated
            pass
    splits = generate(cfg)
    _save(path, splits)
    return splits


def dataset(cfg: RegbenchConfig, split: str | None = None) -> Split:
    """The prompts of `split` (default cfg.split), from memory, the disk cache, or generated (then cached)."""
    first = next(s for s in SPLITS if getattr(cfg, f"n_{s}") > 0)
    return _splits(override(cfg, split=first))[split or cfg.split]  # one memory entry for every split


def valid_next(delta, states, tokens):
    """[..., T, 20] bools: token v can follow input t (a letter with an edge from the state after t).

    delta [..., S, 18]; states [..., T] (−1 on PAD); tokens [..., T] input ids. PAD and SEP are never valid
    (the authors' greedy DFA accuracy counts an emitted SEP as wrong)."""
    xp = jnp if isinstance(delta, jax.Array) else np
    st = xp.maximum(xp.asarray(states).astype(np.int32), 0)
    rows = xp.take_along_axis(xp.asarray(delta).astype(np.int32), st[..., None], axis=-2)  # [..., T, 18]
    ok = (rows >= 0) & (xp.asarray(tokens) != gen.PAD)[..., None]
    zeros = xp.zeros(ok.shape[:-1] + (1,), bool)
    return xp.concatenate([zeros, ok, zeros], axis=-1)


def true_next_distribution(delta, states, tokens):
    """[..., T, 20] q_t: uniform over the letters defined at the state after input t (the authors'
    `get_dfa_probs`: 0 on PAD and SEP, all-zero rows at PAD inputs). Arguments as `valid_next`."""
    valid = valid_next(delta, states, tokens)
    xp = jnp if isinstance(valid, jax.Array) else np
    v = valid.astype(np.float32)
    return v / xp.maximum(v.sum(-1, keepdims=True), 1.0)


def masks(tokens):
    """(target_mask, input_mask) [..., T] from a prompt's tokens [..., T + 1]: targets that are letters (the loss and
    greedy accuracy positions: SEP and PAD targets are masked as in the authors' code), and inputs that are not PAD
    (the positions of the authors' TVD, which include inputs whose target is SEP). The prompt's last token is an
    input here, followed by PAD; the authors' inputs stop before it, so it is not counted either."""
    xp = jnp if isinstance(tokens, jax.Array) else np
    nxt, inp = tokens[..., 1:], tokens[..., :-1]
    return (((nxt != gen.PAD) & (nxt != gen.SEP)).astype(xp.float32),
            ((inp != gen.PAD) & (nxt != gen.PAD)).astype(xp.float32))


def eval_arrays(cfg: RegbenchConfig, split: str = "test") -> dict[str, np.ndarray]:
    """A whole split on the host, for evaluation: inputs / targets [P, T] ids, target_mask, input_mask [P, T],
    valid [P, T, 20] bools and q [P, T, 20] the true next-token distributions, states [P, T]."""
    d = dataset(cfg, split)
    inputs, targets = d.tokens[:, :-1].astype(np.int32), d.tokens[:, 1:].astype(np.int32)
    target_mask, input_mask = masks(d.tokens)
    return {"inputs": inputs, "targets": targets, "target_mask": target_mask, "input_mask": input_mask,
            "valid": valid_next(d.delta, d.states, inputs), "q": true_next_distribution(d.delta, d.states, inputs),
            "states": d.states.astype(np.int32)}


@sampler
def sample(cfg: RegbenchConfig, key: jax.Array, batch_size: int) -> Batch:
    """A batch of prompts of cfg.split drawn uniformly with replacement (the authors shuffle epochs instead).

    info: tokens [B, T] input ids, next [B, T] target ids, states [B, T], index [B] the prompts' rows in the split
    (`dataset(cfg)`), delta [B, max_states, 18] their DFAs — with `true_next_distribution` the true q."""
    d = dataset(cfg)
    index = jax.random.randint(key, (batch_size,), 0, d.tokens.shape[0])
    batch = prompt_batch(jnp.asarray(d.tokens)[index].astype(jnp.int32), index)
    return Batch(batch.inputs, batch.targets, batch.loss_mask,
                 {**batch.info, "states": jnp.asarray(d.states)[index].astype(jnp.int32),
                  "delta": jnp.asarray(d.delta)[index]})


def prompt_batch(rows: jax.Array, index: jax.Array) -> Batch:
    """The next-token batch of prompt rows [B, T+1] (ids): one-hot inputs and targets, SEP and PAD targets masked;
    info: tokens [B, T] input ids, next [B, T] target ids, index [B] the rows' indices in their split."""
    inp, nxt = rows[:, :-1], rows[:, 1:]
    v = gen.VOCAB_SIZE
    return Batch(jax.nn.one_hot(inp, v, dtype=jnp.float32), jax.nn.one_hot(nxt, v, dtype=jnp.float32),
                 masks(rows)[0], {"tokens": inp, "next": nxt, "index": index})
