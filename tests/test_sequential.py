"""Sliding-window sequential functions (tasks/sequential.py) and their in-context baselines (algorithms/windowed.py)."""

import functools
import math

import jax
import numpy as np
import pytest

from mesalab.algorithms.windowed import no_context, squared_errors, windowed_least_squares
from mesalab.config import ConfigError
from mesalab.tasks.sequential import SequentialConfig, sample_raw, windows


def test_windows_stack_the_last_k_inputs_with_zeros_before_the_start():
    x = np.arange(1, 7, dtype=np.float32).reshape(1, 3, 2)       # x_1 = [1, 2], x_2 = [3, 4], x_3 = [5, 6]
    got = np.asarray(windows(x, 2))[0]
    assert got.tolist() == [[0, 0, 1, 2], [1, 2, 3, 4], [3, 4, 5, 6]]


def test_labels_are_the_window_function_and_noise_replaces_only_shown_labels():
    cfg = SequentialConfig(d=3, window=2, n_pairs=12, label_noise=0.5)
    raw = {k: np.asarray(v) for k, v in sample_raw(cfg, jax.random.PRNGKey(0), 400).items()}
    want = np.einsum("bnf,bf->bn", np.asarray(windows(raw["x"], 2)), raw["w"]) / math.sqrt(6)
    np.testing.assert_allclose(raw["y"], want, rtol=1e-5, atol=1e-6)
    assert abs(raw["replaced"].mean() - 0.5) < 0.03
    assert (raw["shown"][~raw["replaced"]] == raw["y"][~raw["replaced"]]).all()
    batch = cfg.sample(jax.random.PRNGKey(0), 400)
    np.testing.assert_array_equal(np.asarray(batch.targets)[:, ::2, 0], raw["y"])        # clean targets at x tokens
    np.testing.assert_array_equal(np.asarray(batch.inputs)[:, 1::2, -1], raw["shown"][:, :-1])  # shown labels
    assert batch.inputs.shape == (400, 23, 4) and float(np.asarray(batch.loss_mask)[:, 1::2].sum()) == 0


def test_windowed_least_squares_is_exact_once_identified_and_matches_lstsq():
    cfg = SequentialConfig(d=2, window=2, n_pairs=10)
    raw = sample_raw(cfg, jax.random.PRNGKey(1), 64)
    pred = np.asarray(windowed_least_squares(raw["x"], raw["shown"], window=2))
    err = np.asarray(squared_errors(pred, raw["y"])).mean(0)
    assert err[0] == pytest.approx(np.asarray(raw["y"])[:, 0].__pow__(2).mean())    # no pairs: predicts 0
    assert err[5:].max() < 1e-6                                                       # k·d = 4 unknowns, t > 4
    blind = np.asarray(squared_errors(windowed_least_squares(raw["x"], raw["shown"], window=1), raw["y"])).mean(0)
    assert blind[5:].mean() > 0.2 and float(np.asarray(no_context(raw["x"])).max()) == 0.0   # window-blind fails
    # With noisy shown labels the fit is not the truth: it must be the least-squares fit of the earlier pairs.
    noisy = sample_raw(SequentialConfig(d=2, window=2, n_pairs=10, label_noise=0.5), jax.random.PRNGKey(2), 4)
    pred = np.asarray(windowed_least_squares(noisy["x"], noisy["shown"], window=2))
    phi, shown = np.asarray(windows(noisy["x"], 2), np.float64), np.asarray(noisy["shown"], np.float64)
    for b in range(4):
        w_hat = np.linalg.lstsq(phi[b, :8], shown[b, :8], rcond=None)[0]          # 8 earlier pairs, 4 unknowns
        assert pred[b, 8] == pytest.approx(phi[b, 8] @ w_hat, rel=1e-3, abs=1e-3)


def test_bad_values_name_the_field():
    with pytest.raises(ConfigError, match="SequentialConfig.label_noise = 1.5"):
        SequentialConfig(label_noise=1.5)
    with pytest.raises(ConfigError, match="SequentialConfig.window = 0"):
        SequentialConfig(window=0)


def test_a_transformer_trains_on_it():
    """Plumbing, not the finding (the study judges in-context learning at its own budget): with the study's cpu
    recipe (d = 2, N = 12, 3 layers of width 64, Adam 3e-4), training leaves the no-context plateau (½·E[y²] ≈ 0.48)
    within a few hundred steps."""
    from mesalab.models import Transformer, TransformerConfig
    from mesalab.train import TrainConfig, Trainer

    task = SequentialConfig(d=2, window=2, n_pairs=12)
    model = TransformerConfig(d_in=task.token_width, d_model=64, n_layers=3, n_heads=2, d_head=32,
                              attention="softmax", causal=True, d_mlp=256, layer_norm=True, d_out=1,
                              pos_embedding="learned", max_len=task.seq_len)
    res = Trainer(task, functools.partial(Transformer, model),
                  TrainConfig(steps=600, batch_size=64, lr=3e-4, chunk_steps=300, eval_batch_size=512)).fit(
        1, progress=False)
    loss = res.history.query("metric == 'test_loss'").value.to_numpy()
    assert np.isfinite(loss).all() and loss[-1] < 0.42
