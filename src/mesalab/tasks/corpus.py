"""Real text for language modelling (issue 21, S10): byte-level next-token prediction on a local corpus.

The default corpus is the Python standard library's own source files — real text (code, comments, docstrings) that
every Python installation has, so nothing is downloaded. `source` may instead name any local text file or folder, or
(with the optional `datasets` package, and only when asked) a Hugging Face dataset streamed by name.

    source = "stdlib"      every *.py under sysconfig's stdlib folder, site-packages excluded (CPython 3.11.7:
                           1,790 files, 31.5 MB; the PSF License 2.0 — see the LICENSE file of your Python)
    source = "path/to/dir" files matching `files` (a glob, default "**/*.py") under it, in sorted order
    source = "path/a.txt"  one file
    source = "hf:NAME"     a Hugging Face dataset's "text" field, streamed (needs `pip install datasets`)

Tokens are **bytes** (vocabulary 256, plus nothing): no tokenizer to train or download, no unknown tokens, and an
exact round trip, which suits code as well as prose. A trained BPE would pack about 3× more text into a context of
the same length, but adds a training step and a dependency whose output a study's numbers would depend on; at the
CPU scale of S10 (contexts of 128–256 tokens, models of ~10⁵–10⁶ parameters) bytes are the fair, simple choice. Files
are joined by a NUL byte (0), which text files do not contain, so a model can see where a document ends.

**The split cannot leak.** Documents (files) go wholly to one split, by a hash of their path relative to the corpus
root: a file is in the validation split iff sha1(path) / 2¹⁶⁰ < valid_share. For a single file, the last valid_share
of its bytes is the validation split. Windows are drawn inside one split's byte array, never across the boundary.
The split is the same on every machine with the same files; `corpus_stats` reports the bytes and a digest of each
split, which a study records, since another Python version has other stdlib files.

`max_bytes` (0: no limit) keeps the first max_bytes of each split's documents in sorted order, so a CPU-scale study
compiles a small constant. Each batch: `batch_size` windows of seq_len + 1 bytes at uniform random offsets; inputs
are the one-hot first seq_len bytes, targets the one-hot next bytes, every position in the loss.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import sysconfig
from pathlib import Path
from typing import Any, Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np

from mesalab.config import ConfigError, config, require, require_choice
from mesalab.tasks.base import Batch, sampler

VOCAB = 256
SEPARATOR = 0  # between documents


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@config
class CorpusConfig:
    """source: "stdlib", a local file or folder, or "hf:NAME"; files: the glob for a folder; split: "train" or
    "validation"; valid_share: the share of documents (or of a single file's bytes) held out; seq_len: tokens per
    window; max_bytes: keep at most this many bytes per split (0: all)."""

    source: str = "stdlib"
    files: str = "**/*.py"
    split: str = "train"
    valid_share: float = 0.05
    seq_len: int = 128
    max_bytes: int = 0

    def __post_init__(self) -> None:
        require(self, "source", isinstance(self.source, str) and bool(self.source), "'stdlib', a path, or 'hf:NAME'")
        require_choice(self, "split", ("train", "validation"))
        require(self, "valid_share", isinstance(self.valid_share, (int, float)) and 0 < self.valid_share < 1,
                "a number in (0, 1)")
        require(self, "seq_len", _is_int(self.seq_len) and self.seq_len >= 1, "a positive integer")
        require(self, "max_bytes", _is_int(self.max_bytes) and self.max_bytes >= 0, "an integer >= 0 (0: all)")

    @property
    def token_width(self) -> int:
        return VOCAB

    @property
    def target_width(self) -> int:
        return VOCAB

    @property
    def vocab_size(self) -> int:
        return VOCAB

    @property
    def loss_kind(self) -> str:
        return "cross_entropy"

    @property
    def loss_positions(self) -> str:
        """Every position predicts its next byte (the engine's masked loss)."""
        return "masked"

    def sample(self, key: jax.Array, batch_size: int) -> Batch:
        return sample(self, key, batch_size)


def stdlib_root() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def _in_validation(name: str, share: float) -> bool:
    return int(hashlib.sha1(name.encode()).hexdigest(), 16) / 2**160 < share


def _documents(source: str, pattern: str) -> Iterator[tuple[str, Callable[[], bytes]]]:
    """(name, read) of every document, in a fixed order; `read()` loads its bytes. Files are listed first and read
    only when `load_splits` asks, so a folder is never loaded whole when max_bytes caps the splits."""
    if source.startswith("hf:"):
        yield from _hf_documents(source[3:])
        return
    root = stdlib_root() if source == "stdlib" else Path(source).expanduser()
    if source == "stdlib":
        paths = [p for p in root.rglob("*.py") if "site-packages" not in p.relative_to(root).parts]
    elif root.is_dir():
        paths = [p for p in root.glob(pattern) if p.is_file()]
    elif root.is_file():
        paths = [root]
        root = root.parent
    else:
        raise ConfigError(f"CorpusConfig.source = {source!r} is not allowed; expected 'stdlib', an existing file or "
                          "folder, or 'hf:NAME'")
    if not paths:
        raise ConfigError(f"CorpusConfig.files = {pattern!r} matches no file under {root}")
    for p in sorted(paths):
        yield p.relative_to(root).as_posix(), p.read_bytes


def _hf_documents(name: str, limit_bytes: int = 200_000_000) -> Iterator[tuple[str, Callable[[], bytes]]]:
    """A Hugging Face dataset's "text" records, streamed (only when the user names one; never in tests)."""
    try:
        import datasets
    except ImportError as e:
        raise ConfigError(f"CorpusConfig.source = 'hf:{name}' needs the `datasets` package: pip install datasets") from e
    total = 0
    for i, record in enumerate(datasets.load_dataset(name, split="train", streaming=True)):
        text = record["text"].encode()
        yield f"{name}/{i}", lambda text=text: text
        total += len(text)
        if total >= limit_bytes:
            return


@functools.lru_cache(maxsize=4)
def load_splits(source: str, pattern: str, valid_share: float, max_bytes: int) -> dict[str, np.ndarray]:
    """{"train": uint8 array, "validation": uint8 array}: each split's documents joined by the separator byte, cut
    to max_bytes (0: all). A document's split is decided from its name before it is read, and reading stops once
    both splits hold max_bytes, so a large folder is streamed, not loaded whole. A single file is split by bytes:
    its last valid_share is the validation split."""
    docs = _documents(source, pattern)
    first = next(docs)
    second = next(docs, None)
    if second is None:  # one file
        data = first[1]()
        cut = int(len(data) * (1 - valid_share))
        parts = {"train": [data[:cut]], "validation": [data[cut:]]}
    else:
        parts = {"train": [], "validation": []}
        size = {"train": -1, "validation": -1}  # joined length so far (no separator before the first document)
        for name, read in itertools.chain([first, second], docs):
            split = "validation" if _in_validation(name, valid_share) else "train"
            if max_bytes and size[split] >= max_bytes:
                if all(n >= max_bytes for n in size.values()):
                    break
                continue
            data = read()
            parts[split].append(data)
            size[split] += 1 + len(data)
    out = {}
    for split, chunks in parts.items():
        joined = bytes([SEPARATOR]).join(chunks)
        if max_bytes:
            joined = joined[:max_bytes]
        out[split] = np.frombuffer(joined, np.uint8).copy()
    return out


def split_bytes(cfg: CorpusConfig) -> np.ndarray:
    """The byte array of cfg's split (read once per process, then cached)."""
    data = load_splits(cfg.source, cfg.files, float(cfg.valid_share), cfg.max_bytes)[cfg.split]
    if len(data) < cfg.seq_len + 2:
        raise ConfigError(f"CorpusConfig.seq_len = {cfg.seq_len} is not allowed; the {cfg.split} split of "
                          f"{cfg.source!r} has only {len(data)} bytes (raise max_bytes or valid_share)")
    return data


def corpus_stats(cfg: CorpusConfig) -> dict[str, Any]:
    """Bytes and a sha1 digest of each split (what a study records so that its corpus can be identified)."""
    splits = load_splits(cfg.source, cfg.files, float(cfg.valid_share), cfg.max_bytes)
    return {split: {"bytes": int(len(a)), "sha1": hashlib.sha1(a.tobytes()).hexdigest()} for split, a in splits.items()}


def decode(tokens: Any) -> str:
    """Bytes back to text (the separator shown as a newline; invalid UTF-8 replaced)."""
    raw = bytes(int(t) for t in np.asarray(tokens).ravel())
    return raw.replace(bytes([SEPARATOR]), b"\n").decode("utf-8", errors="replace")


@sampler
def sample(cfg: CorpusConfig, key: jax.Array, batch_size: int) -> Batch:
    """batch_size windows at uniform random offsets of cfg's split: one-hot bytes and the one-hot next bytes."""
    data = jnp.asarray(split_bytes(cfg))  # a constant of the compiled program
    n = cfg.seq_len + 1
    starts = jax.random.randint(key, (batch_size,), 0, data.shape[0] - n + 1)
    windows = jax.vmap(lambda s: jax.lax.dynamic_slice(data, (s,), (n,)))(starts).astype(jnp.int32)
    inputs = jax.nn.one_hot(windows[:, :-1], VOCAB, dtype=jnp.float32)
    targets = jax.nn.one_hot(windows[:, 1:], VOCAB, dtype=jnp.float32)
    mask = jnp.ones(windows[:, 1:].shape, jnp.float32)
    return Batch(inputs, targets, mask, {"tokens": windows[:, :-1], "next": windows[:, 1:], "start": starts})
