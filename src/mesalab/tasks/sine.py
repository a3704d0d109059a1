"""In-context non-linear (sine) regression (von Oswald et al. 2023 §5; reference/mesa.md §1.2).

Each sequence has its own sine wave y = amp·sin(x + phase) with amp ~ U(amp_min, amp_max) and
phase ~ U(0, phase_max); inputs are scalars x ~ U(−x_half_width, x_half_width). One token per pair, the query's
y slot is zero, and only the query's prediction counts (N = 2 shown)::

    inputs            targets   loss_mask
    [ 3.12,  0.21]    [0.00]    0
    [-1.70, -0.08]    [0.00]    0
    [ 0.45,  0.00]    [0.30]    1        <- query [x_q, 0]; predict y_q = amp·sin(x_q + phase)

The authors' code (`create_reg_data_sin`) draws amp and phase from the *same* random key, so both come from one
uniform u (amp = 0.1 + 0.4u, phase = πu): a one-parameter family of waves. The paper states independent draws,
which is the default here; `tied=True` reproduces the code.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from mesalab.config import config, require, require_positive
from mesalab.tasks.base import Batch, sampler
from mesalab.tasks.regression import constructed_tokens


@config(dynamic=("x_half_width",))
class SineRegressionConfig:
    """n_context: N in-context pairs; x ~ U(−x_half_width, x_half_width) (the authors' input_range 10: 5);
    amp ~ U(amp_min, amp_max); phase ~ U(0, phase_max); tied: amp and phase from one uniform (the authors' code)."""

    n_context: int = 10
    x_half_width: float = 5.0
    amp_min: float = 0.1
    amp_max: float = 0.5
    phase_max: float = math.pi
    tied: bool = False

    def __post_init__(self) -> None:
        require(self, "n_context", isinstance(self.n_context, int) and self.n_context > 0, "a positive integer")
        require_positive(self, "x_half_width", "amp_max")
        require(self, "amp_min", 0 <= self.amp_min <= self.amp_max, f"a number in [0, amp_max = {self.amp_max}]")
        require(self, "phase_max", self.phase_max >= 0, "a number >= 0")

    @property
    def token_width(self) -> int:
        return 2

    @property
    def target_width(self) -> int:
        return 1

    @property
    def loss_positions(self) -> str:
        return "last"

    @property
    def seq_len(self) -> int:
        return self.n_context + 1

    def sample(self, key: jax.Array, batch_size: int) -> Batch:
        return sample(self, key, batch_size)


@sampler
def sample_raw(cfg: SineRegressionConfig, key: jax.Array, batch_size: int):
    """Draw (amp [B], phase [B], x [B, N+1], y [B, N+1]); the last pair is the query."""
    kt, kx = jax.random.split(key)
    n = cfg.n_context + 1
    u = jax.random.uniform(kt, (batch_size, 2))
    u_phase = u[:, 0] if cfg.tied else u[:, 1]
    amp = cfg.amp_min + (cfg.amp_max - cfg.amp_min) * u[:, 0]
    phase = cfg.phase_max * u_phase
    x = jax.random.uniform(kx, (batch_size, n), minval=-1.0, maxval=1.0) * cfg.x_half_width
    y = amp[:, None] * jnp.sin(x + phase[:, None])
    return amp, phase, x, y


def sample(cfg: SineRegressionConfig, key: jax.Array, batch_size: int) -> Batch:
    """A batch of sine-regression sequences: tokens [x_i, y_i], query [x_q, 0], target y_q at the query."""
    amp, phase, x, y = sample_raw(cfg, key, batch_size)
    return Batch(*constructed_tokens(x[..., None], y), {"amp": amp, "phase": phase, "x": x, "y": y})
