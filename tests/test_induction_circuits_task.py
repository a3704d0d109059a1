"""The S6 task: exemplar, label, exemplar, label, query (tasks.exemplar_label)."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mesalab.config import ConfigError, from_dict, override, stack_configs, to_dict
from mesalab.tasks import TASKS, ExemplarLabelConfig
from mesalab.tasks.exemplar_label import eval_sets, exemplar_table, instance

CFG = ExemplarLabelConfig(n_classes=8, n_labels=5, dim=6, n_test_classes=4)


@pytest.fixture(scope="module")
def sets():
    """A batch from each evaluator, drawn by one jitted sampler per split."""
    return {name: jax.jit(c.sample, static_argnums=1)(jax.random.PRNGKey(i), 512)
            for i, (name, c) in enumerate(eval_sets(CFG).items())}


def label_of(tokens):
    return np.argmax(tokens[..., CFG.label_slice[0]:CFG.label_slice[1]], axis=-1)


def test_layout_and_targets(sets):
    b = sets["train"]
    x, info = np.asarray(b.inputs), {k: np.asarray(v) for k, v in b.info.items()}
    assert x.shape == (512, 5, CFG.token_width) and CFG.token_width == 6 + 1 + 5
    np.testing.assert_array_equal(x[:, ::2, CFG.dim], 1.0)  # the exemplar indicator (the embedding's bias)
    np.testing.assert_array_equal(x[:, 1::2, :CFG.dim + 1], 0.0)  # label tokens carry only their one-hot
    np.testing.assert_array_equal(x[:, ::2, CFG.label_slice[0]:], 0.0)
    np.testing.assert_array_equal(label_of(x[:, 1::2]), info["context_labels"])
    # The query's class is at the matching position's exemplar, the distractor's at the other; the target is the
    # label after the matching exemplar; loss at the query only.
    first = info["match_position"] == 1
    np.testing.assert_array_equal(np.where(first, info["context_classes"][:, 0], info["context_classes"][:, 1]),
                                  info["query_class"])
    assert np.all(info["query_class"] != info["distractor_class"])
    np.testing.assert_array_equal(label_of(x[np.arange(512), info["match_position"]]), info["label"])
    np.testing.assert_array_equal(np.argmax(np.asarray(b.targets)[:, -1], -1), info["label"])
    np.testing.assert_array_equal(np.asarray(b.loss_mask), np.eye(5)[[4] * 512])
    assert 0.4 < first.mean() < 0.6  # the matching pair comes first or second equally often


def test_label_pairs_are_split_and_reassigned_per_sequence(sets):
    inst = instance(CFG)
    train = {tuple(p) for p in inst.train_pairs}
    val = {tuple(p) for p in inst.val_pairs}
    assert len(train) == 8 and len(val) == 2 and train.isdisjoint(val)  # the authors' 8 / 2 for L = 5
    assert train | val == set(itertools.combinations(range(5), 2))
    for name, pairs in (("train", train), ("heldout_relabel", val)):
        labels = np.sort(np.asarray(sets[name].info["context_labels"]), axis=1)
        assert {tuple(p) for p in labels} == pairs, name
    # Any class takes both labels of a pair across sequences: no fixed class→label map.
    info = sets["train"].info
    q = np.asarray(info["query_class"])
    assert len(set(np.asarray(info["label"])[q == q[0]])) > 1
    assert [ExemplarLabelConfig(n_labels=n).n_val_pairs for n in (10, 15)] == [9, 21]


def test_exemplar_and_class_splits(sets):
    ids = {k: np.asarray(b.info["exemplar_ids"]) for k, b in sets.items()}
    assert ids["train"].max() == 0 and ids["heldout_exemplars"].min() >= 1 and ids["heldout_exemplars"].max() == 4
    for k in ("train", "heldout_relabel", "heldout_exemplars"):
        assert np.asarray(sets[k].info["query_class"]).max() < 8
    test_q = np.asarray(sets["heldout_classes"].info["query_class"])
    assert test_q.min() >= 8 and test_q.max() < 12
    # One training exemplar per class: a training query is the very token of its matching context exemplar.
    b = sets["train"]
    x, m = np.asarray(b.inputs), np.asarray(b.info["match_position"])
    np.testing.assert_array_equal(x[np.arange(512), m - 1], x[:, 4])
    held = sets["heldout_exemplars"]
    xh, mh = np.asarray(held.inputs), np.asarray(held.info["match_position"])
    assert np.mean(np.all(xh[np.arange(512), mh - 1] == xh[:, 4], axis=-1)) < 0.5


def test_exemplars_are_noisy_copies_of_the_prototypes():
    cfg = override(CFG, dim=400, eps=0.5)
    table = np.asarray(exemplar_table(cfg))
    unit = table / np.linalg.norm(table, axis=-1, keepdims=True)
    within = np.mean([unit[k, 0] @ unit[k, 1] for k in range(8)])
    across = np.mean([unit[k, 0] @ unit[k + 1, 0] for k in range(7)])
    assert abs(within - 1 / (1 + 0.5**2)) < 0.1 and abs(across) < 0.15


def test_dynamic_class_count_under_vmap():
    members = stack_configs([override(CFG, classes_used=c) for c in (2.0, 5.0, 0.0)])
    batches = jax.jit(jax.vmap(lambda c, k: c.sample(k, 256)))(members, jax.random.split(jax.random.PRNGKey(0), 3))
    q = np.asarray(batches.info["query_class"])
    assert set(q[0]) == {0, 1} and set(q[1]) == set(range(5)) and set(q[2]) == set(range(8))


def test_registered_and_trainable_shape():
    assert TASKS["exemplar_label"] is ExemplarLabelConfig
    assert (CFG.seq_len, CFG.target_width, CFG.loss_positions, CFG.loss_kind) == (5, 5, "last", "cross_entropy")
    for cfg in eval_sets(override(CFG, classes_used=4.0)).values():
        assert from_dict(ExemplarLabelConfig, to_dict(cfg)) == cfg


@pytest.mark.parametrize("kwargs, field", [
    (dict(n_labels=2), "n_labels"),
    (dict(n_train_exemplars=5), "n_train_exemplars"),
    (dict(classes_used=9.0), "classes_used"),
    (dict(classes_used=2.5), "classes_used"),
    (dict(classes="val"), "classes"),
    (dict(exemplars="test"), "exemplars"),
    (dict(val_pair_share=1.0), "val_pair_share"),
    (dict(n_classes=1), "n_classes"),
    (dict(eps=-1.0), "eps"),
])
def test_bad_configs_name_the_field(kwargs, field):
    with pytest.raises(ConfigError, match=f"ExemplarLabelConfig.{field}"):
        override(CFG, **kwargs)


def test_sampling_is_deterministic_per_key():
    a, b = CFG.sample(jax.random.PRNGKey(4), 8), CFG.sample(jax.random.PRNGKey(4), 8)
    assert bool(jnp.all(a.inputs == b.inputs))
