import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mesalab.config import ConfigError
from mesalab.models import Transformer, TransformerConfig, hooks
from mesalab.train import Member, TrainConfig, Trainer, TrainingDiverged, member_of, train
from mesalab.train import checkpoint as ckpt_mod
from mesalab.train.engine import CHECKPOINT_NAME


def leaves_equal(a, b) -> bool:
    la, lb = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    return len(la) == len(lb) and all(np.array_equal(np.asarray(x), np.asarray(y)) for x, y in zip(la, lb))


@pytest.fixture(scope="module")
def trainer(reg_task, lsa_cfg, small_train):
    return Trainer(reg_task, functools.partial(Transformer, lsa_cfg), small_train)


@pytest.fixture(scope="module")
def trained(trainer):
    return trainer.fit([0, 1, 2], progress=False)


def test_training_lowers_the_loss(trained):
    h = trained.history[trained.history.metric == "test_loss"]
    zero_predictor = 0.5 * 3 / 12  # ½E[y_q²] = ½·d·Var(x) for x ~ U(−0.5, 0.5), d = 3
    assert h[h.step == h.step.max()].value.mean() < 0.6 * zero_predictor
    assert set(h.member) == {0, 1, 2} and trained.step == 40
    curve = trained.curve("test_loss")      # what the studies' convergence rule reads
    assert curve["steps"] == sorted(set(h.step)) and len(curve["values"]) == 3
    assert curve["time"] == [float(s) for s in curve["steps"]]   # a constant rate: optimizer time = steps


def test_ensemble_members_equal_members_trained_alone(trainer, trained):
    alone = trainer.fit([1], progress=False)
    a, b = member_of(trained.models, 1), alone.member(0)
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-7)
    la = trained.history.query("member == 1 and metric == 'train_loss'").value.to_numpy()
    lb = alone.history.query("metric == 'train_loss'").value.to_numpy()
    np.testing.assert_allclose(la, lb, rtol=1e-5)


def test_resume_is_bit_identical(trainer, tmp_path):
    full = trainer.fit([0, 1], checkpoint_dir=tmp_path / "full", progress=False)
    # "Kill" after 20 of 40 steps, then resume from the checkpoint in a fresh trainer.
    part = trainer.fit([0, 1], checkpoint_dir=tmp_path / "cut", progress=False, stop_after=20)
    assert part.step == 20
    fresh = Trainer(trainer.task, trainer.make_model, trainer.cfg)
    resumed = fresh.fit([0, 1], checkpoint_dir=tmp_path / "cut", resume=True, progress=False)
    assert resumed.step == 40
    assert leaves_equal(eqx_params(full.models), eqx_params(resumed.models))
    assert full.history.equals(resumed.history)


def eqx_params(models):
    import equinox as eqx

    return eqx.filter(models, eqx.is_array)


def test_resume_refuses_a_different_config(trainer, tmp_path, reg_task, lsa_cfg, small_train):
    trainer.fit([0], checkpoint_dir=tmp_path, progress=False, stop_after=10)
    other = Trainer(reg_task, functools.partial(Transformer, lsa_cfg), small_train.__class__(
        **{**small_train.__dict__, "lr": 0.5}))
    with pytest.raises(ckpt_mod.CheckpointError, match="train configuration differs"):
        other.fit([0], checkpoint_dir=tmp_path, resume=True, progress=False)


def test_checkpoint_is_safetensors_with_a_json_header(trainer, tmp_path):
    trainer.fit([0], checkpoint_dir=tmp_path, progress=False, stop_after=10)
    path = tmp_path / CHECKPOINT_NAME
    header = ckpt_mod.read_header(path)
    assert header["step"] == 10 and header["model"]["d_model"] == 4 and header["train"]["lr"] == 3e-2
    arrays = ckpt_mod.load_arrays(path)
    assert any("W_Q" in k for k in arrays) and all(isinstance(v, np.ndarray) for v in arrays.values())
    assert not list(tmp_path.glob("*.tmp"))  # atomic: no temporary left behind


def test_clamped_pattern_holds_during_training(reg_task, lsa_cfg, small_train):
    """Clamp layer 0's attention pattern for all of training: the pattern stays at the clamp, W_Q and W_K get no
    gradient (so they never move), and everything downstream still learns."""
    t = reg_task.seq_len
    pattern = jnp.tril(jnp.ones((1, t, t))) / t
    ivs = {"blocks.0.attn.hook_pattern": hooks.clamp(pattern)}
    tr = Trainer(reg_task, functools.partial(Transformer, lsa_cfg), small_train, interventions=ivs)
    res = tr.fit([0], progress=False)
    init = tr.init_state([Member(0)])["params"]
    m0, m = member_of(init, 0), res.member(0)
    np.testing.assert_array_equal(m.blocks[0].attn.W_Q, m0.blocks[0].attn.W_Q)
    np.testing.assert_array_equal(m.blocks[0].attn.W_K, m0.blocks[0].attn.W_K)
    assert float(jnp.abs(m.blocks[0].attn.W_V - m0.blocks[0].attn.W_V).max()) > 1e-3
    assert float(jnp.abs(m.blocks[0].attn.W_O - m0.blocks[0].attn.W_O).max()) > 1e-3
    x = reg_task.sample(jax.random.PRNGKey(9), 2).inputs[0]
    _, cache = m.run_with_cache(x, ["blocks.0.attn.hook_pattern"], interventions=ivs)
    np.testing.assert_array_equal(cache["blocks.0.attn.hook_pattern"], pattern)


def test_per_member_learning_rates_and_task_knobs(trainer):
    res = trainer.fit([Member(0), Member(0, lr=1e-4), Member(0, task={"noise": 1.0})], progress=False)
    p = [res.member(i).blocks[0].attn.W_Q for i in range(3)]
    solo = trainer.fit([0], progress=False).member(0).blocks[0].attn.W_Q
    np.testing.assert_allclose(p[0], solo, rtol=1e-5, atol=1e-7)
    assert float(jnp.abs(p[1] - p[0]).max()) > 1e-4 and float(jnp.abs(p[2] - p[0]).max()) > 1e-4
    with pytest.raises(ConfigError, match="no field"):
        trainer.fit([Member(0, task={"nosie": 1.0})], progress=False)


def test_divergence_names_member_step_and_metric(reg_task, lsa_cfg, tmp_path):
    cfg = TrainConfig(steps=30, batch_size=16, optimizer="sgd", lr=1.0, chunk_steps=10, eval_batch_size=0)
    big = TransformerConfig(**{**lsa_cfg.__dict__, "init": "normal", "init_scale": 3.0})
    tr = Trainer(reg_task, functools.partial(Transformer, big), cfg)
    with pytest.raises(TrainingDiverged, match=r"member \d+ \(seed \d+\) has train_loss = (nan|inf) at step \d+"):
        tr.fit([Member(0), Member(1, lr=1e3)], checkpoint_dir=tmp_path, progress=False)


def test_warmup_cosine_schedule_shape():
    from mesalab.train.optim import schedule_shape

    s = schedule_shape(TrainConfig(steps=100, schedule="warmup_cosine", warmup_steps=10, lr=1e-3, end_lr=1e-5))
    assert float(s(0)) == 0.0 and np.isclose(float(s(10)), 1.0) and np.isclose(float(s(100)), 0.01, rtol=1e-3)
    # decay_steps: train on the start of a longer schedule (the mesa sandbox: 2.5k steps of 20k).
    long = schedule_shape(TrainConfig(steps=100, schedule="warmup_cosine", warmup_steps=10, lr=1e-3, end_lr=1e-5,
                                      decay_steps=1000))
    assert float(long(100)) > 0.97 and np.isclose(float(long(1000)), 0.01, rtol=1e-3)


@pytest.mark.parametrize("kwargs, field", [({"steps": 0}, "steps"), ({"optimizer": "lion"}, "optimizer"),
                                           ({"lr": -1.0}, "lr"), ({"warmup_steps": 5000}, "warmup_steps"),
                                           ({"decay_steps": -1}, "decay_steps")])
def test_bad_train_configs_name_the_field(kwargs, field):
    with pytest.raises(ConfigError, match=f"TrainConfig.{field}"):
        TrainConfig(**kwargs)


def test_train_dynamics_smoke(dyn_task):
    """The default mesa model shape (causal linear attention, constructed tokens) trains on dynamics."""
    m = TransformerConfig(d_model=dyn_task.token_width, n_layers=2, n_heads=2, d_head=6, clip=1.5,
                          init_scale=2e-2, readout_start=0, readout_size=dyn_task.d)
    cfg = TrainConfig(steps=30, batch_size=16, optimizer="adamw", lr=3e-3, weight_decay=0.05, clip_value=1.0,
                      schedule="warmup_cosine", warmup_steps=5, chunk_steps=15, eval_batch_size=32)
    res = train(dyn_task, m, cfg, seeds=2, progress=False)
    h = res.history.query("metric == 'test_loss'")
    assert np.isfinite(h.value).all() and h[h.step == 30].value.mean() < h[h.step == 15].value.mean() * 1.05


def test_last_position_loss_equals_the_masked_loss(reg_task, tiny_cfg):
    from mesalab.train.loss import last_position_loss, prediction_loss

    cfg = TransformerConfig(**{**tiny_cfg.__dict__, "d_in": reg_task.token_width, "d_out": 1, "causal": False,
                               "keys_from": "context"})
    model = Transformer(cfg, key=jax.random.PRNGKey(3))
    batch = reg_task.sample(jax.random.PRNGKey(4), 16)
    np.testing.assert_allclose(last_position_loss(model, batch), prediction_loss(model, batch), rtol=1e-5)


def test_ensemble_groups_give_the_same_members(reg_task, lsa_cfg, small_train, trained):
    grouped = Trainer(reg_task, functools.partial(Transformer, lsa_cfg),
                      TrainConfig(**{**small_train.__dict__, "ensemble_group": 2})).fit([0, 1, 2], progress=False)
    for x, y in zip(jax.tree_util.tree_leaves(grouped.models), jax.tree_util.tree_leaves(trained.models)):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-7)


def test_a_readout_that_does_not_fit_the_targets_fails_at_once(reg_task, lsa_cfg, small_train):
    wide = TransformerConfig(**{**lsa_cfg.__dict__, "readout_start": 0, "readout_size": None})
    with pytest.raises(ConfigError, match=r"TransformerConfig.readout_size = None gives predictions of width 4; expected 1"):
        Trainer(reg_task, functools.partial(Transformer, wide), small_train)
    with pytest.raises(ConfigError, match=r"TransformerConfig.d_model = 40 does not fit the task's tokens; expected 4"):
        Trainer(reg_task, functools.partial(Transformer, TransformerConfig()), small_train)
    with pytest.raises(ConfigError, match="seeds = 0"):
        Trainer(reg_task, functools.partial(Transformer, lsa_cfg), small_train).fit(0, progress=False)


def test_resume_refuses_other_interventions(trainer, tmp_path, reg_task, lsa_cfg, small_train):
    trainer.fit([0], checkpoint_dir=tmp_path, progress=False, stop_after=10)
    t = reg_task.seq_len
    clamped = Trainer(reg_task, functools.partial(Transformer, lsa_cfg), small_train,
                      interventions={"blocks.0.attn.hook_pattern": hooks.clamp(jnp.ones((1, t, t)) / t)})
    with pytest.raises(ckpt_mod.CheckpointError, match="fingerprint configuration differs"):
        clamped.fit([0], checkpoint_dir=tmp_path, resume=True, progress=False)


def halve(x, env, value):
    return 0.5 * x


def negate(x, env, value):
    return -x


def test_resume_refuses_another_computed_clamp_function(reg_task, lsa_cfg, small_train, tmp_path):
    from mesalab.models.computed import Computed

    site = "blocks.0.attn.hook_z"
    Trainer(reg_task, functools.partial(Transformer, lsa_cfg), small_train,
            interventions={site: Computed(halve)}).fit([0], checkpoint_dir=tmp_path, progress=False, stop_after=10)
    other = Trainer(reg_task, functools.partial(Transformer, lsa_cfg), small_train, interventions={site: Computed(negate)})
    with pytest.raises(ckpt_mod.CheckpointError, match="fingerprint configuration differs"):
        other.fit([0], checkpoint_dir=tmp_path, resume=True, progress=False)


def test_a_checkpoint_written_before_a_config_field_existed_still_resumes(trainer, tmp_path):
    """A field added to TransformerConfig / TrainConfig later reads as its default when resuming."""
    import json

    from safetensors.numpy import save_file

    full = trainer.fit([0], checkpoint_dir=tmp_path / "full", progress=False)
    trainer.fit([0], checkpoint_dir=tmp_path / "cut", progress=False, stop_after=20)
    path = tmp_path / "cut" / CHECKPOINT_NAME
    header = ckpt_mod.read_header(path)
    del header["model"]["rope_base"], header["train"]["ensemble_group"]  # as if written before they existed
    save_file(ckpt_mod.load_arrays(path), str(path), metadata={"header": json.dumps(header, sort_keys=True)})
    resumed = trainer.fit([0], checkpoint_dir=tmp_path / "cut", resume=True, progress=False)
    assert leaves_equal(eqx_params(full.models), eqx_params(resumed.models))
