"""Strict JAX settings for the test suite and shared tiny configurations.

Compile time dominates these tests, so configurations are shared (identical configs hit the same jit cache) and the
persistent compilation cache is on (outside the repository; see mesalab.jax_setup).

The suite runs on one host device unless MESALAB_HOST_DEVICES says otherwise: its exact comparisons (resume, vmapped
against alone, stored programs) are written for one device, and every test then compiles one program, not one per
split. tests/test_placement.py runs its multi-device tests in a subprocess with two devices, the default of a 2-core
machine.
"""

import os

os.environ.setdefault("MESALAB_HOST_DEVICES", "1")   # before mesalab's import, which reads it

import jax  # noqa: E402
import pytest  # noqa: E402

from mesalab import jax_setup  # noqa: F401, E402


from mesalab.models import Transformer, TransformerConfig  # noqa: E402
from mesalab.tasks import DynamicsConfig, RegressionConfig  # noqa: E402
from mesalab.train import TrainConfig  # noqa: E402


@pytest.fixture(scope="session")
def tiny_cfg() -> TransformerConfig:
    """A small full transformer: softmax then linear attention, MLP, LayerNorm, embeddings, learned positions."""
    return TransformerConfig(
        d_model=8, n_layers=2, n_heads=2, d_head=4, attention=("softmax", "linear"), d_mlp=16, layer_norm=True,
        d_in=3, d_out=2, pos_embedding="learned", max_len=12,
    )


@pytest.fixture(scope="session")
def tiny_model(tiny_cfg) -> Transformer:
    return Transformer(tiny_cfg, key=jax.random.PRNGKey(0))


@pytest.fixture(scope="session")
def tiny_inputs():
    return jax.random.normal(jax.random.PRNGKey(1), (4, 6, 3))


@pytest.fixture(scope="session")
def reg_task() -> RegressionConfig:
    return RegressionConfig(d=3, n_context=5, x_half_width=0.5)


@pytest.fixture(scope="session")
def lsa_cfg(reg_task) -> TransformerConfig:
    w = reg_task.d + 1
    return TransformerConfig(
        d_model=w, n_layers=1, n_heads=1, d_head=w, causal=False, keys_from="context", init="normal",
        init_scale=0.3, readout_start=reg_task.d, readout_size=1, readout_sign=-1.0,
    )


@pytest.fixture(scope="session")
def small_train() -> TrainConfig:
    return TrainConfig(steps=40, batch_size=64, lr=3e-2, chunk_steps=10, eval_batch_size=64)


@pytest.fixture(scope="session")
def dyn_task() -> DynamicsConfig:
    return DynamicsConfig(d=3, seq_len=8)
