"""Few-shot regression with a model trained only to predict linear dynamics (von Oswald et al. 2023b §5;
reference/mesa.md §2.9): the learned in-context optimizer is reused for supervised tasks y = W x.

Raw sequences (each token a d-vector), for examples (x_i, y_i), W random orthogonal per sequence:

    plain   x_1, y_1, x_2, y_2, …             the prediction at x_i's token is read as ŷ_i
    eos     x_1, y_1, E, x_2, y_2, E, …       E a separator token
    prefix  P_1 … P_m, x_1, y_1, E, …         m prompt tokens before the eos format

A dynamics model sees every consecutive pair (s_{t−1}, s_t) as a training pair of its in-context least squares; in
the plain format half of them, (y_i, x_{i+1}), are noise. The separator and the prompt are tuned by gradient descent
with the model frozen, E and P initialised N(0, I) as the authors do, the loss counting only the x positions.
Sequences reach the model in its own token format (`tasks.dynamics.tokens`).

Deviation: the study tunes with Adam at lr 3e-2 (Config.fewshot_lr) for 1k steps; the authors use lr 1e-3
(reference/mesa.md §2.9) for a number of steps their config does not set. At 1e-3, 1k Adam steps move each
coordinate of an N(0, I) token by at most ≈ 1, so the higher rate stands in for the authors' longer tuning.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import optax

from mesalab.algorithms.least_squares import causal_ridge
from mesalab.models.run import predict
from mesalab.tasks.dynamics import tokens
from mesalab.tasks.orthogonal import haar_orthogonal


def sample_regression(key: jax.Array, batch: int, n: int, d: int, noise: float = 0.0,
                      x_half_width: float = 1.0) -> tuple[jax.Array, jax.Array]:
    """x [B, n, d] ~ U(±x_half_width), y = W x + noise with W random orthogonal per sequence."""
    kw, kx, kn = jax.random.split(key, 3)
    w = haar_orthogonal(kw, d, (batch,))
    x = jax.random.uniform(kx, (batch, n, d), minval=-x_half_width, maxval=x_half_width)
    return x, jnp.einsum("bij,bnj->bni", w, x) + noise * jax.random.normal(kn, (batch, n, d))


def sequence(x: jax.Array, y: jax.Array, eos: jax.Array | None = None,
             prefix: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
    """The raw sequence [B, L, d] and the positions [n] of the x tokens (where ŷ is read)."""
    b, n, d = x.shape
    parts = [x, y] if eos is None else [x, y, jnp.broadcast_to(eos, (b, n, d))]
    seq = jnp.stack(parts, axis=2).reshape(b, n * len(parts), d)
    starts = jnp.arange(n) * len(parts)
    if prefix is not None:
        seq = jnp.concatenate([jnp.broadcast_to(prefix, (b, *prefix.shape)), seq], axis=1)
        starts = starts + prefix.shape[0]
    return seq, starts


def few_shot_predictions(model: Any, token_format: str, x: jax.Array, y: jax.Array, eos=None, prefix=None) -> jax.Array:
    """ŷ_i [B, n, d]: the model's next-token prediction at each x_i token."""
    seq, starts = sequence(x, y, eos, prefix)
    states = jnp.concatenate([seq, jnp.zeros_like(seq[:, :1])], axis=1)  # a last "state" that is only a target
    return predict(model, tokens(states, token_format))[:, starts]


def few_shot_curve(pred: jax.Array, y: jax.Array) -> jax.Array:
    """½‖ŷ_i − y_i‖² per example index i (examples seen before it: i − 1), averaged over sequences."""
    return jnp.mean(0.5 * jnp.sum((pred - y) ** 2, -1), 0)


def least_squares_curve(x: jax.Array, y: jax.Array, lam: float = 1e-3) -> jax.Array:
    """The same curve for ridge regression on the examples before each x_i (λ = 1e-3, the authors' LSQ)."""
    zero = jnp.zeros_like(x[:, :1])
    keys = jnp.concatenate([zero, x[:, :-1]], axis=1)  # example i sees pairs 1 … i−1
    values = jnp.concatenate([zero, y[:, :-1]], axis=1)
    return few_shot_curve(causal_ridge(keys, values, x, lam), y)


def initial_tokens(key: jax.Array, d: int, prefix_len: int) -> dict[str, jax.Array]:
    """The N(0, I) separator and prompt that `tune_tokens(key=key)` starts from (untuned: the format's control)."""
    ke, kp = jax.random.split(jax.random.split(key)[0])
    return {"eos": jax.random.normal(ke, (d,)), "prefix": jax.random.normal(kp, (prefix_len, d))}


def tune_tokens(model: Any, token_format: str, d: int, n: int, *, prefix_len: int, steps: int, batch: int,
                lr: float, key: jax.Array) -> dict[str, jax.Array]:
    """Adam on the separator E (and prefix_len prompt tokens) with the model frozen; returns {"eos", "prefix"}."""
    params = initial_tokens(key, d, prefix_len)
    return _tune(params, model, jax.random.split(jax.random.split(key)[1], steps), token_format, n, d, batch, lr)


@eqx.filter_jit
def _tune(params, model, keys, token_format: str, n: int, d: int, batch: int, lr: float):
    # Module level and jitted once per set of static arguments (format, sizes, rate), not once per call.
    frozen = jax.lax.stop_gradient(model)
    opt = optax.adam(lr)
    use_prefix = params["prefix"].shape[0] > 0

    def loss(p, k):
        x, y = sample_regression(k, batch, n, d)
        pred = few_shot_predictions(frozen, token_format, x, y, p["eos"], p["prefix"] if use_prefix else None)
        return jnp.mean(few_shot_curve(pred, y))

    def step(carry, k):
        p, state = carry
        grads = jax.grad(loss)(p, k)
        updates, state = opt.update(grads, state, p)
        return (optax.apply_updates(p, updates), state), None

    (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), keys)
    return params
