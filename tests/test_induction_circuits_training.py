"""Clamps held throughout training with the Trainer: the clamped pattern holds, parameters the clamp cuts off keep
their initial values exactly (Adam moves nothing with zero gradients), and every other parameter trains."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_induction_circuits_model import tiny_model_cfg, tiny_task

from mesalab.models import Transformer, clamps, hooks, run
from mesalab.train.config import TrainConfig
from mesalab.train.engine import Trainer, as_members
from mesalab.train.loss import default_loss


@pytest.fixture(scope="module")
def task():
    return tiny_task()


def train(task, ivs, members=2):
    make = functools.partial(Transformer, tiny_model_cfg(task))
    cfg = TrainConfig(steps=4, batch_size=8, lr=1e-2, chunk_steps=4, eval_batch_size=16)
    trainer = Trainer(task, make, cfg, loss_fn=hooks.batch_resolved(default_loss(task)), interventions=ivs)
    start = trainer.init_state(as_members(members))["params"]  # what fit starts from (seeds 0 … E−1)
    result = trainer.fit(members, progress=False)
    return start, result


def moved(a, b):
    return float(jnp.abs(a - b).max())


@pytest.fixture(scope="module")
def pattern_run(task):
    """A previous-token head in layer 0, a perfect induction query row in layer 1 (from the batch), one layer-1 head's
    values ablated: the authors' 'perfect match' condition at tiny scale."""
    ivs = {**clamps.prev_token(0, 0), **clamps.induction(1, 1, strength=0.8), **clamps.ablate_values(1, [0])}
    return ivs, *train(task, ivs)


def test_clamped_patterns_hold_after_training(task, pattern_run):
    ivs, _, result = pattern_run
    batch = task.sample(jax.random.PRNGKey(9), 4)
    _, cache = run(result.member(1), batch.inputs, sites=["*hook_pattern"],
                   interventions=hooks.resolve_batch(ivs, batch))
    np.testing.assert_allclose(cache["blocks.0.attn.hook_pattern"][:, 0], np.broadcast_to(
        clamps.prev_token_pattern(5), (4, 5, 5)), atol=1e-7)
    row = cache["blocks.1.attn.hook_pattern"][:, 1, -1]
    right = np.asarray(batch.info["match_position"])
    np.testing.assert_allclose(row[np.arange(4), right], 0.8, atol=1e-6)
    np.testing.assert_allclose(row[np.arange(4), 4 - right], 0.2, atol=1e-6)


def test_gradients_reach_only_the_unclamped_parameters(pattern_run):
    _, start, result = pattern_run
    for i in range(2):
        a, b = jax.tree_util.tree_map(lambda x: x[i], start), result.member(i)
        b0, a0, b1, a1 = b.blocks[0].attn, a.blocks[0].attn, b.blocks[1].attn, a.blocks[1].attn
        # Cut off: the clamped heads' queries and keys, the ablated head (whose pattern no longer matters either).
        assert moved(b0.W_Q[0], a0.W_Q[0]) == moved(b0.W_K[0], a0.W_K[0]) == 0.0
        assert moved(b1.W_Q[1], a1.W_Q[1]) == moved(b1.W_K[1], a1.W_K[1]) == 0.0
        assert moved(b1.W_V[0], a1.W_V[0]) == moved(b1.W_O[0], a1.W_O[0]) == moved(b1.W_Q[0], a1.W_Q[0]) == 0.0
        # Trained: everything else the loss sees.
        for new, old in ((b.W_E, a.W_E), (b.W_U, a.W_U), (b0.W_V[0], a0.W_V[0]), (b0.W_Q[1], a0.W_Q[1]),
                         (b1.W_V[1], a1.W_V[1]), (b1.W_O[1], a1.W_O[1])):
            assert moved(new, old) > 1e-4
    assert np.isfinite(result.curve("test_loss")["values"]).all()


def test_layer_one_plus_copy_trains_through_the_first_pass(task):
    """'Layer 1 + copy' (two passes inside every step): layer 0 and the unembedding are cut off, and the copying
    head's queries and keys learn through the first pass."""
    ivs = clamps.perfect_copy(1, 0, task.label_slice, first_pass=clamps.shifted_embedding_pass(0))
    start, result = train(task, ivs, members=1)
    a, b = jax.tree_util.tree_map(lambda x: x[0], start), result.member(0)
    assert all(moved(x, y) == 0.0 for x, y in zip(jax.tree_util.tree_leaves(b.blocks[0]),
                                                  jax.tree_util.tree_leaves(a.blocks[0])))
    assert moved(b.W_U, a.W_U) == 0.0 and moved(b.blocks[1].attn.W_V, a.blocks[1].attn.W_V) == 0.0
    assert moved(b.blocks[1].attn.W_Q[0], a.blocks[1].attn.W_Q[0]) > 1e-4 and moved(b.W_E, a.W_E) > 1e-4
