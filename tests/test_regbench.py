"""REGBENCH (Akyürek et al. 2024): generator, cache, task, metrics and n-gram-head scores."""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mesalab.analysis import regbench as rb
from mesalab.analysis.heads import induction_targets
from mesalab.config import ConfigError, to_json
from mesalab.models import Transformer, TransformerConfig
from mesalab.tasks import TASKS, RegbenchConfig
from mesalab.tasks import dfa as task
from mesalab.tasks import dfa_generate as gen
from mesalab.train import TrainConfig, Trainer

SMALL = {"n_train": 60, "n_test": 20, "n_val": 10, "min_strings": 2, "max_strings": 4, "max_string_len": 6}


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("MESALAB_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="module")
def raw_and_min():
    rng = np.random.default_rng(7)
    pairs = []
    for _ in range(300):
        raw, _seed = gen.sample_raw_dfa(rng)
        pairs.append((raw, gen.minimise(raw)))
    return pairs


# ---- independent checks ------------------------------------------------------------------------------------------


def _reachable(delta):
    seen, stack = {0}, [0]
    while stack:
        s = stack.pop()
        for d in delta[s]:
            if d >= 0 and int(d) not in seen:
                seen.add(int(d))
                stack.append(int(d))
    return seen


def _same_language(a, b, sa=0, sb=0):
    """Product walk: every reachable pair of states defines the same letters (all states accept)."""
    seen, stack = {(sa, sb)}, [(sa, sb)]
    while stack:
        x, y = stack.pop()
        if not np.array_equal(a[x] >= 0, b[y] >= 0):
            return False
        for v in np.flatnonzero(a[x] >= 0):
            pair = (int(a[x, v]), int(b[y, v]))
            if pair not in seen:
                seen.add(pair)
                stack.append(pair)
    return True


def _distinguishable_pairs(delta):
    """Table filling (Myhill–Nerode), a different algorithm from the generator's Moore refinement."""
    n = len(delta)
    marked = {(p, q) for p, q in itertools.combinations(range(n), 2) if not np.array_equal(delta[p] >= 0, delta[q] >= 0)}
    changed = True
    while changed:
        changed = False
        for p, q in itertools.combinations(range(n), 2):
            if (p, q) in marked:
                continue
            for v in np.flatnonzero(delta[p] >= 0):
                a, b = sorted((int(delta[p, v]), int(delta[q, v])))
                if a != b and (a, b) in marked:
                    marked.add((p, q))
                    changed = True
                    break
    return marked


def test_raw_dfas_follow_the_authors_ranges(raw_and_min):
    for raw, _ in raw_and_min:
        n = len(raw)
        assert 4 <= n <= 12
        for s in range(n):
            out = raw[s][raw[s] >= 0]
            assert 1 <= len(out) <= 3 and s not in out and len(set(out)) == len(out)
        assert len(np.flatnonzero((raw >= 0).any(0))) <= 18


def test_dfas_are_minimal_trimmed_and_equivalent(raw_and_min):
    sizes = []
    for raw, m in raw_and_min:
        assert m.dtype == np.int8 and _reachable(m) == set(range(len(m)))            # trimmed
        assert len(_distinguishable_pairs(m)) == len(m) * (len(m) - 1) // 2           # minimal
        assert _same_language(raw, m)
        assert np.array_equal(gen.minimise(m.astype(np.int64)), m)                    # canonical: a fixed point
        sizes.append(len(m))
    assert min(sizes) < max(sizes)


def test_minimise_a_hand_built_dfa():
    """0 -a-> 1, 0 -b-> 2, 1 -c-> 0, 2 -c-> 0, and 3 unreachable: 1 and 2 merge, 3 goes."""
    d = np.full((4, 18), -1)
    d[0, 0], d[0, 1], d[1, 2], d[2, 2], d[3, 0] = 1, 2, 0, 0, 0
    m = gen.minimise(d)
    assert m.shape == (2, 18) and m[0, 0] == m[0, 1] == 1 and m[1, 2] == 0 and (m >= 0).sum() == 3


def test_prompts_are_valid_strings_and_states_match():
    cfg = RegbenchConfig(**SMALL)
    d = task.dataset(cfg)
    assert d.tokens.shape == (60, cfg.seq_len + 1) and cfg.seq_len == 4 * 6 + 3 - 1
    for tokens, states, delta in zip(d.tokens, d.states, d.delta):
        real = tokens[tokens != gen.PAD]
        assert real[0] != gen.SEP and real[-1] != gen.SEP and np.all(tokens[len(real):] == gen.PAD)
        strings = np.split(real, np.flatnonzero(real == gen.SEP))
        strings = [s[s != gen.SEP] for s in strings]
        assert 2 <= len(strings) <= 4 and all(1 <= len(s) <= 6 for s in strings)
        walked = []
        for s in strings:
            state = 0
            for v in s:
                state = int(delta[state, v - 1])
                assert state >= 0                                                     # a valid transition
                walked.append(state)
            walked.append(0)
        np.testing.assert_array_equal(states[:len(real) - 1], walked[:len(real) - 1])


def test_splits_are_disjoint_and_nested():
    cfg = RegbenchConfig(**SMALL)
    keys = {s: [task.dataset(cfg, s).delta[i, :n].tobytes() for i, n in enumerate(task.dataset(cfg, s).n_states)]
            for s in task.SPLITS}
    everything = list(itertools.chain(*keys.values()))
    assert len(set(everything)) == len(everything) == 90
    bigger = RegbenchConfig(**{**SMALL, "n_train": 80})
    np.testing.assert_array_equal(task.dataset(bigger, "test").tokens, task.dataset(cfg, "test").tokens)
    np.testing.assert_array_equal(task.dataset(bigger).tokens[:60], task.dataset(cfg).tokens)


def test_cache_round_trip(tmp_path, monkeypatch):
    monkeypatch.setenv("MESALAB_CACHE", str(tmp_path))
    cfg = RegbenchConfig(**{**SMALL, "seed": 3})
    path = task.cache_path(cfg)
    assert str(path).startswith(str(tmp_path))
    fresh = task.generate(cfg)
    task._save(path, fresh)
    assert not list(path.parent.glob("*.tmp"))
    loaded = task._load(path)
    for s in task.SPLITS:
        for a, b in zip(fresh[s], loaded[s]):
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(a, b)
    assert task.cache_path(RegbenchConfig(**{**SMALL, "seed": 4})) != path
    no_val = RegbenchConfig(**{**SMALL, "n_val": 0})
    assert task.dataset(no_val, "val").tokens.shape == (0, no_val.seq_len + 1)
    # 2 states, 1 edge each: 18 · 18 = 324 languages, fewer than the 330 asked for
    with pytest.raises(ConfigError, match="RegbenchConfig.n_train = 300 is not allowed; expected fewer prompts"):
        task.generate(RegbenchConfig(**{**SMALL, "n_train": 300, "min_states": 2, "max_states": 2, "max_edges": 1,
                                        "min_alphabet": 1}))
    assert task.cache_path(RegbenchConfig(**{**SMALL, "seed": 3, "split": "test"})) == path


def test_true_next_distribution_on_a_hand_built_dfa():
    """The module docstring's example: 0 -a-> 1, 1 -b-> 0, 1 -c-> 0, prompt 'a b a | a | a c'."""
    delta = np.full((2, 18), -1, np.int8)
    delta[0, 0], delta[1, 1], delta[1, 2] = 1, 0, 0
    tokens = np.array([1, 2, 1, 19, 1, 19, 1, 3, 0])
    states = np.array([1, 0, 1, 0, 1, 0, 1, 0, -1])[:-1]
    inp = tokens[:-1]
    q = task.true_next_distribution(delta, states, inp)
    after_a = np.zeros(20)
    after_a[[2, 3]] = 0.5
    start = np.zeros(20)
    start[1] = 1.0
    for t, want in enumerate([after_a, start, after_a, start, after_a, start, after_a, start]):
        np.testing.assert_array_equal(q[t], want)
    target_mask, input_mask = task.masks(tokens)
    np.testing.assert_array_equal(target_mask, [1, 1, 0, 1, 0, 1, 1, 0])
    np.testing.assert_array_equal(input_mask, [1] * 7 + [0])
    qj = task.true_next_distribution(jnp.asarray(delta), jnp.asarray(states), jnp.asarray(inp))
    np.testing.assert_allclose(np.asarray(qj), q)


def test_config_errors_and_registration():
    assert TASKS["regbench"] is RegbenchConfig and "exemplar_label" in TASKS
    for bad, field in [({"split": "dev"}, "split"), ({"min_states": 3}, "min_states"), ({"n_train": -1}, "n_train"),
                       ({"max_strings": 5}, "max_strings"), ({"min_alphabet": 19}, "min_alphabet")]:
        with pytest.raises(ConfigError, match=rf"RegbenchConfig\.{field} = "):
            RegbenchConfig(**bad)
    assert '"n_train": 2500' in to_json(RegbenchConfig())


def test_metrics_on_hand_built_rows():
    valid = np.zeros((1, 3, 20), bool)
    valid[0, 0, [1, 2]] = valid[0, 1, 3] = valid[0, 2, 4] = True
    q = valid / valid.sum(-1, keepdims=True)
    scores = np.zeros((1, 3, 20))
    scores[0, 0, 2] = scores[0, 1, 5] = scores[0, 2, 19] = 1.0                  # valid, invalid, SEP (invalid)
    target_mask, input_mask = np.array([[1.0, 1.0, 0.0]]), np.ones((1, 3))
    assert rb.greedy_accuracy(scores, valid, target_mask) == pytest.approx(0.5)
    assert rb.greedy_accuracy(q, valid, input_mask) == pytest.approx(1.0)
    assert rb.tvd(q, q, input_mask) == 0.0
    assert rb.tvd(scores, q, input_mask) == pytest.approx((0.5 + 1.0 + 1.0) / 3)
    assert rb.tvd(scores, q, input_mask, halve=False) == pytest.approx(2 * (0.5 + 1.0 + 1.0) / 3)
    targets = np.array([[2, 3, 19]])
    assert rb.token_loss(np.zeros((1, 3, 20)), targets, target_mask) == pytest.approx(np.log(20))
    assert float(rb.token_loss(jnp.zeros((1, 3, 20)), jnp.asarray(targets), target_mask)) == pytest.approx(np.log(20))
    assert rb.nll_of_probs(q, targets, target_mask) == pytest.approx(-(np.log(0.5 + 1e-5) + np.log(1 + 1e-5)) / 2)


def _authors_mask(x, k):
    """The hard-wired n-gram layer's attention support (seq_icl ngram.py), as loops: t attends to s + 1 when the k
    tokens ending at s equal those ending at t, s + 1 < t."""
    t_len = len(x)
    m = np.zeros((t_len, t_len), bool)
    for t, s in itertools.product(range(t_len), range(t_len)):
        if s + 1 < t and s - k + 1 >= 0 and all(x[t - i] == x[s - i] for i in range(k)):
            m[t, s + 1] = True
    return m


def test_ngram_targets_match_the_hard_wired_layer():
    rng = np.random.default_rng(0)
    x = rng.integers(1, 4, size=(3, 24))
    np.testing.assert_array_equal(rb.ngram_targets(x, 2), induction_targets(jnp.asarray(x)))
    for n in (2, 3, 4):
        got = np.asarray(rb.ngram_targets(x, n))
        for b in range(3):
            np.testing.assert_array_equal(got[b], _authors_mask(x[b], n - 1))


def test_ngram_head_score_on_a_hand_built_pattern():
    """Tokens a b c a b d a b c (ids 1…4): a head attending uniformly to the 3-gram targets scores 1 for n = 3,
    and what it puts on 2-gram targets that are not 3-gram targets is missing for n = 2."""
    x = np.array([[1, 2, 3, 1, 2, 4, 1, 2, 3, 0, 0]])
    t3, t2 = np.asarray(rb.ngram_targets(x, 3))[0], np.asarray(rb.ngram_targets(x, 2))[0]
    assert np.flatnonzero(t3[7]).tolist() == [2, 5] and np.flatnonzero(t3[8]).tolist() == [3]
    assert not t3[9:].any() and not t2[9:].any()                                     # PAD queries have no targets
    pattern = np.zeros((1, 2, 11, 11))
    for t in range(11):
        pattern[0, 0, t, :t + 1] = 1.0 / (t + 1)                                      # head 1: uniform causal
        pattern[0, 1, t] = t3[t] / t3[t].sum() if t3[t].any() else np.eye(11)[t]
    s3 = np.asarray(rb.ngram_head_score(pattern, x, 3))
    assert s3[1] == pytest.approx(1.0) and s3[0] < 0.6
    np.testing.assert_allclose(rb.ngram_head_score(pattern[0], x[0], 3), s3)             # one sequence: [head, q, k]
    np.testing.assert_allclose(rb.ngram_head_score(jnp.asarray(pattern), jnp.asarray(x), 3), s3, rtol=1e-6)
    s2 = np.asarray(rb.ngram_head_score(pattern, x, 2))
    assert s2[1] < 1.0
    both = rb.ngram_head_scores([pattern, pattern], x, orders=(2, 3))
    assert both[3].shape == (2, 2) and float(both[3][1, 1]) == pytest.approx(1.0)


def test_task_samples_under_jit_and_vmap():
    cfg = RegbenchConfig(**SMALL)
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    batch = jax.jit(jax.vmap(lambda k: cfg.sample(k, 5)))(keys)
    assert batch.inputs.shape == (3, 5, cfg.seq_len, 20) and batch.targets.shape == batch.inputs.shape
    tokens, nxt = np.asarray(batch.info["tokens"]), np.asarray(batch.info["next"])
    rows = task.dataset(cfg).tokens[np.asarray(batch.info["index"])]
    np.testing.assert_array_equal(tokens, rows[..., :-1])
    np.testing.assert_array_equal(np.asarray(batch.loss_mask), (nxt != 0) & (nxt != 19))
    q = task.true_next_distribution(batch.info["delta"], batch.info["states"], batch.info["tokens"])
    assert float(jnp.sum(q * batch.targets * batch.loss_mask[..., None])) == pytest.approx(
        float(jnp.sum(jnp.max(q * batch.targets, -1) * batch.loss_mask)))
    hit = jnp.sum((q > 0) * batch.targets, -1)                                        # every target is valid
    assert float(jnp.min(jnp.where(batch.loss_mask > 0, hit, 1.0))) == 1.0


def test_baselines_beat_unigram_and_trainer_plugs_in():
    cfg = RegbenchConfig(**SMALL)
    data = task.eval_arrays(cfg, "test")
    from mesalab.algorithms.ngram import ngram_probs

    acc = {n: rb.greedy_accuracy(ngram_probs(data["inputs"], n), data["valid"], data["target_mask"]) for n in (1, 3)}
    assert acc[3] > acc[1]
    model_cfg = TransformerConfig(d_model=16, n_layers=1, n_heads=2, d_head=8, attention=("softmax",), d_mlp=32,
                                  layer_norm=True, d_in=20, d_out=20, pos_embedding="learned", max_len=cfg.seq_len)
    train = TrainConfig(steps=20, batch_size=16, lr=1e-2, chunk_steps=10, eval_batch_size=0)
    res = Trainer(cfg, functools.partial(Transformer, model_cfg), train).fit([0, 1], progress=False)
    loss = res.history.query("metric == 'train_loss'").value.to_numpy()
    assert np.all(np.isfinite(loss)) and loss[-1] < np.log(20)
    logits = jax.vmap(res.member(0).predict)(jnp.asarray(np.eye(20, dtype=np.float32)[data["inputs"]]))
    metrics = rb.regbench_metrics(np.asarray(logits), data)
    assert set(metrics) == {"accuracy", "tvd", "l1", "loss"} and 0.0 <= metrics["accuracy"] <= 1.0


def test_max_len_cuts_prompts():
    full, cut = RegbenchConfig(**SMALL), RegbenchConfig(**{**SMALL, "max_len": 10})
    assert cut.seq_len == 10 and task.dataset(cut).tokens.shape == (60, 11)
    np.testing.assert_array_equal(task.dataset(cut).tokens, task.dataset(full).tokens[:, :11])
    np.testing.assert_array_equal(task.dataset(cut).states, task.dataset(full).states[:, :10])
