"""In-context linear regression (von Oswald et al. 2023; reference/mesa.md §1.2).

Each sequence has its own task w ~ N(0, w_scale² I), inputs x ~ U(−x_half_width, x_half_width)^d and targets
y = wᵀx (+ optional noise). Two token formats:

constructed (d = 2, N = 2): one token per pair, the query's y slot is zero; the target sits at the query::

    inputs                  targets   loss_mask
    [ 0.31, -0.12,  0.77]   [0.00]    0
    [-0.45,  0.08, -1.02]   [0.00]    0
    [ 0.20,  0.40,  0.00]   [0.58]    1        <- query [x_q, 0]; predict y_q

interleaved (d = 2, N = 2): x and y tokens alternate, both d + 1 wide (x in the first d slots, y in the last, so the
two kinds never collide; the authors' code uses width d and lets a positional code tell them apart)::

    [ 0.31, -0.12, 0.00]  x_1        target y_1 (masked in unless loss_at="query")
    [ 0.00,  0.00, 0.77]  y_1
    [-0.45,  0.08, 0.00]  x_2        target y_2
    [ 0.00,  0.00,-1.02]  y_2
    [ 0.20,  0.40, 0.00]  x_q        target y_q

The paper's text draws x ~ U(−1, 1) (x_half_width = 1, the default here); the authors' code draws U(−0.5, 0.5)
(x_half_width = 0.5). All losses scale by exactly 4 between the two.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mesalab.config import config, require, require_choice, require_nonnegative, require_positive
from mesalab.tasks.base import Batch, sampler


@config(dynamic=("x_half_width", "w_scale", "noise"))
class RegressionConfig:
    """d: input dimension; n_context: N in-context pairs; token_format: "constructed" or "interleaved";
    loss_at: "query" (only the query's prediction counts) or "every_x" (interleaved only: each x_i predicts y_i)."""

    d: int = 10
    n_context: int = 10
    x_half_width: float = 1.0
    w_scale: float = 1.0
    noise: float = 0.0
    token_format: str = "constructed"
    loss_at: str = "query"

    def __post_init__(self) -> None:
        require_positive(self, "d", "n_context", "x_half_width", "w_scale")
        require(self, "d", isinstance(self.d, int), "a positive integer")
        require(self, "n_context", isinstance(self.n_context, int), "a positive integer")
        require_nonnegative(self, "noise")
        require_choice(self, "token_format", ("constructed", "interleaved"))
        require_choice(self, "loss_at", ("query", "every_x"))
        require(
            self, "loss_at", not (self.loss_at == "every_x" and self.token_format == "constructed"),
            '"query" with token_format="constructed" (every_x needs interleaved tokens)',
        )

    @property
    def token_width(self) -> int:
        return self.d + 1

    @property
    def target_width(self) -> int:
        return 1

    @property
    def loss_positions(self) -> str:
        """"last" when only the final (query) position is in the loss mask; lets the engine skip other rows."""
        return "last" if self.loss_at == "query" else "masked"

    @property
    def seq_len(self) -> int:
        return self.n_context + 1 if self.token_format == "constructed" else 2 * self.n_context + 1

    def sample(self, key: jax.Array, batch_size: int) -> Batch:
        return sample(self, key, batch_size)


@sampler
def sample_raw(cfg: RegressionConfig, key: jax.Array, batch_size: int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Draw (w [B, d], x [B, N+1, d], y [B, N+1]); the last pair is the query."""
    kw, kx, kn = jax.random.split(key, 3)
    n, d = cfg.n_context + 1, cfg.d
    w = cfg.w_scale * jax.random.normal(kw, (batch_size, d))
    x = jax.random.uniform(kx, (batch_size, n, d), minval=-1.0, maxval=1.0) * cfg.x_half_width
    y = jnp.einsum("bnd,bd->bn", x, w) + cfg.noise * jax.random.normal(kn, (batch_size, n))
    return w, x, y


def sample(cfg: RegressionConfig, key: jax.Array, batch_size: int) -> Batch:
    """Draw a batch of regression sequences in the configured token format."""
    w, x, y = sample_raw(cfg, key, batch_size)
    info = {"w": w, "x": x, "y": y}
    if cfg.token_format == "constructed":
        return Batch(*constructed_tokens(x, y), info)
    return Batch(*interleaved_tokens(x, y, cfg.loss_at), info)


def constructed_tokens(x: jax.Array, y: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Tokens [x_i, y_i] and query [x_q, 0]; target and loss only at the query. x: [B, N+1, d], y: [B, N+1]."""
    b, n, _ = x.shape
    y_in = y.at[:, -1].set(0.0)
    inputs = jnp.concatenate([x, y_in[..., None]], axis=-1)
    targets = jnp.zeros((b, n, 1), x.dtype).at[:, -1, 0].set(y[:, -1])
    mask = jnp.zeros((b, n), x.dtype).at[:, -1].set(1.0)
    return inputs, targets, mask


def interleaved_tokens(x: jax.Array, y: jax.Array, loss_at: str) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Tokens x_1, y_1, …, x_N, y_N, x_q (each d + 1 wide); targets y_i at the x positions."""
    b, n, d = x.shape
    x_tok = jnp.concatenate([x, jnp.zeros((b, n, 1), x.dtype)], axis=-1)
    y_tok = jnp.concatenate([jnp.zeros((b, n, d), x.dtype), y[..., None]], axis=-1)
    inputs = jnp.stack([x_tok, y_tok], axis=2).reshape(b, 2 * n, d + 1)[:, :-1]
    targets = jnp.stack([y, jnp.zeros_like(y)], axis=2).reshape(b, 2 * n)[:, :-1, None]
    if loss_at == "query":
        mask = jnp.zeros((b, 2 * n - 1), x.dtype).at[:, -1].set(1.0)
    else:
        mask = jnp.tile(jnp.array([1.0, 0.0], x.dtype), n)[None, :-1].repeat(b, axis=0)
    return inputs, targets, mask
