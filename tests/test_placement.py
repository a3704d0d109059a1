"""Members split over the host's devices (train/placement.py): the same numbers as on one device, to round-off."""

import functools

import jax
import numpy as np
import pytest

from mesalab import jax_setup
from mesalab.models import Transformer
from mesalab.train import Trainer
from mesalab.train.placement import devices_used, member_mesh

two_devices = pytest.mark.skipif(jax.device_count() < 2, reason="needs 2 host devices (MESALAB_HOST_DEVICES)")


def test_the_mesh_uses_the_most_devices_that_divide_the_members():
    devices = [f"d{i}" for i in range(4)]   # only counted, never used
    assert member_mesh(1, devices) is None and member_mesh(3, devices[:2]) is None
    assert member_mesh(6, devices).devices.size == 3 and member_mesh(8, devices).devices.size == 4


def test_host_device_count_reads_the_environment(monkeypatch):
    monkeypatch.setenv("MESALAB_HOST_DEVICES", "3")
    assert jax_setup.host_device_count() == 3
    monkeypatch.setenv("MESALAB_HOST_DEVICES", "two")
    with pytest.raises(ValueError, match="MESALAB_HOST_DEVICES = 'two'"):
        jax_setup.host_device_count()


@two_devices
def test_members_split_over_devices_match_one_device(reg_task, lsa_cfg, small_train):
    trainer = Trainer(reg_task, functools.partial(Transformer, lsa_cfg), small_train)
    split, one = trainer.fit(2, progress=False), trainer.fit(2, progress=False, devices=jax.devices()[:1])
    assert devices_used(split.models) == 2 and devices_used(one.models) == 1
    for a, b in zip(jax.tree_util.tree_leaves(split.models), jax.tree_util.tree_leaves(one.models)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-4, atol=1e-6)   # fusion order only
    again = trainer.fit(2, progress=False)   # the same device count: the same numbers exactly
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in
               zip(jax.tree_util.tree_leaves(split.models), jax.tree_util.tree_leaves(again.models)))
