"""The three-logit phenomenological model of induction-head formation (seed 003: Reddy's blog post on his 2024 paper;
reference/induction.md §1.6), its gradient flow, and a generic measure of how abrupt a learning curve is.

A sequence holds N item-label pairs and a target item whose label is one of them; there are L ≥ N labels in all.
An induction head solves it with three nested softmaxes, each reduced to one logit:

- layer 1: a label token attends to the item before it with logit β and to its other causal tokens with logit 0.
  The label of pair i sees 2i − 1 rivals besides its item, N on average over the pairs, so the fraction of the item
  copied into the label's buffer is y = e^β / (e^β + N) = σ(β − log N). At the origin every attention is uniform,
  as in a network at initialisation. Seed 003's "equation 2" is missing from the text; this is this module's
  reconstruction. A sigmoid against one rival, y = σ(β), is the same model started from β = log N
  (`gradient_flow(start=(log N, 0, 0))`): the label then already puts half its attention on its item;
- layer 2: the target attends to the buffer that holds its copy with logit αy, against 2N tokens with logit 0:
  z = e^{αy} / (e^{αy} + 2N) on the matching label, z′ = 1 / (e^{αy} + 2N) on each other token;
- the classifier: regression vectors overlap their own label by ξ more than other labels, so the correct label's
  logit exceeds another context label's by u = ξ(z − z′) and an absent label's by u′ = ξz.

Cross-entropy gives ℒ = log(1 + (N − 1)e^{−u} + (L − N)e^{−u′}); the probability of the correct label, e^{−ℒ},
serves as the accuracy proxy. At the origin u = u′ = 0, so ℒ = log L. There ∂ℒ/∂α = ∂ℒ/∂β = 0 (both are scaled
by ξ) but ∂ℒ/∂ξ = −(L − N) / (L(2N + 1)). Putting weight on the labels present in the context is a weak intrinsic
curriculum. It moves ξ first, and ξ unlocks α and β. With L = N that gradient vanishes too and the origin is a
saddle that gradient flow never leaves.

Measured from the origin (lr = 0.05, float64): N = 8, L = 32 plateaus for t ≈ 92, then falls with a cliff width
of ≈ 7.6, a ratio of 0.083 (the 1/5 rule in `abruptness` calls it abrupt). Larger N gives sharper cliffs (N = 4:
0.41, N = 16: 0.017). The σ(β) variant is less abrupt (N = 8: plateau 40, ratio 0.21): starting with half the
label's attention on its item skips much of the slow phase. During the plateau, e^{−ℒ} stays near 1/L (1.10/L
halfway) and passes 1/N only inside the cliff. This proxy does not show the seed's "1/L → 1/N" slow phase. That claim is
about argmax accuracy over noisy sequences. Here, with ξ > 0 and α = 0, the N context labels tie at the top, so
picking among them at random scores exactly 1/N. The probability mass on context labels
(`context_probability`) also stays near N/L during the plateau (1.09 N/L halfway). The logits move in order:
halfway through the plateau ξ ≈ 2.05, α ≈ 0.29 and β ≈ 0.04.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np


class Params(NamedTuple):
    """β: layer-1 previous-token logit; α: layer-2 match strength; ξ: classifier label overlap."""

    beta: jax.Array | float
    alpha: jax.Array | float
    xi: jax.Array | float


def attention(params, n) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(y, z, z′): the layer-1 copy fraction, and the target's layer-2 attention on its matching label and on each
    of the other 2N tokens. params is a Params or a length-3 array (β, α, ξ); n the number of item-label pairs."""
    beta, alpha, _ = params
    y = jax.nn.sigmoid(beta - jnp.log(n))  # e^β / (e^β + N): uniform over the label's causal window at β = 0
    # e^{αy}/(e^{αy} + 2N) written as a sigmoid so a large αy cannot overflow.
    z = jax.nn.sigmoid(alpha * y - jnp.log(2.0 * n))
    return y, z, (1.0 - z) / (2.0 * n)


def margins(params, n) -> tuple[jax.Array, jax.Array]:
    """(u, u′): the correct label's logit minus that of another context label, and minus that of an absent one."""
    _, z, z_other = attention(params, n)
    xi = params[2]
    return xi * (z - z_other), xi * z


def _log_terms(params, n, n_labels) -> tuple[jax.Array, jax.Array]:
    """(log-terms, weights) of ℒ's partition sum 1 + (N−1)e^{−u} + (L−N)e^{−u′}, for logsumexp."""
    u, u_absent = margins(params, n)
    a = jnp.stack([jnp.zeros_like(u), -u, -u_absent])
    # Weights rather than log(L − N) inside the exponent: L = N makes the last weight 0, and log 0 would put a
    # −inf into the gradient's arithmetic.
    b = jnp.stack([jnp.ones_like(u), (n - 1.0) * jnp.ones_like(u), (n_labels - n) * jnp.ones_like(u)])
    return a, b


@jax.jit
def loss(params, n, n_labels) -> jax.Array:
    """ℒ(β, α, ξ) = log(1 + (N − 1)e^{−u} + (L − N)e^{−u′}) for n = N item-label pairs and n_labels = L labels.
    params is a Params or a length-3 array (β, α, ξ); n and n_labels may be traced (a sweep compiles once)."""
    a, b = _log_terms(params, n, n_labels)
    return jax.nn.logsumexp(a, b=b)


@jax.jit
def correct_probability(params, n, n_labels) -> jax.Array:
    """e^{−ℒ}: the probability of the correct label, the model's accuracy proxy (1/L at the origin)."""
    return jnp.exp(-loss(params, n, n_labels))


@jax.jit
def context_probability(params, n, n_labels) -> jax.Array:
    """Probability mass on the N labels present in the context (N/L at the origin, → 1 as ξ grows)."""
    a, b = _log_terms(params, n, n_labels)
    return jnp.exp(jax.nn.logsumexp(a[:2], b=b[:2]) - jax.nn.logsumexp(a, b=b))


@jax.jit
def gradient(params, n, n_labels):
    """∇ℒ with respect to params, in the same structure (Params or a length-3 array)."""
    return jax.grad(loss)(params, n, n_labels)


def _floats(x) -> jax.Array:
    # jax's default float: float64 under x64 mode, float32 otherwise (asking for float64 there only warns).
    return jnp.asarray(x, dtype=jnp.result_type(float))


class Trajectory(NamedTuple):
    """A gradient-flow path, one row per record (the start included): step [R] ints, time = step · lr [R],
    params [R, 3] as (β, α, ξ), loss, accuracy (= e^{−ℒ}) and context (mass on context labels), all [R]."""

    step: np.ndarray
    time: np.ndarray
    params: np.ndarray
    loss: np.ndarray
    accuracy: np.ndarray
    context: np.ndarray


@partial(jax.jit, static_argnames=("records", "every"))
def _flow(theta0: jax.Array, n: jax.Array, n_labels: jax.Array, lr: jax.Array, records: int, every: int):
    # n, n_labels and lr are traced, so a sweep over (N, L, lr) compiles once per (records, every, dtype).
    def step(theta, _):
        return theta - lr * gradient(theta, n, n_labels), None

    def record(theta, _):
        theta, _ = jax.lax.scan(step, theta, None, length=every)
        return theta, theta

    _, path = jax.lax.scan(record, theta0, None, length=records)
    path = jnp.concatenate([theta0[None], path])
    curves = [jax.vmap(f, (0, None, None))(path, n, n_labels) for f in (loss, correct_probability, context_probability)]
    return path, *curves


def _check_sizes(n: int, n_labels: int) -> None:
    if not 2 <= n <= n_labels:
        raise ValueError(f"need L ≥ N ≥ 2, got N = {n}, L = {n_labels}")


def gradient_flow(
    n: int, n_labels: int, *, lr: float = 0.05, steps: int = 4000, start: Sequence[float] = (0.0, 0.0, 0.0),
    record_every: int = 10,
) -> Trajectory:
    """Integrate dθ/dt = −∇ℒ(θ) with explicit Euler steps of size lr (= gradient descent at learning rate lr)
    from start = (β, α, ξ), recording every record_every steps. Float64 when jax's x64 mode is on.

    lr ≤ 0.05 tracks the continuous flow (see test_flow_in_float32_matches for the precision it keeps). Steps must be a multiple of record_every."""
    _check_sizes(n, n_labels)
    if steps % record_every:
        raise ValueError(f"steps ({steps}) must be a multiple of record_every ({record_every})")
    theta0 = _floats(start)
    if theta0.shape != (3,):
        raise ValueError(f"start must be (beta, alpha, xi), got shape {theta0.shape}")
    path, ls, acc, ctx = _flow(theta0, _floats(n), _floats(n_labels), _floats(lr), steps // record_every, record_every)
    step = np.arange(steps // record_every + 1) * record_every
    return Trajectory(step, step * lr, np.asarray(path), np.asarray(ls), np.asarray(acc), np.asarray(ctx))


@jax.jit
def _grid(n, n_labels, alphas, xis, beta):
    at = lambda a, x: loss(jnp.stack([beta, a, x]), n, n_labels)
    return jax.vmap(jax.vmap(at, (None, 0)), (0, None))(alphas, xis)


def landscape(n: int, n_labels: int, alphas, xis, beta: float = 0.0) -> np.ndarray:
    """ℒ on the (α, ξ) grid at fixed β: an array [len(alphas), len(xis)], rows α, so
    `plt.contourf(xis, alphas, landscape(...))` draws it with ξ on the x axis."""
    _check_sizes(n, n_labels)
    return np.asarray(_grid(_floats(n), _floats(n_labels), _floats(alphas), _floats(xis), _floats(beta)))


ABRUPT_RATIO = 5.0  # a cliff counts as abrupt when it is narrower than a fifth of the plateau before it


class Transition(NamedTuple):
    """Where a learning curve makes its change, in the units of its steps (see `abruptness`). With no change in
    the expected direction every time is nan and abrupt is False."""

    plateau: float  # t10 − first step
    width: float  # t90 − t10: the cliff
    fastest: float  # the midpoint of the sample interval where the curve moves fastest in the expected direction
    t10: float
    t90: float
    abrupt: bool  # width < plateau / 5

    @property
    def ratio(self) -> float:
        """width / plateau: below 1/5 is abrupt."""
        return self.width / self.plateau if self.plateau != 0 else float("inf")  # nan when there is no transition


def _first_crossing(steps: np.ndarray, progress: np.ndarray, level: float) -> float:
    i = int(np.argmax(progress >= level))  # progress ends at 1, so some sample reaches every level ≤ 1
    if i == 0:
        return float(steps[0])
    # Interpolate linearly between samples so coarse recording does not quantise the times.
    p0, p1 = progress[i - 1], progress[i]
    return float(steps[i - 1] + (level - p0) / (p1 - p0) * (steps[i] - steps[i - 1]))


def abruptness(steps, values, rising: bool, min_change: float = 0.0) -> Transition:
    """Plateau length and cliff width of a monotone-ish curve: accuracy rising (rising=True) or loss falling.

    The total change runs from the first value to the last. progress(t) = (value(t) − first) / (last − first).
    t10 and t90 are the first times progress reaches 0.1 and 0.9, interpolated linearly between samples. Then
    plateau = t10 − steps[0], width = t90 − t10, and the curve is abrupt when width < plateau / 5. fastest is
    where the finite-difference slope is steepest in the expected direction.

    If the curve does not move more than min_change in the expected direction, it has no transition (all nan,
    abrupt False). Smooth noisy curves before calling: noise bigger than 10% of the total change makes the
    first crossing of 0.1 early."""
    steps, values = np.asarray(steps, dtype=float), np.asarray(values, dtype=float)
    if steps.ndim != 1 or steps.shape != values.shape or len(steps) < 2:
        raise ValueError(f"need matching 1-d steps and values of length ≥ 2, got {steps.shape} and {values.shape}")
    sign = 1.0 if rising else -1.0
    change = sign * (values[-1] - values[0])
    if not change > min_change:
        nan = float("nan")
        return Transition(nan, nan, nan, nan, nan, False)
    progress = sign * (values - values[0]) / change
    t10, t90 = _first_crossing(steps, progress, 0.1), _first_crossing(steps, progress, 0.9)
    slope = sign * np.diff(values) / np.diff(steps)
    i = int(np.argmax(slope))
    plateau, width = t10 - float(steps[0]), t90 - t10
    fastest = float((steps[i] + steps[i + 1]) / 2)
    return Transition(plateau, width, fastest, t10, t90, bool(width < plateau / ABRUPT_RATIO))
