"""Batched running with caches and interventions (the TransformerLens `run_with_cache` of mesalab)."""

from __future__ import annotations

from typing import Iterable, Mapping

import equinox as eqx
import jax

from mesalab.models.hooks import Intervention


def run(
    model, inputs: jax.Array, *, sites: Iterable[str] | str | None = None,
    interventions: Mapping[str, Intervention] | None = None,
):
    """Run `model` on a batch [B, pos, d_in].

    Returns the output [B, pos, d_out], or (output, cache) when `sites` is given; cache values have a leading batch
    axis. Interventions with `batched=True` (patches from another run) are mapped over the batch with the inputs.
    """
    if jax.numpy.ndim(inputs) != 3:
        raise ValueError(f"mesalab.models.run expects a batch [B, pos, d_in], got shape {tuple(jax.numpy.shape(inputs))}; "
                         "call the model directly for one sequence")
    ivs = dict(interventions or {})
    shared = {k: v for k, v in ivs.items() if not v.batched}
    # Only the values of batched interventions are mapped; their head and position indices are shared.
    values = {k: v.value for k, v in ivs.items() if v.batched}

    def one(x, vals):
        merged = {**shared, **{k: eqx.tree_at(lambda i: i.value, ivs[k], v) for k, v in vals.items()}}
        if sites is None:
            return model(x, interventions=merged)
        return model.run_with_cache(x, sites, interventions=merged)

    return jax.vmap(one)(inputs, values)


def predict(model, inputs: jax.Array, *, interventions: Mapping[str, Intervention] | None = None) -> jax.Array:
    """Batched read-out predictions [B, pos, readout_size]."""
    return model.readout(run(model, inputs, interventions=interventions))
