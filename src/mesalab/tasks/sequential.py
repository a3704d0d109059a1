"""Sliding-window sequential function classes in context (Campbell et al. 2023; reference/icll.md §3; issue 20
part B), in Garg et al.'s interleaved format (reference/icll.md §4.2).

Each sequence draws its own function f(x_{t−k+1}, …, x_t) = wᵀ[x_{t−k+1}; …; x_t] / √(k·d), w ~ N(0, I_{k·d}), and
inputs x_t ~ N(0, I_d); positions before the first input count as zero vectors in the window. So y_t depends on the
last k inputs, Var(y_t) = 1 once the window is full, and k = 1 is Garg et al.'s linear regression.
A share p (`label_noise`) of the labels *shown in context* is replaced by fresh N(0, 1) draws ("randomized y-label
sequences"); the target at every position stays the clean f, so the loss measures in-context learning of f from
partly corrupted examples. `info` holds the clean labels and which ones were replaced.

Tokens (d = 2, k = 2, N = 3 pairs), each d + 1 wide, x in the first d slots and y in the last::

    [x_1, 0]  target y_1    (y_1 = f(0, x_1))        the loss is at every x token (`loss_at="every_x"`),
    [0, ỹ_1]  —             (ỹ: the shown label)      or at the last x only (`loss_at="query"`)
    [x_2, 0]  target y_2    (y_2 = f(x_1, x_2))
    [0, ỹ_2]  —
    [x_3, 0]  target y_3

What Campbell et al. leave unknown (only their abstract and front matter could be read): the window's exact
definition, d, k, the label distribution and the randomisation rule. The choices above are the plain reading of
"sliding window" over Garg et al.'s set-up; a study states them again.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from mesalab.config import config, require, require_choice
from mesalab.tasks.base import Batch, sampler


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@config(dynamic=("label_noise",))
class SequentialConfig:
    """d: input dimension; window: k, the inputs each label depends on; n_pairs: N (x, y) pairs per sequence;
    label_noise: p, the share of shown labels replaced by N(0, 1) draws; loss_at: "every_x" or "query"."""

    d: int = 5
    window: int = 2
    n_pairs: int = 20
    label_noise: float = 0.0
    loss_at: str = "every_x"

    def __post_init__(self) -> None:
        require(self, "d", _is_int(self.d) and self.d >= 1, "a positive integer")
        require(self, "window", _is_int(self.window) and self.window >= 1, "a positive integer")
        require(self, "n_pairs", _is_int(self.n_pairs) and self.n_pairs >= 1, "a positive integer")
        require(self, "label_noise", isinstance(self.label_noise, (int, float)) and 0 <= self.label_noise <= 1,
                "a number in [0, 1]")
        require_choice(self, "loss_at", ("every_x", "query"))

    @property
    def token_width(self) -> int:
        return self.d + 1

    @property
    def target_width(self) -> int:
        return 1

    @property
    def seq_len(self) -> int:
        return 2 * self.n_pairs - 1

    @property
    def loss_positions(self) -> str:
        return "last" if self.loss_at == "query" else "masked"

    def sample(self, key: jax.Array, batch_size: int) -> Batch:
        return sample(self, key, batch_size)


def windows(x: jax.Array, k: int) -> jax.Array:
    """[x_{t−k+1}; …; x_t] for every t, zeros before the first input: x [B, N, d] -> [B, N, k·d] (oldest first)."""
    b, n, d = x.shape
    padded = jnp.concatenate([jnp.zeros((b, k - 1, d), x.dtype), x], axis=1)
    return jnp.concatenate([padded[:, j:j + n] for j in range(k)], axis=-1)


@sampler
def sample_raw(cfg: SequentialConfig, key: jax.Array, batch_size: int) -> dict[str, jax.Array]:
    """w [B, k·d], x [B, N, d], clean labels y [B, N], shown labels [B, N] and the replaced mask [B, N]."""
    kw, kx, kn, kr = jax.random.split(key, 4)
    n, d, k = cfg.n_pairs, cfg.d, cfg.window
    w = jax.random.normal(kw, (batch_size, k * d))
    x = jax.random.normal(kx, (batch_size, n, d))
    y = jnp.einsum("bnf,bf->bn", windows(x, k), w) / math.sqrt(k * d)
    replaced = jax.random.uniform(kr, (batch_size, n)) < cfg.label_noise
    shown = jnp.where(replaced, jax.random.normal(kn, (batch_size, n)), y)
    return {"w": w, "x": x, "y": y, "shown": shown, "replaced": replaced}


def sample(cfg: SequentialConfig, key: jax.Array, batch_size: int) -> Batch:
    """Interleaved tokens x_1, ỹ_1, …, x_N (see the module docstring); targets: the clean y at the x tokens."""
    raw = sample_raw(cfg, key, batch_size)
    x, y, shown = raw["x"], raw["y"], raw["shown"]
    b, n, d = x.shape
    x_tok = jnp.concatenate([x, jnp.zeros((b, n, 1), x.dtype)], axis=-1)
    y_tok = jnp.concatenate([jnp.zeros((b, n, d), x.dtype), shown[..., None]], axis=-1)
    inputs = jnp.stack([x_tok, y_tok], axis=2).reshape(b, 2 * n, d + 1)[:, :-1]
    targets = jnp.stack([y, jnp.zeros_like(y)], axis=2).reshape(b, 2 * n)[:, :-1, None]
    if cfg.loss_at == "query":
        mask = jnp.zeros((b, 2 * n - 1), x.dtype).at[:, -1].set(1.0)
    else:
        mask = jnp.tile(jnp.array([1.0, 0.0], x.dtype), n)[None, :-1].repeat(b, axis=0)
    return Batch(inputs, targets, mask, raw)
