"""Interventions whose value is computed: in the same pass (`Computed`), by a first pass (`FromPass`: two-pass
clamps, grafts), or from the batch (`FromBatch`); and `Chain` / `merge` for several on one site.

See `models.hooks` (which re-exports all of these) for what each does; `models.clamps` builds Singh et al. 2024's
clamp catalogue from them (reference/induction.md §3.3).
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import equinox as eqx
import jax
import jax.numpy as jnp

from mesalab.models.hooks import Intervention, _check_broadcast, restrict


class Computed(eqx.Module):
    """Set the activation to fn(activation, env, value), computed in the same pass (see the module docstring).

    fn:    a static function; `value` its array argument (a strength, a temperature), traced like any leaf.
    heads, positions: restrict the change as for `Intervention`.
    """

    fn: Callable[..., jax.Array] = eqx.field(static=True)
    value: Any = None
    heads: jax.Array | None = None
    positions: jax.Array | None = None
    kind: str = eqx.field(static=True, default="computed")
    batched: bool = eqx.field(static=True, default=False)

    def apply(self, x: jax.Array, site: str, env: Mapping[str, jax.Array] | None = None) -> jax.Array:
        new = self.fn(x, env or {}, self.value)
        _check_broadcast(new, x, site)
        return restrict(x, jnp.broadcast_to(new, x.shape).astype(x.dtype), site, self.heads, self.positions)


class FromPass(eqx.Module):
    """Set the activation to site `source` of a first forward pass (see the module docstring).

    first_pass: {site: intervention} for the first pass ({}: the clean pass); it may hold FromPass itself.
    model:      the model of the first pass (None: the model being run; another one grafts its activations).
    fn:         optional static fn(source_value, tokens, value) -> the new value (identity when None).
    The first pass runs inside the same forward, so gradients flow through it (as in Singh et al.'s two-pass
    `call_with_all_aux`, reference/induction.md §3.3); wrap the result in `jax.lax.stop_gradient` through fn if
    a clamp must be constant.
    """

    source: str = eqx.field(static=True)
    value: Any = None
    first_pass: dict = eqx.field(default_factory=dict)
    model: Any = None
    heads: jax.Array | None = None
    positions: jax.Array | None = None
    fn: Callable[..., jax.Array] | None = eqx.field(static=True, default=None)
    kind: str = eqx.field(static=True, default="from_pass")
    batched: bool = eqx.field(static=True, default=False)


class FromBatch(eqx.Module):
    """A per-example value fn(batch, value) -> [B, ...] computed from the Batch (e.g. its info); see
    `resolve_batch`. heads, positions restrict it as for `Intervention`."""

    fn: Callable[..., jax.Array] = eqx.field(static=True)
    value: Any = None
    heads: jax.Array | None = None
    positions: jax.Array | None = None
    kind: str = eqx.field(static=True, default="from_batch")
    batched: bool = eqx.field(static=True, default=False)


class Chain(eqx.Module):
    """Several interventions on one site, applied in order (later ones see, and may override, earlier ones): e.g.
    values preserved at their clean-pass values, then some heads' values ablated. Build with `merge`. Batched
    members (patches, resolved FromBatch) are not supported inside a chain."""

    items: tuple
    kind: str = eqx.field(static=True, default="chain")
    batched: bool = eqx.field(static=True, default=False)

    @property
    def value(self) -> None:
        return None

    def apply(self, x: jax.Array, site: str, env: Mapping[str, jax.Array] | None = None) -> jax.Array:
        for iv in self.items:
            x = iv.apply(x, site, env)
        return x


def merge(*groups: Mapping[str, Any]) -> dict[str, Any]:
    """Merge intervention dicts; where several act on one site they are chained in the order given."""
    out: dict[str, Any] = {}
    for group in groups:
        for site, iv in group.items():
            if site not in out:
                out[site] = iv
            else:
                prev = out[site].items if isinstance(out[site], Chain) else (out[site],)
                out[site] = Chain((*prev, *(iv.items if isinstance(iv, Chain) else (iv,))))
    return out


def resolve_batch(interventions: Mapping[str, Any] | None, batch: Any) -> dict[str, Any]:
    """Turn every FromBatch into a batched replacement for this batch; the others pass through."""
    for site, iv in dict(interventions or {}).items():
        if isinstance(iv, Chain) and any(isinstance(i, FromBatch) for i in iv.items):
            raise ValueError(f"intervention on {site!r}: a FromBatch cannot be chained with others; "
                             "give it a site of its own")
    return {site: Intervention(jnp.asarray(iv.fn(batch, iv.value)), iv.heads, iv.positions, "set", True)
            if isinstance(iv, FromBatch) else iv for site, iv in dict(interventions or {}).items()}


class batch_resolved:  # noqa: N801 - used like a function
    """loss_fn(model, batch, interventions) with FromBatch interventions resolved on each batch first: pass
    `Trainer(..., loss_fn=batch_resolved(default_loss(task)), interventions={...})`. `func` names the wrapped loss
    (the engine's checkpoint fingerprint reads it)."""

    def __init__(self, loss_fn: Callable[..., Any]):
        self.func = loss_fn

    def __call__(self, model, batch, interventions=None):
        return self.func(model, batch, resolve_batch(interventions, batch))


def resolve_passes(model: Any, tokens: jax.Array, interventions: Mapping[str, Any] | None) -> dict[str, Any]:
    """Replace every FromPass by a fixed Intervention holding its first-pass value for this sequence.

    FromPass interventions without a first-pass model or interventions share one clean pass; each other one runs
    its own (its first pass resolves its own FromPass recursively). `model` needs `run_with_cache`.
    """
    ivs = dict(interventions or {})
    # Every FromPass, addressed as (site, index in its chain or None).
    found = {(site, None): iv for site, iv in ivs.items() if isinstance(iv, FromPass)}
    found.update({(site, i): item for site, iv in ivs.items() if isinstance(iv, Chain)
                  for i, item in enumerate(iv.items) if isinstance(item, FromPass)})
    if not found:
        return ivs
    groups: dict[Any, list[tuple[str, int | None]]] = {}
    for addr, iv in found.items():
        leafless = not jax.tree_util.tree_leaves((iv.model, iv.first_pass))
        key = ("clean", jax.tree_util.tree_structure((iv.model, iv.first_pass))) if leafless else ("own", addr)
        groups.setdefault(key, []).append(addr)
    fixed: dict[tuple[str, int | None], Intervention] = {}
    for addrs in groups.values():
        first: FromPass = found[addrs[0]]
        source_model = first.model if first.model is not None else model
        sources = list(dict.fromkeys(found[a].source for a in addrs))
        _, cache = source_model.run_with_cache(tokens, sources, interventions=first.first_pass)
        for a in addrs:
            iv = found[a]
            val = cache[iv.source] if iv.fn is None else iv.fn(cache[iv.source], tokens, iv.value)
            fixed[a] = Intervention(val, iv.heads, iv.positions, "set", False)
    for (site, i), iv in fixed.items():
        if i is None:
            ivs[site] = iv
        else:
            ivs[site] = Chain(tuple(fixed.get((site, j), item) for j, item in enumerate(ivs[site].items)))
    return ivs
