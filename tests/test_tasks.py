import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mesalab.config import ConfigError, from_dict, stack_configs, to_dict
from mesalab.tasks import DynamicsConfig, RegressionConfig
from mesalab.tasks.orthogonal import haar_orthogonal

KEY = jax.random.PRNGKey(0)


def test_regression_constructed_tokens_hold_pairs_and_zero_query():
    cfg = RegressionConfig(d=3, n_context=4, x_half_width=0.5)
    b = cfg.sample(KEY, 16)
    assert b.inputs.shape == (16, 5, 4) and b.targets.shape == (16, 5, 1) and b.loss_mask.shape == (16, 5)
    w, x, y = b.info["w"], b.info["x"], b.info["y"]
    np.testing.assert_allclose(y, jnp.einsum("bnd,bd->bn", x, w), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b.inputs[:, :-1, -1], y[:, :-1])  # context y slots
    assert np.all(b.inputs[:, -1, -1] == 0)  # the query's y slot is empty
    np.testing.assert_allclose(b.targets[:, -1, 0], y[:, -1])
    assert np.all(b.loss_mask.sum(1) == 1) and np.all(b.loss_mask[:, -1] == 1)
    assert np.abs(x).max() <= 0.5


def test_regression_interleaved_alternates_x_and_y_tokens():
    cfg = RegressionConfig(d=2, n_context=3, token_format="interleaved", loss_at="every_x")
    b = cfg.sample(KEY, 5)
    x, y = b.info["x"], b.info["y"]
    assert b.inputs.shape == (5, 7, 3)
    np.testing.assert_allclose(b.inputs[:, 0::2, :2], x)  # x_1, x_2, x_3, x_q
    np.testing.assert_allclose(b.inputs[:, 1::2, 2], y[:, :-1])  # y_1, y_2, y_3
    assert np.all(b.inputs[:, 0::2, 2] == 0) and np.all(b.inputs[:, 1::2, :2] == 0)
    np.testing.assert_allclose(b.targets[:, 0::2, 0], y)
    np.testing.assert_array_equal(b.loss_mask[0], [1, 0, 1, 0, 1, 0, 1])
    only_query = RegressionConfig(d=2, n_context=3, token_format="interleaved").sample(KEY, 5)
    np.testing.assert_array_equal(only_query.loss_mask[0], [0, 0, 0, 0, 0, 0, 1])


def test_dynamics_follow_an_orthogonal_system_and_constructed_tokens():
    cfg = DynamicsConfig(d=4, seq_len=6, noise=0.0)
    b = cfg.sample(KEY, 8)
    w, s = b.info["w"], b.info["states"]
    np.testing.assert_allclose(jnp.einsum("bij,bkj->bik", w, w), np.broadcast_to(np.eye(4), (8, 4, 4)), atol=1e-5)
    np.testing.assert_allclose(s[:, 1:], jnp.einsum("bij,btj->bti", w, s[:, :-1]), atol=1e-5)
    assert b.inputs.shape == (8, 6, 16) and b.targets.shape == (8, 6, 4)
    tok = b.inputs
    assert np.all(tok[..., :4] == 0)
    np.testing.assert_allclose(tok[..., 4:8], s[:, :-1])
    np.testing.assert_allclose(tok[..., 8:12], s[:, :-1])
    np.testing.assert_allclose(tok[:, 1:, 12:], s[:, :-2])
    assert np.all(tok[:, 0, 12:] == 0)  # s_0 := 0
    np.testing.assert_allclose(b.targets, s[:, 1:])
    masked = DynamicsConfig(d=4, seq_len=6, token_format="constructed_masked").sample(KEY, 2)
    assert np.all(masked.inputs[..., :8] == 0)
    raw = DynamicsConfig(d=4, seq_len=6, token_format="raw").sample(KEY, 2)
    assert raw.inputs.shape == (2, 6, 4)


def test_haar_orthogonal_is_jax_random_orthogonal_without_lapack():
    # The same draw as jax.random.orthogonal (QR of the same Gaussian Z, signs fixed) to round-off, computed without
    # the LAPACK kernel that deadlocks with members on several host devices (train/placement.py).
    for n in (1, 2, 10):
        ours, jaxs = haar_orthogonal(KEY, n, (512,)), jax.random.orthogonal(KEY, n, shape=(512,))
        err = np.abs(np.asarray(ours - jaxs)).max(axis=(-2, -1))
        assert np.median(err) < 1e-6 and err.max() < 1e-4, (n, np.median(err), err.max())
        np.testing.assert_allclose(ours @ jnp.swapaxes(ours, -1, -2), np.broadcast_to(np.eye(n), ours.shape), atol=1e-5)
    assert "custom_call" not in jax.jit(lambda k: haar_orthogonal(k, 3)).lower(KEY).as_text()


def test_dynamics_noise_and_clipping():
    cfg = DynamicsConfig(d=3, seq_len=30, noise=5.0, clip=2.0)
    s = cfg.sample(KEY, 16).info["states"]
    assert np.abs(s).max() <= 2.0 + 1e-6 and np.isclose(np.abs(s).max(), 2.0)


def test_samplers_are_pure_and_jittable():
    cfg = DynamicsConfig(d=3, seq_len=5)
    a = jax.jit(lambda k: cfg.sample(k, 4))(KEY)
    np.testing.assert_array_equal(a.inputs, jax.jit(lambda k: cfg.sample(k, 4))(KEY).inputs)   # pure
    b = cfg.sample(KEY, 4)
    # Eager and jitted W* (a jnp Householder QR, tasks/orthogonal.py) differ where XLA fuses the arithmetic
    # differently: float32 round-off, grown by the few steps of the system.
    np.testing.assert_allclose(a.inputs, b.inputs, rtol=1e-6, atol=1e-6)


def test_dynamic_fields_vmap_per_member():
    cfgs = [RegressionConfig(d=2, n_context=3, noise=v) for v in (0.0, 1.0)]
    stacked = stack_configs(cfgs)
    b = jax.vmap(lambda c, k: c.sample(k, 64))(stacked, jax.random.split(KEY, 2))
    resid = b.info["y"] - jnp.einsum("ebnd,ebd->ebn", b.info["x"], b.info["w"])
    assert float(jnp.abs(resid[0]).max()) < 1e-5 and float(resid[1].std()) > 0.5
    with pytest.raises(ConfigError, match="static field RegressionConfig.d"):
        stack_configs([RegressionConfig(d=2), RegressionConfig(d=3)])


@pytest.mark.parametrize(
    "make, field",
    [
        (lambda: RegressionConfig(d=-1), "RegressionConfig.d"),
        (lambda: RegressionConfig(n_context=0), "RegressionConfig.n_context"),
        (lambda: RegressionConfig(token_format="pairs"), "RegressionConfig.token_format"),
        (lambda: RegressionConfig(loss_at="every_x"), "RegressionConfig.loss_at"),
        (lambda: DynamicsConfig(seq_len=1), "DynamicsConfig.seq_len"),
        (lambda: DynamicsConfig(noise=-0.1), "DynamicsConfig.noise"),
    ],
)
def test_bad_task_configs_name_the_field(make, field):
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")) as e:
        make()
    assert "expected" in str(e.value)


def test_configs_round_trip_through_json_dicts():
    cfg = DynamicsConfig(d=5, seq_len=7, token_format="raw")
    assert from_dict(DynamicsConfig, to_dict(cfg)) == cfg
    with pytest.raises(ConfigError, match="valid fields"):
        from_dict(DynamicsConfig, {"dd": 3})


def test_sine_regression_tokens_hold_pairs_of_one_wave_and_a_zero_query():
    import math

    from mesalab.tasks import SineRegressionConfig

    cfg = SineRegressionConfig(n_context=4)
    b = cfg.sample(KEY, 4096)
    assert b.inputs.shape == (4096, 5, 2) and b.targets.shape == (4096, 5, 1) and cfg.seq_len == 5
    amp, phase, x, y = b.info["amp"], b.info["phase"], b.info["x"], b.info["y"]
    np.testing.assert_allclose(y, amp[:, None] * jnp.sin(x + phase[:, None]), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b.inputs[:, :, 0], x)
    np.testing.assert_allclose(b.inputs[:, :-1, 1], y[:, :-1])
    assert np.all(b.inputs[:, -1, 1] == 0) and np.all(b.loss_mask[:, -1] == 1) and np.all(b.loss_mask.sum(1) == 1)
    np.testing.assert_allclose(b.targets[:, -1, 0], y[:, -1])
    assert np.abs(x).max() <= 5.0 and 0.1 <= amp.min() and amp.max() <= 0.5 and 0 <= phase.min() <= phase.max() <= math.pi
    # the paper's independent draws; tied=True reproduces the authors' code (amp and phase from one uniform)
    assert abs(np.corrcoef(amp, phase)[0, 1]) < 0.1
    tied = SineRegressionConfig(n_context=4, tied=True).sample(KEY, 64).info
    np.testing.assert_allclose((tied["amp"] - 0.1) / 0.4, tied["phase"] / math.pi, rtol=1e-5, atol=1e-6)
    # jit- and vmap-friendly: the same key gives the same batch under jit
    again = jax.jit(lambda k: cfg.sample(k, 4096))(KEY)
    np.testing.assert_allclose(again.inputs, b.inputs, rtol=1e-5, atol=1e-6)
    with pytest.raises(ConfigError, match="SineRegressionConfig.amp_min"):
        SineRegressionConfig(amp_min=0.9)
    with pytest.raises(ConfigError, match="SineRegressionConfig.n_context"):
        SineRegressionConfig(n_context=0)
