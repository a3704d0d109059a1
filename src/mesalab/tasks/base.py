"""What every task sampler returns."""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax


class Batch(eqx.Module):
    """A batch of sequences.

    inputs:    [B, T, d_in]  tokens fed to the model.
    targets:   [B, T, d_out] what the read-out should predict at each position.
    loss_mask: [B, T]        1 where a position counts in the loss, 0 elsewhere.
    info:      dict of extras (hidden task parameters such as the regression weights), each with leading axis B.
    """

    inputs: jax.Array
    targets: jax.Array
    loss_mask: jax.Array
    info: dict[str, Any]

    def __getitem__(self, idx: Any) -> "Batch":
        """Select sequences: `batch[:8]`."""
        return jax.tree_util.tree_map(lambda a: a[idx], self)
