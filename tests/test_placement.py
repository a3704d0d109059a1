"""Members split over the host's devices (train/placement.py): the same numbers as on one device, to round-off."""

import functools
import os
import re
import subprocess
import sys

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

from mesalab import jax_setup
from mesalab.config import ConfigError
from mesalab.models import Transformer
from mesalab.train import Trainer
from mesalab.train.engine import as_members
from mesalab.models import TransformerConfig
from mesalab.tasks import RegressionConfig
from mesalab.train.placement import devices_used, member_mesh, pool_reentering_calls, safe_member_mesh

two_devices = pytest.mark.skipif(jax.device_count() < 2, reason="needs 2 host devices (MESALAB_HOST_DEVICES)")


def test_the_mesh_uses_the_most_devices_that_divide_the_members():
    devices = [f"d{i}" for i in range(4)]   # only counted, never used
    assert member_mesh(1, devices) is None and member_mesh(3, devices[:2]) is None
    assert member_mesh(6, devices).devices.size == 3 and member_mesh(8, devices).devices.size == 4


def test_host_device_count_reads_the_environment(monkeypatch):
    monkeypatch.delenv("MESALAB_HOST_DEVICES", raising=False)
    monkeypatch.setattr(jax_setup, "usable_cores", lambda: 5)
    assert jax_setup.host_device_count() == 5   # the default: one device per core
    monkeypatch.setenv("MESALAB_HOST_DEVICES", "3")
    assert jax_setup.host_device_count() == 3
    monkeypatch.setenv("MESALAB_HOST_DEVICES", "two")
    with pytest.raises(ValueError, match="MESALAB_HOST_DEVICES = 'two'"):
        jax_setup.host_device_count()


@two_devices
def test_members_split_over_devices_match_one_device(reg_task, lsa_cfg, small_train):
    trainer = Trainer(reg_task, functools.partial(Transformer, lsa_cfg), small_train)
    split, one = trainer.fit(2, progress=False), trainer.fit(2, progress=False, devices=jax.devices()[:1])
    assert split.devices == 2 and one.devices == 1
    assert devices_used(split.models) == 1   # returned on one device: analyses run unsplit (placement.py)
    for a, b in zip(jax.tree_util.tree_leaves(split.models), jax.tree_util.tree_leaves(one.models)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)   # fusion order only
    again = trainer.fit(2, progress=False)   # the same device count: the same numbers exactly
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in
               zip(jax.tree_util.tree_leaves(split.models), jax.tree_util.tree_leaves(again.models)))


def chunk_and_args(trainer, n_members=2):
    members = as_members(n_members)
    state, (lrs, tasks) = trainer.init_state(members), trainer.member_arrays(members)
    return trainer.chunk_program(1, n_members), (state["params"], state["opt"], state["key"], state["alive"], lrs,
                                                 tasks, jax.random.PRNGKey(0))


class QRRegression(eqx.Module):
    """Regression whose sampler takes a batched QR (a jaxlib LAPACK kernel), as the dynamics task once did."""

    task: RegressionConfig

    def sample(self, key, batch_size):
        b = self.task.sample(key, batch_size)
        q, _ = jnp.linalg.qr(jax.random.normal(key, (batch_size, 3, 3)))
        return eqx.tree_at(lambda b: b.inputs, b, b.inputs + 0.0 * q[:, :1, :1])


def dyn_trainer(dyn_task, train):
    model = TransformerConfig(d_model=4 * dyn_task.d, n_layers=1, n_heads=1, d_head=4, attention="linear",
                              causal=True, readout_start=0, readout_size=dyn_task.d)
    return Trainer(dyn_task, functools.partial(Transformer, model), train)


def test_programs_that_call_lapack_kernels_stay_on_one_device(reg_task, lsa_cfg, small_train):
    model = functools.partial(Transformer, lsa_cfg)
    qr = chunk_and_args(Trainer(QRRegression(reg_task), model, small_train))
    reg = chunk_and_args(Trainer(reg_task, model, small_train))
    # jaxlib >= 0.4.32 names the kernel lapack_sgeqrf_ffi; older jaxlib lapack_sgeqrf.
    assert any(c.startswith("lapack_sgeqrf") for c in pool_reentering_calls(*qr)) and pool_reentering_calls(*reg) == []
    devices = jax.devices() * 2   # two entries: a mesh is asked for even on a one-device machine
    with pytest.warns(UserWarning, match="training on one device, not 2: the program calls lapack_sgeqrf"):
        assert safe_member_mesh(2, devices[:2], *qr) is None
    if jax.device_count() >= 2:
        assert safe_member_mesh(2, jax.devices()[:2], *reg).devices.size == 2


def test_the_dynamics_task_calls_no_lapack_kernel(dyn_task, small_train):
    # Its W* come from tasks/orthogonal.py, so its members can be split over the host's devices.
    assert pool_reentering_calls(*chunk_and_args(dyn_trainer(dyn_task, small_train))) == []


@two_devices
def test_a_resume_on_another_device_count_warns(reg_task, lsa_cfg, small_train, tmp_path):
    trainer = Trainer(reg_task, functools.partial(Transformer, lsa_cfg), small_train)
    trainer.fit(2, progress=False, checkpoint_dir=tmp_path, stop_after=small_train.chunk_steps)
    with pytest.warns(UserWarning, match=re.escape("with {'devices': 1, 'split': 'members'}; it was trained with "
                                                   "{'devices': 2, 'split': 'members'}")):
        trainer.fit(2, progress=False, checkpoint_dir=tmp_path, resume=True, devices=jax.devices()[:1])


@two_devices
def test_a_batch_split_over_devices_matches_one_device(dyn_task, small_train):
    trainer = dyn_trainer(dyn_task, small_train)
    split = trainer.fit(1, progress=False, split="batch")
    one = trainer.fit(1, progress=False, devices=jax.devices()[:1])
    assert split.devices == 2 and one.devices == 1 and devices_used(split.models) == 1
    for a, b in zip(jax.tree_util.tree_leaves(split.models), jax.tree_util.tree_leaves(one.models)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)   # summation order only
    np.testing.assert_allclose(split.history["value"], one.history["value"], rtol=1e-4, atol=1e-6)
    with pytest.raises(ConfigError, match="fit\\(split='rows'\\)"):
        trainer.fit(1, progress=False, split="rows")


def test_the_two_device_paths_run_in_a_subprocess():
    # The suite has one device (conftest.py); this file's 2-device tests run again with two host devices, under a timeout that turns a
    # deadlock (train/placement.py) into a failure.
    env = {**os.environ, "MESALAB_HOST_DEVICES": "2"}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__, "-k",
                           "not subprocess"], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and "skipped" not in done.stdout, done.stdout[-2000:]


def test_a_study_context_passes_its_split_to_every_part(tmp_path):
    from mesalab.studies.protocol import RunContext

    class Recorder:   # stands in for a Trainer: records how each part was asked to train
        def fit(self, seeds, **kwargs):
            self.kwargs = kwargs
            return type("Result", (), {"history": pd.DataFrame(columns=["step", "member", "seed", "metric", "value"])})

    trainer = Recorder()
    RunContext(tmp_path, progress=False, split="batch").fit(trainer, 2, "part")
    assert trainer.kwargs["split"] == "batch"
    RunContext(tmp_path, untrained=True, split="batch").fit(trainer, 2, "part")
    assert trainer.kwargs["split"] == "batch"
    RunContext(tmp_path, progress=False).fit(trainer, 2, "part", split="members")   # a part's own choice wins
    assert trainer.kwargs["split"] == "members"


def test_every_task_config_survives_lowering():
    # placement.py lowers the chunk program to read its custom calls; jax.jit.lower rebuilds each config with
    # placeholder leaves, which a __post_init__ must not validate as numbers (it once stopped in-context-language).
    from mesalab.studies.in_context_language.data import PrefixTask
    from mesalab.studies.repeated_data.task import RepeatedConfig
    from mesalab.tasks import TASKS, RegbenchConfig

    tasks = [cls() for cls in TASKS.values()] + [PrefixTask(RegbenchConfig(), 3.0), RepeatedConfig()]
    for task in tasks:
        assert "func.func" in jax.jit(lambda t: 0).lower(task).as_text(), type(task).__name__
