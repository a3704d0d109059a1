"""Linear dynamical systems (von Oswald et al. 2023b, "Uncovering mesa-optimization"; reference/mesa.md §2.2–2.3).

Each sequence has its own random orthogonal W* (d × d). s_1 ~ U(−s1_half_width, s1_half_width)^d and
s_{t+1} = clip(W* s_t + σ ε_t, ±clip) with ε_t ~ N(0, I). The model sees s_1 … s_T and predicts s_2 … s_{T+1} at
every position (all positions count in the loss).

Token formats (d = 2, showing token t = 2 with s_1 = [0.5, -0.2], s_2 = [0.3, 0.4]; target s_3):

    constructed         [0, 0,  0.3, 0.4,  0.3, 0.4,  0.5, -0.2]   = [0, s_t, s_t, s_{t−1}]  (s_0 := 0), width 4d
    constructed_masked  [0, 0,  0, 0,      0.3, 0.4,  0.5, -0.2]   = [0, 0, s_t, s_{t−1}]    (the 1-layer setting)
    raw                 [0.3, 0.4]                                  = s_t, width d (use a learned embedding)

The first slot of the constructed formats is the empty "prediction" slot that the model writes its guess of
s_{t+1} into; a model reads its prediction from output coordinates 0 … d−1.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mesalab.config import config, require, require_choice, require_nonnegative, require_positive
from mesalab.tasks.base import Batch, sampler
from mesalab.tasks.orthogonal import haar_orthogonal


@config(dynamic=("noise", "s1_half_width"))
class DynamicsConfig:
    """d: state dimension; seq_len: T tokens; noise: σ of the transition noise; clip: states are clipped to ±clip."""

    d: int = 10
    seq_len: int = 50
    noise: float = 0.01
    s1_half_width: float = 1.0
    clip: float = 10.0
    token_format: str = "constructed"

    def __post_init__(self) -> None:
        require(self, "d", isinstance(self.d, int) and self.d > 0, "a positive integer")
        require(self, "seq_len", isinstance(self.seq_len, int) and self.seq_len >= 2, "an integer >= 2")
        require_nonnegative(self, "noise")
        require_positive(self, "s1_half_width", "clip")
        require_choice(self, "token_format", ("constructed", "constructed_masked", "raw"))

    @property
    def token_width(self) -> int:
        return self.d if self.token_format == "raw" else 4 * self.d

    @property
    def target_width(self) -> int:
        return self.d

    def sample(self, key: jax.Array, batch_size: int) -> Batch:
        return sample(self, key, batch_size)


@sampler
def sample_states(cfg: DynamicsConfig, key: jax.Array, batch_size: int) -> tuple[jax.Array, jax.Array]:
    """Draw (W* [B, d, d], states [B, T+1, d]); all noise is drawn in one call because CPU RNG is slow per step."""
    kw, ks, kn = jax.random.split(key, 3)
    d, t = cfg.d, cfg.seq_len
    w = haar_orthogonal(kw, d, (batch_size,))   # = jax.random.orthogonal to round-off, without LAPACK
    s1 = jax.random.uniform(ks, (batch_size, d), minval=-1.0, maxval=1.0) * cfg.s1_half_width
    eps = cfg.noise * jax.random.normal(kn, (t, batch_size, d))

    def step(s, e):
        nxt = jnp.clip(jnp.einsum("bij,bj->bi", w, s) + e, -cfg.clip, cfg.clip)
        return nxt, nxt

    _, rest = jax.lax.scan(step, s1, eps)
    states = jnp.concatenate([s1[:, None], jnp.swapaxes(rest, 0, 1)], axis=1)
    return w, states


def tokens(states: jax.Array, token_format: str) -> jax.Array:
    """Tokens for s_1 … s_T from states [B, T+1, d] (the last state is only a target)."""
    s = states[:, :-1]
    if token_format == "raw":
        return s
    prev = jnp.concatenate([jnp.zeros_like(s[:, :1]), s[:, :-1]], axis=1)
    empty = jnp.zeros_like(s)
    second = empty if token_format == "constructed_masked" else s
    return jnp.concatenate([empty, second, s, prev], axis=-1)


def sample(cfg: DynamicsConfig, key: jax.Array, batch_size: int) -> Batch:
    """Draw a batch of dynamics sequences: inputs s_1..s_T (formatted), targets s_2..s_{T+1}."""
    w, states = sample_states(cfg, key, batch_size)
    inputs = tokens(states, cfg.token_format)
    mask = jnp.ones(inputs.shape[:2], inputs.dtype)
    return Batch(inputs, states[:, 1:], mask, {"w": w, "states": states})


def probe_targets(states: jax.Array, lam: float = 1e-3, lags: tuple[int, ...] = (1, 2, 3)) -> dict[str, jax.Array]:
    """What probes of a dynamics model try to decode at each position t, each [B, T, d] (reference/mesa.md §2.8):

    s_t            the token's own state;
    s_next         s_{t+1}, the next-token target;
    preconditioned (S_{<t} S_{<t}ᵀ + λI)⁻¹ s_t with S_{<t} = [s_1 … s_{t−1}] (λ = 1e-3, the authors' probe_lambda):
                   the input a mesa-optimizer would precondition before its update;
    s_t-k          the state k tokens back (0 before the sequence starts), for copying ("mesa-dataset") probes.
    """
    from mesalab.models.mesa import mesa_solve  # the same ridge formula as the mesa layer

    current = states[:, :-1]
    if any(not 0 < k < current.shape[1] for k in lags):
        raise ValueError(f"lags = {lags} is not allowed; each lag must be in [1, {current.shape[1] - 1}] (T − 1)")
    prev = jnp.concatenate([jnp.zeros_like(current[:, :1]), current[:, :-1]], axis=1)
    pre = jax.vmap(lambda q, k: mesa_solve(q, k, k, lam)[1])(current, prev)
    out = {"s_t": current, "s_next": states[:, 1:], "preconditioned": pre}
    for k in lags:
        out[f"s_t-{k}"] = jnp.concatenate([jnp.zeros_like(current[:, :k]), current[:, :-k]], axis=1)
    return out
