"""Preconditioning constructions: LSA stacks equal to truncated Neumann series and to Newton–Schulz squaring."""

import jax
import numpy as np
import pytest

from mesalab.algorithms.inverse import neumann_inverse, newton_schulz_inverse
from mesalab.constructions.neumann import (
    neumann_lsa, neumann_readout, newton_lsa, newton_readout, preconditioning_tokens,
)
from mesalab.tasks import DynamicsConfig
from mesalab.tasks.dynamics import sample_states


def problem(d, n, lam, seed):
    rng = np.random.default_rng(seed)
    s, q = (rng.normal(size=(n, d)) / np.sqrt(d)).astype(np.float32), rng.normal(size=d).astype(np.float32)
    a = lam * np.eye(d, dtype=np.float32) + s.T @ s
    return s, q, a


@pytest.mark.parametrize("d, n, layers", [(2, 3, 1), (3, 6, 4), (5, 12, 7)])
def test_constructions_equal_their_algorithms(d, n, layers):
    s, q, a = problem(d, n, 0.1, d)
    c = float(np.linalg.eigvalsh(a)[-1])
    y = neumann_readout(neumann_lsa(d, layers, c)(preconditioning_tokens(s, q, 0.1, 0.0))[-1], layers, c)
    want = np.asarray(neumann_inverse(a, layers, c)) @ q
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())
    alpha = 1.0 / c
    y = newton_readout(newton_lsa(d, layers)(preconditioning_tokens(s, q, 0.1, alpha))[-1], layers)
    want = np.asarray(newton_schulz_inverse(a, layers, alpha)) @ q
    np.testing.assert_allclose(y, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())


def test_squaring_needs_far_fewer_layers_on_dynamics_gram_matrices():
    # d = 10 with 11 data states and λ = 1e-3: condition number ≈ 60, the regime of early positions.
    states = np.asarray(sample_states(DynamicsConfig(d=10, seq_len=12), jax.random.PRNGKey(0), 1)[1][0])
    s, q, lam = states[:-1], states[-1], 1e-3
    a = lam * np.eye(10, dtype=np.float32) + s.T @ s
    c = float(np.linalg.eigvalsh(a)[-1])
    exact = np.linalg.solve(a, q)

    def err(y):
        return float(np.linalg.norm(y - exact) / np.linalg.norm(exact))

    newton = [err(newton_readout(newton_lsa(10, k)(preconditioning_tokens(s, q, lam, 1 / c))[-1], k)) for k in (4, 8, 12)]
    neumann = [err(neumann_readout(neumann_lsa(10, k, c)(preconditioning_tokens(s, q, lam, 0.0))[-1], k, c))
               for k in (4, 8, 12)]
    assert newton[-1] < 1e-4 and neumann[-1] > 0.5  # 12 squaring layers solve it; 12 series terms are far off
    assert all(b < a for a, b in zip(neumann, neumann[1:]))
