"""Random orthogonal matrices from the Haar measure, drawn with plain array operations (no LAPACK call).

The draw is `jax.random.orthogonal`'s: Q from the QR decomposition of a standard Gaussian matrix Z, with each
column's sign chosen so that R has a positive diagonal (Mezzadri 2007, "How to generate random matrices from the
classical compact groups", §5), which makes Q Haar-distributed. The QR is computed here by Householder reflections
written with jnp, so Q equals `jax.random.orthogonal(key, n, shape)` to float round-off (tests/test_tasks.py).

Why not call `jax.random.orthogonal`: on CPU its QR is a jaxlib LAPACK kernel that splits a batch of matrices over
XLA's intra-op thread pool and blocks on it, which deadlocks with ensemble members on several host devices
(train/placement.py). Written with jnp, the dynamics task's members can be placed on every core: 1.45–1.67× the
model-steps/s of one device for benchmarks/engine.py workload (b) at E = 8 and 64 on 2 cores (2026-11-29).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def haar_orthogonal(key: jax.Array, n: int, shape: tuple[int, ...] = ()) -> jax.Array:
    """[*shape, n, n] orthogonal matrices: Z ~ N(0, 1) as in jax.random.orthogonal, then its sign-fixed QR factor Q."""
    z = jax.random.normal(key, (*shape, n, n))
    return sign_fixed_q(z)


def sign_fixed_q(z: jax.Array) -> jax.Array:
    """Q of Z = QR [..., n, n] with diag(R) > 0, by n − 1 Householder reflections (Golub & Van Loan, Alg. 5.2.1).

    Reflection k maps column k of the partly reduced matrix below row k onto ±‖x‖ e_k (the sign opposite to x_k, so
    no cancellation), applied to the rest of R and accumulated into Q; each reflector is a full-length vector with
    zeros above row k, so every step has the same shapes."""
    n = z.shape[-1]
    r, q = z, jnp.broadcast_to(jnp.eye(n, dtype=z.dtype), z.shape)
    rows = jnp.arange(n)
    for k in range(n - 1):
        x = jnp.where(rows >= k, r[..., :, k], 0.0)
        alpha = -jnp.where(x[..., k] >= 0, 1.0, -1.0) * jnp.linalg.norm(x, axis=-1)
        v = x - alpha[..., None] * (rows == k)
        v = v / jnp.linalg.norm(v, axis=-1, keepdims=True)
        r = r - 2.0 * v[..., :, None] * jnp.einsum("...i,...ij->...j", v, r)[..., None, :]
        q = q - 2.0 * jnp.einsum("...ij,...j->...i", q, v)[..., :, None] * v[..., None, :]
    signs = jnp.where(jnp.diagonal(r, axis1=-2, axis2=-1) >= 0, 1.0, -1.0)
    return q * signs[..., None, :]
