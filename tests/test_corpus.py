"""The real-text corpus (tasks/corpus.py): the default needs nothing but Python, splits cannot leak, windows are
next-byte pairs, and a model trains on it."""

import functools

import jax
import numpy as np
import pytest

from mesalab.config import ConfigError
from mesalab.tasks.corpus import SEPARATOR, CorpusConfig, corpus_stats, decode, load_splits, split_bytes


@pytest.fixture
def folder(tmp_path):
    for i in range(40):
        (tmp_path / f"doc{i:02d}.txt").write_text(f"document {i}: " + "abc " * (20 + i))
    return tmp_path


def test_folder_split_puts_each_document_wholly_in_one_split(folder):
    splits = load_splits(str(folder), "*.txt", 0.25, 0)
    texts = {name: bytes(a).split(bytes([SEPARATOR])) for name, a in splits.items()}
    docs = {p.read_bytes() for p in folder.glob("*.txt")}
    assert set(texts["train"]) | set(texts["validation"]) == docs            # every document, whole
    assert not set(texts["train"]) & set(texts["validation"])                 # in exactly one split
    assert 0 < len(texts["validation"]) < 20


def test_a_single_file_holds_out_its_tail(tmp_path):
    f = tmp_path / "book.txt"
    f.write_bytes(bytes(range(1, 201)))
    splits = load_splits(str(f), "**/*", 0.1, 0)
    assert bytes(splits["train"]) + bytes(splits["validation"]) == f.read_bytes()
    assert len(splits["validation"]) == 20


def test_windows_are_inputs_and_their_next_bytes(folder):
    cfg = CorpusConfig(source=str(folder), files="*.txt", seq_len=16)
    batch = jax.jit(lambda k: cfg.sample(k, 8))(jax.random.PRNGKey(0))
    data = split_bytes(cfg)
    tokens, nxt, starts = (np.asarray(batch.info[k]) for k in ("tokens", "next", "start"))
    for b in range(8):
        s = starts[b]
        assert (tokens[b] == data[s:s + 16]).all() and (nxt[b] == data[s + 1:s + 17]).all()
    assert batch.inputs.shape == (8, 16, 256) and (np.asarray(batch.inputs).argmax(-1) == tokens).all()
    assert (np.asarray(batch.targets).argmax(-1) == nxt).all() and float(batch.loss_mask.mean()) == 1.0
    assert "document" in decode(data[:40])


def test_the_default_corpus_is_pythons_own_source():
    cfg = CorpusConfig(max_bytes=200_000)
    stats = corpus_stats(cfg)
    assert stats["train"]["bytes"] == 200_000 and stats["validation"]["bytes"] == 200_000
    assert "def " in decode(split_bytes(cfg)[:20_000])


def test_bad_values_name_the_field(tmp_path):
    with pytest.raises(ConfigError, match="CorpusConfig.valid_share = 1.5"):
        CorpusConfig(valid_share=1.5)
    with pytest.raises(ConfigError, match="CorpusConfig.source = .*nowhere"):
        split_bytes(CorpusConfig(source=str(tmp_path / "nowhere")))
    (tmp_path / "tiny.txt").write_text("hi")
    with pytest.raises(ConfigError, match="CorpusConfig.seq_len = 128 is not allowed"):
        split_bytes(CorpusConfig(source=str(tmp_path / "tiny.txt")))


def test_a_byte_model_learns_the_corpus(folder):
    from mesalab.models import Transformer, TransformerConfig
    from mesalab.train import TrainConfig, Trainer

    task = CorpusConfig(source=str(folder), files="*.txt", seq_len=16)
    model = TransformerConfig(d_in=256, d_model=16, n_layers=1, n_heads=2, d_head=8, attention="softmax",
                              causal=True, d_out=256, pos_embedding="learned", max_len=16)
    res = Trainer(task, functools.partial(Transformer, model),
                  TrainConfig(steps=60, batch_size=16, lr=1e-2, chunk_steps=30, eval_batch_size=64)).fit(1, progress=False)
    loss = res.history.query("metric == 'test_loss'").value.to_numpy()
    assert loss[-1] < 0.6 * np.log(256)  # far below a uniform guess over bytes


def test_a_folder_is_streamed_not_loaded_whole(tmp_path, monkeypatch):
    """With max_bytes, reading stops once both splits are full: the files after that are listed, never read; the
    splits equal those of reading everything and cutting."""
    import pathlib

    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(200):
        (folder / f"doc{i:03d}.txt").write_bytes(bytes([65 + i % 26]) * 100)
    whole = load_splits(str(folder), "*.txt", 0.3, 0)
    reads = []
    original = pathlib.Path.read_bytes
    monkeypatch.setattr(pathlib.Path, "read_bytes", lambda self: reads.append(self.name) or original(self))
    capped = load_splits(str(folder), "*.txt", 0.3, 1000)
    assert 0 < len(reads) < 60  # about 10 documents fill each split's 1,000 bytes, out of 200
    for split in ("train", "validation"):
        np.testing.assert_array_equal(capped[split], whole[split][:1000])
