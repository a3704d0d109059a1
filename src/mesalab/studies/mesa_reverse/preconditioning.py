"""Preconditioning by depth (reference/mesa.md §2.11): the term-by-term Neumann LSA stack against repeated squaring
(Newton–Schulz), both hand-built (constructions/neumann.py), on the task's own Gram matrices."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from mesalab.constructions.neumann import (
    neumann_lsa, neumann_readout, newton_lsa, newton_readout, preconditioning_tokens,
)
from mesalab.studies.mesa_reverse.config import TEST_SEED, Config
from mesalab.studies.mesa_reverse.deep import states_for


def run_neumann(cfg: Config) -> dict[str, Any]:
    """Relative error of both constructions against A⁻¹ s on the task's own Gram matrices: at prefix length t,
    A = λI + S_{<t}S_{<t}ᵀ and s = s_t, for `neumann_systems` sequences. One construction per depth serves all of
    them, with c = the largest λ_max among them (a fixed network cannot adapt c per sequence)."""
    states = np.asarray(states_for(cfg, TEST_SEED + 3, cfg.neumann_systems))
    out: dict[str, Any] = {"depths": list(cfg.neumann_depths), "positions": list(cfg.neumann_positions),
                           "neumann": [], "newton": [], "kappa": []}
    lam = cfg.neumann_lambda
    for pos in cfg.neumann_positions:
        data, query = states[:, : pos - 1], states[:, pos - 1]  # S_{<t} and s_t per system
        a = lam * np.eye(cfg.d) + np.einsum("bni,bnj->bij", data, data)
        eig = np.linalg.eigvalsh(a)
        c = float(eig[:, -1].max())
        exact = np.linalg.solve(a, query[..., None])[..., 0]

        def errors(model, readout, w_scale):
            toks = jax.vmap(lambda s, q: preconditioning_tokens(s, q, lam, w_scale))(data, query)
            y = np.asarray(readout(jax.vmap(model)(toks)[:, -1]), np.float64)
            return float(np.median(np.linalg.norm(y - exact, axis=-1) / np.linalg.norm(exact, axis=-1)))

        out["neumann"].append([errors(neumann_lsa(cfg.d, k, c), lambda o, k=k: neumann_readout(o, k, c), 0.0)
                               for k in cfg.neumann_depths])
        out["newton"].append([errors(newton_lsa(cfg.d, k), lambda o, k=k: newton_readout(o, k), 1.0 / c)
                              for k in cfg.neumann_depths])
        out["kappa"].append(float(np.median(eig[:, -1] / eig[:, 0])))
    return out
