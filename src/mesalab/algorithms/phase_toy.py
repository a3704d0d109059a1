"""The toy model of the phase change in Singh et al. 2024 (Fig. 5a; reference/induction.md §3.3, after the authors'
`simple_model_solver.py`): three vectors a, b, c ∈ R^n interact multiplicatively,

    L(a, b, c) = ½ · mean_{ijk} (a*_i b*_j c*_k − a_i b_j c_k)²,

trained by plain gradient descent from a random start. Because each vector's gradient is scaled by the others'
alignment with their targets, the loss sits on a plateau and then drops abruptly; clamping coordinates of b and/or c
to their true values at every step (the toy analogue of clamping a subcircuit) shortens or removes the plateau.

Progress measures, as the authors': 1 − cos²(a, a*), and the loss with b, c set to ± their true values (the better
sign; only a⊗b⊗c is identified, so this need not reach 0 — the authors left it out of the paper for that reason). The true and initial vectors are drawn as the authors do (six normal draws from split(PRNGKey(seed), 6)),
so the default dim = 20, seed = 1, lr = 1, 1,000 steps is their Fig. 5a setting.
"""

from __future__ import annotations

from typing import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from mesalab.config import ConfigError

VECTORS = ("a", "b", "c")


def rank1_setup(dim: int = 20, seed: int = 1) -> tuple[dict[str, jax.Array], dict[str, jax.Array]]:
    """(true, init): the target vectors a*, b*, c* and the starting a, b, c, each [dim] ~ N(0, I)."""
    keys = jax.random.split(jax.random.PRNGKey(seed), 6)
    true = {v: jax.random.normal(keys[i], (dim,)) for i, v in enumerate(VECTORS)}
    init = {v: jax.random.normal(keys[3 + i], (dim,)) for i, v in enumerate(VECTORS)}
    return true, init


def rank1_loss(params: Mapping[str, jax.Array], true: Mapping[str, jax.Array]) -> jax.Array:
    """½·mean((a*⊗b*⊗c* − a⊗b⊗c)²)."""
    outer = lambda p: jnp.einsum("i,j,k->ijk", p["a"], p["b"], p["c"])  # noqa: E731
    return 0.5 * jnp.mean((outer(true) - outer(params)) ** 2)


def clamp_coordinates(params: Mapping[str, jax.Array], true: Mapping[str, jax.Array],
                      clamp: Mapping[str, int]) -> dict[str, jax.Array]:
    """The first clamp[v] coordinates of each named vector set to their true values."""
    out = dict(params)
    for v, n in clamp.items():
        out[v] = jnp.where(jnp.arange(params[v].shape[0]) < n, true[v], params[v])
    return out


def train_rank1(dim: int = 20, seed: int = 1, clamp: Mapping[str, int] | None = None, lr: float = 1.0,
                steps: int = 1000) -> dict[str, np.ndarray]:
    """Plain GD for `steps` steps, clamping after the start and after every step (as the authors' `train`).

    Returns per step (before that step's update): "loss", "a_misalignment" = 1 − cos²(a, a*), and "a_progress" =
    the loss with b, c = ±(b*, c*); plus "final" = the parameters after the last step.
    """
    clamp = dict(clamp or {})
    for v, n in clamp.items():
        if v not in VECTORS or not isinstance(n, int) or not 0 <= n <= dim:
            raise ConfigError(f"clamp = {clamp!r} is not allowed; expected {{vector: count}} with vectors among "
                              f"{VECTORS} and counts in [0, dim = {dim}]")
    true, init = rank1_setup(dim, seed)
    unit_a = true["a"] / jnp.linalg.norm(true["a"])
    value_and_grad = jax.value_and_grad(rank1_loss)

    def progress(p):
        with_true = lambda s: rank1_loss({"a": p["a"], "b": s * true["b"], "c": s * true["c"]}, true)  # noqa: E731
        return jnp.minimum(with_true(1.0), with_true(-1.0))

    def step(p, _):
        loss, g = value_and_grad(p, true)
        a = p["a"] / jnp.linalg.norm(p["a"])
        record = {"loss": loss, "a_misalignment": 1.0 - (a @ unit_a) ** 2, "a_progress": progress(p)}
        p = clamp_coordinates(jax.tree_util.tree_map(lambda x, d: x - lr * d, p, g), true, clamp)
        return p, record

    final, records = jax.jit(lambda p: jax.lax.scan(step, p, None, length=steps))(clamp_coordinates(init, true, clamp))
    out = {k: np.asarray(v) for k, v in records.items()}
    out["final"] = {k: np.asarray(v) for k, v in final.items()}
    return out


def plateau_length(loss: np.ndarray, fraction: float = 0.1) -> int:
    """Steps until the loss first falls below `fraction` of its starting value (len(loss) if it never does)."""
    below = np.nonzero(np.asarray(loss) < fraction * float(loss[0]))[0]
    return int(below[0]) if below.size else len(loss)
