"""Each clamp of the S6 catalogue (models.clamps) against a hand-computed forward pass, under jit and vmap, and
with gradients that stop exactly where the clamp cuts the graph."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_induction_circuits_model import reference_forward, tiny_model, tiny_task

from mesalab.models import clamps, hooks, run
from mesalab.train.loss import last_position_classification_loss

T = 5


@pytest.fixture(scope="module")
def task():
    return tiny_task()


@pytest.fixture(scope="module")
def model(task):
    return tiny_model(task)


@pytest.fixture(scope="module")
def batch(task):
    return task.sample(jax.random.PRNGKey(5), 3)


def check(model, batch, ivs, per_example, rows=slice(None)):
    """run() with the (batch-resolved) interventions against reference_forward(**per_example(i)) per sequence."""
    out = run(model, batch.inputs, interventions=hooks.resolve_batch(ivs, batch))
    for i in range(batch.inputs.shape[0]):
        ref, _ = reference_forward(model, batch.inputs[i], **per_example(i))
        np.testing.assert_allclose(np.asarray(out[i])[rows], ref[rows], rtol=1e-4, atol=1e-5)
    return out


def set_pattern(layer, head, value, rows=slice(None)):
    def fn(lyr, p):
        if lyr == layer:
            p = p.copy()
            p[head, rows] = value
        return p
    return fn


def test_ablate_values(model, batch):
    def values(layer, v):
        if layer == 1:
            v = v.copy()
            v[:, 1] = 0.0
        return v
    out = check(model, batch, clamps.ablate_values(1, [1]), lambda i: {"values": values})
    assert float(jnp.abs(out - run(model, batch.inputs)).max()) > 1e-4


def test_prev_token_pattern_by_hand():
    s = 0.7
    hand = np.array([[1, 0, 0, 0, 0], [s, 1 - s, 0, 0, 0], [0, s, 1 - s, 0, 0], [0, 0, s, 1 - s, 0],
                     [0, 0, 0, s, 1 - s]])
    np.testing.assert_allclose(clamps.prev_token_pattern(5, s), hand, atol=1e-7)


@pytest.mark.parametrize("labels_only", [False, True])
def test_prev_token(model, batch, labels_only):
    pattern = np.asarray(clamps.prev_token_pattern(T, 0.7))
    rows = [1, 3] if labels_only else slice(None)
    ivs = clamps.prev_token(0, 1, T, strength=0.7, labels_only=labels_only)
    check(model, batch, ivs, lambda i: {"pattern": set_pattern(0, 1, pattern[rows], rows)})


def test_induction_pattern_from_the_batch(model, batch):
    s = 0.9
    ivs = clamps.induction(1, 0, strength=s)

    def row(i):
        r = np.zeros(T)
        right = int(batch.info["match_position"][i])
        r[right], r[4 - right] = s, 1 - s  # the other label sits at 1 or 3
        return r
    check(model, batch, ivs, lambda i: {"pattern": set_pattern(1, 0, row(i), rows=-1)})
    with pytest.raises(ValueError, match="unresolved FromBatch"):
        run(model, batch.inputs, interventions=ivs)


@pytest.mark.parametrize("temperature", [0.0, 0.5])
def test_match_pattern_from_exemplar_similarity(model, batch, task, temperature):
    a, b = task.exemplar_slice

    def row(i):
        x = np.asarray(batch.inputs[i], np.float64)[:, a:b]
        cos = [x[j] @ x[4] / np.linalg.norm(x[j]) / np.linalg.norm(x[4]) for j in (0, 2)]
        if temperature == 0:
            w = (np.asarray(cos) == max(cos)).astype(float)
        else:
            w = np.exp(np.asarray(cos) / temperature)
            w = w / w.sum()
        return np.array([0, w[0], 0, w[1], 0])
    ivs = clamps.match(1, 1, task.exemplar_slice, temperature)
    check(model, batch, ivs, lambda i: {"pattern": set_pattern(1, 1, row(i), rows=-1)})


def copied_logits(head, labels, scores_layer):
    def out(o, rec):
        o = o.copy()
        o[-1] = -1e9
        for pos, lab in zip((1, 3), labels):
            o[-1, lab] = rec_scores(rec, scores_layer)[head, -1, pos]
        return o
    return out


def rec_scores(rec, layer):
    return rec["scores"][layer]


def test_perfect_copy(model, batch, task):
    ivs = clamps.perfect_copy(1, 1, task.label_slice)
    out = check(model, batch, ivs, lambda i: {"out": copied_logits(1, np.asarray(batch.info["context_labels"][i]), 1)})
    assert np.all(np.asarray(out[:, -1]).max(-1) > -1e8) and np.sum(np.asarray(out[:, -1]) == -1e9) == 3 * 2


def shifted(h, embed):
    e = embed.copy()
    e[1:-1] = embed[:-2]
    return e


def test_perfect_layer(model, batch):
    def per_example(i):
        _, first = reference_forward(model, batch.inputs[i], resid=lambda lyr, h, e: shifted(h, e) if lyr == 0 else h)
        return {"resid": lambda lyr, h, e: e if lyr == 0 else h,
                "pattern": lambda lyr, p: first["pattern"][1] if lyr == 1 else p}
    check(model, batch, clamps.perfect_layer(0), per_example)


def test_layer_one_plus_copy(model, batch, task):
    """perfect_copy whose scores come from the shifted-embedding pass (the authors' 'layer 1 + copy')."""
    ivs = clamps.perfect_copy(1, 0, task.label_slice, first_pass=clamps.shifted_embedding_pass(0))

    def per_example(i):
        _, first = reference_forward(model, batch.inputs[i], resid=lambda lyr, h, e: shifted(h, e) if lyr == 0 else h)
        labels = np.asarray(batch.info["context_labels"][i])
        return {"out": lambda o, rec: copied_logits(0, labels, 1)(o, first)}
    check(model, batch, ivs, per_example, rows=-1)


def test_preserve_then_ablate_layer0_keeps_only_the_direct_path_change(model, batch):
    """Layer-0 values ablated while every layer's patterns and values keep their clean values: what changes is only
    layer 0's direct contribution to the stream (the authors' "layer 1 acts only through composition" test)."""
    ivs = hooks.merge(clamps.preserve(["patterns", "values"], [0, 1]), clamps.ablate_values(0, [0, 1]))

    def per_example(i):
        _, clean = reference_forward(model, batch.inputs[i])
        return {"values": lambda lyr, v: np.zeros_like(v) if lyr == 0 else clean["v"][lyr],
                "pattern": lambda lyr, p: clean["pattern"][lyr]}
    check(model, batch, ivs, per_example)


def test_preserve_queries_and_keys_hold_the_clean_pattern(model, batch):
    ivs = hooks.merge(clamps.preserve(["queries", "keys"], [1]), clamps.ablate_values(0, [0]))
    _, cache = run(model, batch.inputs, sites=["blocks.1.attn.hook_pattern"], interventions=ivs)
    _, clean = run(model, batch.inputs, sites=["blocks.1.attn.hook_pattern"])
    np.testing.assert_allclose(cache["blocks.1.attn.hook_pattern"], clean["blocks.1.attn.hook_pattern"], atol=1e-6)


def test_merge_chains_in_order_and_rejects_chained_batch_clamps(model, batch):
    site = "blocks.1.attn.hook_v"
    later_wins = hooks.merge(clamps.ablate_values(1, [0]), clamps.preserve(["values"], [1]))
    _, cache = run(model, batch.inputs, sites=[site], interventions=later_wins)
    _, clean = run(model, batch.inputs, sites=[site])
    np.testing.assert_allclose(cache[site], clean[site], atol=1e-7)
    chained = hooks.merge(clamps.prev_token(1, 0), clamps.induction(1, 1))
    with pytest.raises(ValueError, match="FromBatch cannot be chained"):
        hooks.resolve_batch(chained, batch)


def test_graft_from_another_checkpoint(model, batch, task):
    other = tiny_model(task, seed=1)
    ivs = clamps.graft(other, ["blocks.0.hook_resid_post"])

    def per_example(i):
        _, rec = reference_forward(other, batch.inputs[i])
        return {"resid": lambda lyr, h, e: rec["resid"][0] if lyr == 0 else h}
    check(model, batch, ivs, per_example)


def all_clamps(task):
    return hooks.merge(clamps.preserve(["values"], [1]), clamps.ablate_values(1, [1]), clamps.prev_token(0, 0),
                       clamps.match(1, 0, task.exemplar_slice, 0.3), clamps.perfect_layer(0))


def test_clamps_under_jit_and_vmap_equal_the_eager_run(model, batch, task):
    ivs = {**all_clamps(task), **clamps.perfect_copy(1, 1, task.label_slice)}
    eager = run(model, batch.inputs, interventions=ivs)
    jitted = jax.jit(lambda m, x, iv: run(m, x, interventions=iv))(model, batch.inputs, ivs)
    np.testing.assert_allclose(jitted, eager, rtol=1e-5, atol=1e-6)
    # Traced clamp values: a strength sweep vmapped over one compiled program.
    strengths = jnp.array([0.2, 0.9])
    site = "blocks.0.attn.hook_pattern"
    rows = jax.jit(jax.vmap(lambda s: run(model, batch.inputs, sites=[site],
                                           interventions=clamps.prev_token(0, 0, T, s))[1][site]))
    np.testing.assert_allclose(rows(strengths)[:, 0, 0, 2, 1], strengths, atol=1e-6)


def grads(model, batch, ivs):
    loss = hooks.batch_resolved(last_position_classification_loss)
    return eqx.filter_grad(lambda m: loss(m, batch, ivs))(model)


def norm(a):
    return float(jnp.abs(a).max())


@pytest.mark.parametrize("which", ["prev_token", "induction", "perfect_layer", "perfect_copy", "ablate"])
def test_gradients_stop_exactly_where_the_clamp_cuts(model, batch, task, which):
    ivs = {"prev_token": clamps.prev_token(0, 0), "induction": clamps.induction(1, 1),
           "perfect_layer": clamps.perfect_layer(0), "perfect_copy": clamps.perfect_copy(1, 0, task.label_slice),
           "ablate": clamps.ablate_values(1, [0])}[which]
    g = grads(model, batch, ivs)
    b0, b1 = g.blocks[0].attn, g.blocks[1].attn
    assert norm(g.W_E) > 0
    if which == "prev_token":  # the clamped head's scores no longer matter; its values and the other head do
        assert norm(b0.W_Q[0]) == norm(b0.W_K[0]) == 0 and norm(b0.W_V[0]) > 0 and norm(b0.W_Q[1]) > 0
    elif which == "induction":  # the query row is all that layer 1's patterns feed into the loss
        assert norm(b1.W_Q[1]) == norm(b1.W_K[1]) == 0 and norm(b1.W_V[1]) > 0 and norm(b1.W_Q[0]) > 0
    elif which == "perfect_layer":  # layer 0 is replaced, layer 1's patterns come from the first pass
        assert all(norm(a) == 0 for a in jax.tree_util.tree_leaves(g.blocks[0]))
        assert norm(b1.W_Q) > 0 and norm(b1.W_V) > 0 and norm(g.W_U) > 0
    elif which == "perfect_copy":  # only the head's query→label scores reach the loss
        assert norm(g.W_U) == 0 and norm(b1.W_V) == 0 and norm(b1.W_Q[1]) == 0
        assert norm(b1.W_Q[0]) > 0 and norm(b0.W_Q) > 0
    else:
        assert norm(b1.W_V[0]) == norm(b1.W_O[0]) == 0 and norm(b1.W_V[1]) > 0
