"""Bursty in-context classification (tasks/classification.py) and in-context copying (tasks/copying.py).

Compiling a sampler costs about a second on a 2-core CPU, so the tests share a few compiled programs: one per
(config, batch size) through `draw`, and one vmapped ensemble over the dynamic fields.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mesalab.config import ConfigError, from_dict, override, stack_configs, to_dict
from mesalab.tasks import TASKS, ClassificationConfig, CopyingConfig
from mesalab.tasks.classification import (
    eval_sets, in_context_test, in_weights_test, instance, label_swapped_test,
)
from mesalab.tasks.copying import repeated_tokens

KEY = jax.random.PRNGKey(0)
SMALL = ClassificationConfig(n_classes=64, n_labels=8, n_pairs=4, dim=6, burstiness=2, max_pairs=6, eps=0.0)
# eps, p_bursty, p_novel, zipf_alpha per member: plain non-bursty; novel bursty; half bursty with large noise
MEMBERS = [(0.0, 0.0, 0.0, 0.0), (0.5, 1.0, 1.0, 1.5), (2.0, 0.5, 0.0, 0.0)]


@functools.partial(jax.jit, static_argnums=(0, 1))
def draw(cfg, batch_size, key=KEY):
    """One compiled sampler per (config, batch size): eager sampling compiles every op on its own (slow)."""
    return cfg.sample(key, batch_size)


@functools.cache
def ensemble():
    """(member configs, batch [E, 256, …]) of SMALL with the dynamic fields of MEMBERS, drawn under jit + vmap."""
    cfgs = [override(SMALL, eps=e, p_bursty=b, p_novel=c, zipf_alpha=a) for e, b, c, a in MEMBERS]
    keys = jax.random.split(KEY, len(cfgs))
    return cfgs, jax.jit(jax.vmap(lambda c, k: c.sample(k, 256)))(stack_configs(cfgs), keys)


def split(cfg, batch):
    """(position one-hots, item contents [B, N+1, D], label contents [B, N, D]) of a batch."""
    pos, content = batch.inputs[..., :cfg.position_width], batch.inputs[..., cfg.position_width:]
    return np.asarray(pos), np.asarray(content[:, 0::2]), np.asarray(content[:, 1::2])


def test_default_shapes_one_hots_and_properties():
    cfg = ClassificationConfig()
    assert (cfg.token_width, cfg.target_width, cfg.seq_len) == (128, 32, 17)
    assert cfg.loss_positions == "last" and cfg.loss_kind == "cross_entropy"
    b = draw(cfg, 16)
    assert b.inputs.shape == (16, 17, 128) and b.targets.shape == (16, 17, 32) and b.loss_mask.shape == (16, 17)
    pos = np.asarray(b.inputs[..., :65])
    assert set(np.unique(pos)) <= {0.0, 1.0} and np.all(pos.sum(-1) == 1)
    assert np.all(b.targets[:, :-1] == 0) and np.all(b.targets[:, -1].sum(-1) == 1)
    np.testing.assert_array_equal(np.argmax(b.targets[:, -1], -1), b.info["label"])
    np.testing.assert_array_equal(b.loss_mask, np.tile(np.eye(17)[-1], (16, 1)))
    assert b.info["context_labels"].shape == (16, 8) and b.info["label"].dtype == jnp.int32


@pytest.mark.parametrize("kind", ["bursty", "non-bursty"])
def test_tokens_follow_the_instance_class_label_map(kind):
    # eps = 0 in both, so items are exactly the class means
    b = draw(SMALL, 256) if kind == "bursty" else ensemble()[1][0]
    assert np.all(b.info["bursty"]) == (kind == "bursty") and not np.any(b.info["novel"])
    inst = instance(SMALL)
    _, items, labels = split(SMALL, b)
    ctx, q = np.asarray(b.info["context_classes"]), np.asarray(b.info["query_class"])
    np.testing.assert_array_equal(b.info["context_labels"], inst.class_labels[ctx])
    np.testing.assert_array_equal(b.info["context_labels"], ctx % 8)
    np.testing.assert_array_equal(b.info["label"], q % 8)
    np.testing.assert_allclose(labels, inst.label_vectors[ctx % 8], atol=1e-6)
    np.testing.assert_allclose(items[:, :-1], inst.class_means[ctx], atol=1e-6)
    np.testing.assert_allclose(items[:, -1], inst.class_means[q], atol=1e-6)


BURSTY = ClassificationConfig(n_classes=64, n_labels=32, n_pairs=8, dim=2, burstiness=2, zipf_alpha=2.0,
                              max_pairs=8)


def test_bursty_sequences_hold_n_over_b_classes_b_times_with_distinct_labels():
    b = draw(BURSTY, 512)
    assert np.all(b.info["bursty"]) and np.all(b.info["query_in_context"])
    for ctx, labs, q in zip(np.asarray(b.info["context_classes"]), np.asarray(b.info["context_labels"]),
                            np.asarray(b.info["query_class"])):
        classes, counts = np.unique(ctx, return_counts=True)
        assert len(classes) == 4 and np.all(counts == 2) and q in classes
        assert len(np.unique(labs)) == 4  # no_repeats: one class per label
    ctx = np.asarray(b.info["context_classes"])
    assert np.mean(ctx[:, 0] == ctx[:, 1]) < 0.3  # shuffled: neighbours share a class 1/7 of the time
    # the query is uniform among the N/B = 4 classes: it is position 0's class a quarter of the time
    assert 0.18 < np.mean(ctx[:, 0] == np.asarray(b.info["query_class"])) < 0.32


def test_bursty_class_convention_uniform_ignores_zipf_and_zipf_uses_it():
    uniform = draw(BURSTY, 512)  # bursty_classes="uniform" (the reference): α = 2 is ignored
    zipf = draw(override(BURSTY, bursty_classes="zipf"), 512)
    assert np.mean(np.asarray(uniform.info["context_classes"]) == 0) < 0.05  # ≈ 1/K
    assert np.mean(np.asarray(zipf.info["context_classes"]) == 0) > 0.2  # class 1 holds ~60% of the mass
    for labs in np.asarray(zipf.info["context_labels"]):
        assert len(np.unique(labs)) == 4  # still distinct labels per burst


def test_bursts_with_repeated_labels_draw_classes_iid_from_zipf():
    cfg = ClassificationConfig(n_classes=8, n_labels=2, n_pairs=8, dim=2, burstiness=2, max_pairs=8,
                               no_repeats=False, bursty_classes="zipf", zipf_alpha=3.0)  # 4 classes, 2 labels
    b = draw(cfg, 512)
    ctx = np.asarray(b.info["context_classes"])
    for row, q in zip(ctx, np.asarray(b.info["query_class"])):
        assert np.all(np.bincount(row) % 2 == 0) and q in row  # bursts of 2 (classes may coincide)
    p0 = 1 / np.sum(np.arange(1, 9, dtype=float) ** -3.0)
    assert abs(np.mean(ctx == 0) - p0) < 0.05, (np.mean(ctx == 0), p0)


def test_non_bursty_classes_follow_zipf():
    k = 64
    cfgs = [override(in_weights_test(SMALL), zipf_alpha=a) for a in (1.0, 0.0)]
    b = jax.jit(jax.vmap(lambda c: c.sample(KEY, 2000)))(stack_configs(cfgs))
    for member, alpha in enumerate((1.0, 0.0)):
        info = jax.tree_util.tree_map(lambda x: np.asarray(x[member]), b.info)
        assert not np.any(info["bursty"]) and np.mean(info["query_in_context"]) < 0.6
        np.testing.assert_array_equal(info["context_labels"], info["context_classes"] % 8)
        draws = np.concatenate([info["context_classes"].ravel(), info["query_class"]])
        p = np.arange(1, k + 1, dtype=float) ** -alpha
        p /= p.sum()
        freq = np.bincount(draws, minlength=k) / draws.size
        for c in (0, 1, 10):
            assert abs(freq[c] - p[c]) < 5 * np.sqrt(p[c] * (1 - p[c]) / draws.size), (alpha, c, freq[c], p[c])


def test_novel_class_sequences_use_fresh_means():
    cfg = in_context_test(SMALL)
    b, b2 = draw(cfg, 64), draw(cfg, 64, jax.random.PRNGKey(1))
    inst = instance(cfg)
    assert np.all(b.info["novel"]) and np.all(b.info["query_in_context"])
    assert np.all(b.info["query_class"] >= cfg.n_classes)
    _, items, _ = split(cfg, b)
    dist = np.linalg.norm(items[..., None, :] - inst.class_means, axis=-1).min(-1)
    assert dist.min() > 1e-3  # eps = 0, yet no item is one of the K instance means
    np.testing.assert_array_equal(b.info["context_labels"], (np.asarray(b.info["context_classes"]) - 64) % 8)
    _, items2, _ = split(cfg, b2)
    assert not np.allclose(items[0, 0], items2[0, 0])  # new classes every call


def test_label_swapped_test_shifts_context_and_target():
    cfg = label_swapped_test(SMALL)
    assert cfg.label_shift == 1 and cfg.p_bursty == 1 and cfg.p_novel == 0
    b = draw(cfg, 64)
    inst = instance(cfg)
    ctx, q = np.asarray(b.info["context_classes"]), np.asarray(b.info["query_class"])
    np.testing.assert_array_equal(b.info["context_labels"], (inst.class_labels[ctx] + 1) % 8)
    np.testing.assert_array_equal(b.info["label"], (inst.class_labels[q] + 1) % 8)
    np.testing.assert_array_equal(np.argmax(b.targets[:, -1], -1), (q + 1) % 8)
    _, _, labels = split(cfg, b)
    np.testing.assert_allclose(labels, inst.label_vectors[(ctx + 1) % 8], atol=1e-6)


def test_eval_sets_share_the_training_instance():
    sets = eval_sets(SMALL)
    assert set(sets) == {"test", "ic", "ic2", "iw"}
    iw = sets["iw"]
    assert (iw.burstiness, iw.p_bursty, iw.p_novel) == (0, 0.0, 0.0)
    assert sets["ic"].p_novel == 1.0 and sets["ic"].p_bursty == 1.0
    for c in sets.values():
        for a, b in zip(instance(c), instance(SMALL)):
            np.testing.assert_array_equal(a, b)
    other = instance(override(SMALL, instance_seed=1))
    assert not np.allclose(other.class_means, instance(SMALL).class_means)
    # a larger dictionary keeps the label vectors and extends the class means
    bigger = instance(override(SMALL, n_classes=128))
    np.testing.assert_array_equal(bigger.label_vectors, instance(SMALL).label_vectors)
    np.testing.assert_array_equal(bigger.class_means[:64], instance(SMALL).class_means)


def test_position_one_hots_start_at_the_offset_and_are_consecutive():
    b = draw(SMALL, 256)  # position width 13, 9 tokens: offsets 0..4
    pos, _, _ = split(SMALL, b)
    off = np.asarray(b.info["offset"])
    np.testing.assert_array_equal(pos.argmax(-1), off[:, None] + np.arange(9))
    assert set(np.unique(off)) == {0, 1, 2, 3, 4}


def test_item_norm_is_constant_across_eps():
    cfgs, b = ensemble()
    norms = [np.mean(np.sum(split(SMALL, b[m])[1] ** 2, -1)) for m in range(3)]  # eps 0, 0.5, 2
    # E‖x‖² = (‖μ‖² + ε²)/(1 + ε²) ≈ 1; without the 1/√(1+ε²) the ε = 2 member would be ≈ 5
    assert max(norms) / min(norms) < 1.25 and all(0.6 < v < 1.4 for v in norms), norms


def test_same_key_same_batch():
    a, b = draw(SMALL, 256), draw(SMALL, 256)
    assert all(np.array_equal(a.info[n], b.info[n]) for n in a.info) and np.array_equal(a.inputs, b.inputs)
    c = draw(SMALL, 256, jax.random.PRNGKey(1))
    assert not np.allclose(a.inputs, c.inputs)


def test_ensemble_of_dynamic_values_under_jit_and_vmap():
    cfgs, b = ensemble()
    assert b.inputs.shape == (3, 256, 9, SMALL.token_width)
    novel, bursty = np.asarray(b.info["novel"]), np.asarray(b.info["bursty"])
    assert not novel[0].any() and novel[1].all() and not novel[2].any()
    assert not bursty[0].any() and bursty[1].all() and 0.35 < bursty[2].mean() < 0.65
    # eps = 0 for member 0 (items are means), noise for member 2
    inst = instance(SMALL)
    classes = np.asarray(b.info["context_classes"])
    np.testing.assert_allclose(split(SMALL, b[0])[1][:, :-1], inst.class_means[classes[0]], atol=1e-6)
    assert np.abs(split(SMALL, b[2])[1][:, :-1] - inst.class_means[classes[2]]).mean() > 0.1
    with pytest.raises(ConfigError, match="static field ClassificationConfig.burstiness"):
        stack_configs([SMALL, override(SMALL, burstiness=1)])


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"burstiness": 3}, "burstiness"),  # does not divide N = 8
        ({"burstiness": 8}, "burstiness"),  # B must be < N
        ({"burstiness": -1}, "burstiness"),
        ({"n_classes": 16}, "n_classes"),  # K < L
        ({"n_classes": 48}, "n_classes"),  # not a multiple of L
        ({"n_pairs": 40}, "max_pairs"),  # N > Nmax
        ({"p_bursty": 1.5}, "p_bursty"),
        ({"p_novel": -0.1}, "p_novel"),
        ({"eps": -0.1}, "eps"),
        ({"zipf_alpha": -1.0}, "zipf_alpha"),
        ({"n_labels": 2, "n_classes": 64, "burstiness": 1}, "burstiness"),  # 8 distinct labels needed, only 2
        ({"n_labels": 2, "n_classes": 64, "burstiness": 0, "n_pairs": 9}, "burstiness"),  # novel bursts of 3
        ({"n_novel_classes": 100}, "n_novel_classes"),
        ({"label_shift": 32}, "label_shift"),
        ({"bursty_classes": "zipfian"}, "bursty_classes"),
        ({"n_pairs": 1, "burstiness": 0}, "n_pairs"),
    ],
)
def test_bad_classification_configs_name_the_field(changes, field):
    with pytest.raises(ConfigError, match=rf"ClassificationConfig\.{field} = ") as e:
        ClassificationConfig(**changes)
    assert "expected" in str(e.value)


def test_label_budget_applies_only_under_no_repeats():
    ClassificationConfig(n_labels=2, n_classes=64, burstiness=1, no_repeats=False)
    ClassificationConfig(n_labels=2, n_classes=64, burstiness=0)  # novel bursts of N/2 = 4: 2 labels suffice


def test_classification_config_round_trips_and_is_registered():
    cfg = label_swapped_test(in_weights_test(SMALL))
    assert from_dict(ClassificationConfig, to_dict(cfg)) == cfg
    assert TASKS["classification"] is ClassificationConfig and TASKS["copying"] is CopyingConfig


def test_copying_query_repeats_one_context_item_and_targets_its_label():
    cfg = CopyingConfig(n_items=10, n_labels=5, n_pairs=4)
    assert (cfg.token_width, cfg.target_width, cfg.seq_len, cfg.loss_kind) == (15, 15, 9, "cross_entropy")
    b = draw(cfg, 128)
    tok = np.asarray(b.info["tokens"])
    np.testing.assert_array_equal(np.argmax(b.inputs, -1), tok)
    items, labels, q = tok[:, 0:-1:2], tok[:, 1::2], tok[:, -1]
    assert items.max() < 10 and labels.min() >= 10 and labels.max() < 15
    info = [np.asarray(b.info[name]) for name in ("label", "query_index")]
    for it, lab, qq, target, qi in zip(items, labels, q, *info):
        assert np.sum(it == qq) == 1 and it[qi] == qq and lab[qi] == target
        assert len(set(it)) == 4 and len(set(lab)) == 4
    np.testing.assert_array_equal(np.argmax(b.targets[:, -1], -1), b.info["label"])
    assert np.all(b.targets[:, :-1] == 0) and np.all(b.loss_mask[:, -1] == 1) and np.all(b.loss_mask[:, :-1] == 0)
    # a fresh item → label map per sequence: item 0's label varies across sequences
    rows, cols = np.nonzero(items == 0)
    assert len(np.unique(labels[rows, cols])) > 1
    iid = np.asarray(draw(CopyingConfig(n_items=10, n_labels=2, n_pairs=4, distinct_labels=False), 64).info["tokens"])
    assert iid.shape == (64, 9) and set(np.unique(iid[:, 1::2])) == {10, 11}  # 4 labels from 2: repeats allowed
    assert all(np.sum(row[0:-1:2] == row[-1]) == 1 for row in iid)


@pytest.mark.parametrize(
    "changes, field",
    [({"n_pairs": 11}, "n_pairs"), ({"n_pairs": 6, "n_labels": 5}, "n_pairs"), ({"n_items": 0}, "n_items"),
     ({"n_labels": 0}, "n_labels")],
)
def test_bad_copying_configs_name_the_field(changes, field):
    with pytest.raises(ConfigError, match=rf"CopyingConfig\.{field} = "):
        CopyingConfig(**{"n_items": 10, **changes})


def test_repeated_tokens():
    ids, onehot = repeated_tokens(KEY, 4, 50, 10)
    assert ids.shape == (4, 20) and onehot.shape == (4, 20, 50)
    np.testing.assert_array_equal(ids[:, :10], ids[:, 10:])
    np.testing.assert_array_equal(np.argmax(onehot, -1), ids)
    ids, _ = repeated_tokens(KEY, 4, 30, 20, repeats=4, low=10, distinct=True)
    assert ids.shape == (4, 80) and ids.min() >= 10
    assert all(len(set(row[:20])) == 20 for row in np.asarray(ids))
    with pytest.raises(ValueError, match="half_len = 21"):
        repeated_tokens(KEY, 4, 30, 21, low=10, distinct=True)
    with pytest.raises(ValueError, match="low = 30"):
        repeated_tokens(KEY, 4, 30, 5, low=30)
