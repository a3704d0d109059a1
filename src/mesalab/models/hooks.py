"""Named sites, activation caches and interventions — as data, not mutable hooks.

Every intermediate of a forward pass is a *site* with a TransformerLens name (`blocks.0.attn.hook_pattern`). A
forward pass takes an optional dict `{site: Intervention}` and a tuple of site names (or glob patterns) to cache,
and returns the output and a dict `{site: activation}`. Interventions are Equinox modules: their kind is static
(one compile per kind) and their values — clamp targets, steering vectors, patched activations, head and position
indices — are ordinary array leaves. So an intervention works under `jit`, `vmap`, `grad` and inside the training
`scan`: training with an attention pattern clamped throughout is a matter of passing the intervention to the loss.

Shapes are per example (unbatched), as every `__call__` here:

    hook_embed, hook_pos_embed, blocks.{l}.hook_resid_pre / hook_attn_out / hook_resid_mid / hook_mlp_out /
    hook_resid_post                                                  [pos, d_model]
    blocks.{l}.attn.hook_q / hook_k / hook_v / hook_z                [pos, head, d_head]
    blocks.{l}.attn.hook_q_precond (mesa layers only)                [pos, head, d_head]
    blocks.{l}.attn.hook_attn_scores / hook_pattern                  [head, query_pos, key_pos]
    blocks.{l}.mlp.hook_pre / hook_post                              [pos, d_mlp]
    classifier.{i}.hook_post (TransformerConfig.classifier_layers)    [pos, d_model]
    input_mlp.hook_pre / hook_post (TransformerConfig.d_input_mlp)    [pos, d_input_mlp]; hook_embed follows it

With `pos_embedding="concat_sinusoidal"`, `hook_embed` is [pos, d_model − pos_dim] and `hook_pos_embed`
[pos, pos_dim]: the residual stream is their concatenation.
`hook_resid_mid` exists in attention-only models too (it then equals `hook_resid_post` before clipping).
The cache holds each site's value *after* any intervention on it, i.e. what the rest of the network saw.
"""

from __future__ import annotations

import difflib
import fnmatch
from typing import Any, Iterable, Mapping

import equinox as eqx
import jax
import jax.numpy as jnp

# Site-name suffix -> (position axis, head axis) of the unbatched activation.
SITE_AXES: dict[str, tuple[int, int | None]] = {
    "hook_embed": (0, None),
    "hook_pos_embed": (0, None),
    "hook_resid_pre": (0, None),
    "attn.hook_q": (0, 1),
    "attn.hook_k": (0, 1),
    "attn.hook_v": (0, 1),
    "attn.hook_q_precond": (0, 1),
    "attn.hook_attn_scores": (1, 0),
    "attn.hook_pattern": (1, 0),
    "attn.hook_z": (0, 1),
    "hook_attn_out": (0, None),
    "hook_resid_mid": (0, None),
    "mlp.hook_pre": (0, None),
    "mlp.hook_post": (0, None),
    "hook_mlp_out": (0, None),
    "hook_resid_post": (0, None),
}


class UnknownSiteError(KeyError):
    """A site name that the model does not have; the message lists the valid ones."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it readable
        return str(self.args[0])


def site_axes(name: str) -> tuple[int, int | None]:
    if name.startswith(("classifier.", "input_mlp.")):
        return (0, None)
    for suffix, axes in SITE_AXES.items():
        if name == suffix or name.endswith("." + suffix):
            return axes
    raise UnknownSiteError(f"unknown site kind {name!r}")


class Intervention(eqx.Module):
    """Change the activation at one site: `kind` is "set" (replace, clamp, patch, ablate) or "add".

    value:     what to set or add; broadcast against the site's (unbatched) shape. With `batched=True` it has a
               leading batch axis that `run` maps over (used for patching activations from another run).
    heads:     optional head indices the change is restricted to (sites with a head axis only).
    positions: optional positions it is restricted to (query positions for attention patterns).
    """

    value: jax.Array
    heads: jax.Array | None = None
    positions: jax.Array | None = None
    kind: str = eqx.field(static=True, default="set")
    batched: bool = eqx.field(static=True, default=False)

    def __check_init__(self) -> None:
        if self.kind not in ("set", "add"):
            raise ValueError(f"Intervention.kind = {self.kind!r} is not allowed; expected 'set' or 'add'")

    def apply(self, x: jax.Array, site: str) -> jax.Array:
        try:
            shape = jnp.broadcast_shapes(jnp.shape(self.value), x.shape)
        except ValueError:
            shape = None
        if shape != x.shape:
            raise ValueError(f"intervention on {site!r}: value of shape {tuple(jnp.shape(self.value))} does not "
                             f"broadcast to the site's shape {tuple(x.shape)} (per example; see models.hooks)")
        new = x + self.value if self.kind == "add" else jnp.broadcast_to(self.value, x.shape).astype(x.dtype)
        if self.heads is None and self.positions is None:
            return new
        pos_axis, head_axis = site_axes(site)
        keep = jnp.ones(x.shape, bool)
        if self.heads is not None:
            if head_axis is None:
                raise ValueError(f"intervention on {site!r} restricts heads, but that site has no head axis")
            keep = keep & _axis_mask(x.shape, head_axis, self.heads)
        if self.positions is not None:
            keep = keep & _axis_mask(x.shape, pos_axis, self.positions)
        return jnp.where(keep, new, x)


def _axis_mask(shape: tuple[int, ...], axis: int, idx: jax.Array) -> jax.Array:
    mask = jnp.zeros(shape[axis], bool).at[idx].set(True)
    return mask.reshape([-1 if a == axis else 1 for a in range(len(shape))])


def _idx(v: Any) -> jax.Array | None:
    return None if v is None else jnp.atleast_1d(jnp.asarray(v, jnp.int32))


def replace(value: Any, *, heads: Any = None, positions: Any = None, batched: bool = False) -> Intervention:
    """Replace the activation with `value` (broadcast to its shape)."""
    return Intervention(jnp.asarray(value), _idx(heads), _idx(positions), "set", batched)


def clamp(value: Any, *, heads: Any = None, positions: Any = None) -> Intervention:
    """Hold the activation at a fixed `value`, the same for every example (e.g. an attention pattern in training)."""
    return replace(value, heads=heads, positions=positions)


def add(vector: Any, *, heads: Any = None, positions: Any = None) -> Intervention:
    """Add `vector` (e.g. a steering direction) to the activation."""
    return Intervention(jnp.asarray(vector), _idx(heads), _idx(positions), "add", False)


def zero_ablate(*, heads: Any = None, positions: Any = None) -> Intervention:
    """Set the activation (or the chosen heads / positions of it) to zero."""
    return replace(0.0, heads=heads, positions=positions)


def mean_ablate(cache: Mapping[str, jax.Array], site: str, *, heads: Any = None, positions: Any = None) -> Intervention:
    """Set the activation to its mean over the batch of a cache taken with `run` (leading batch axis)."""
    _require_batched(cache, site, "mean_ablate")
    return replace(jnp.mean(cache[site], axis=0), heads=heads, positions=positions)


def _require_batched(cache: Mapping[str, jax.Array], site: str, fn: str) -> None:
    per_example_ndim = 2 if site_axes(site)[1] is None else 3
    if jnp.ndim(cache[site]) != per_example_ndim + 1:
        raise ValueError(f"{fn} needs a batched cache (from mesalab.models.run); {site!r} has shape "
                         f"{tuple(jnp.shape(cache[site]))}, expected {per_example_ndim + 1} axes with the batch first")


def patch(cache: Mapping[str, jax.Array], site: str, *, heads: Any = None, positions: Any = None) -> Intervention:
    """Replace the activation with the same site's value from another run's batched cache (per example)."""
    _require_batched(cache, site, "patch")
    return replace(cache[site], heads=heads, positions=positions, batched=True)


def patch_all(cache: Mapping[str, jax.Array]) -> dict[str, Intervention]:
    """Patch every site present in a batched cache."""
    return {site: patch(cache, site) for site in cache}


class Hooks:
    """Trace-time helper that one forward pass threads through its layers. It is created fresh for each call, so
    nothing survives the call: interventions and the cache are its inputs and outputs."""

    def __init__(self, valid: list[str], interventions: Mapping[str, Intervention] | None, cache: Iterable[str]):
        self.interventions = dict(interventions or {})
        check_sites(self.interventions, valid)
        self.wanted = resolve_sites(cache, valid)
        self.cache: dict[str, jax.Array] = {}

    def __call__(self, name: str, x: jax.Array) -> jax.Array:
        iv = self.interventions.get(name)
        if iv is not None:
            x = iv.apply(x, name)
        if name in self.wanted:
            self.cache[name] = x
        return x


def _unknown(name: str, valid: list[str]) -> UnknownSiteError:
    close = difflib.get_close_matches(name, valid, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return UnknownSiteError(f"unknown site {name!r}.{hint} Valid sites: {', '.join(valid)}")


def check_sites(names: Iterable[str], valid: list[str]) -> None:
    for n in names:
        if n not in valid:
            raise _unknown(n, valid)


def resolve_sites(patterns: Iterable[str] | str | None, valid: list[str]) -> tuple[str, ...]:
    """Expand names and glob patterns ("*hook_pattern", "all") into site names, rejecting unknown ones."""
    if patterns is None:
        return ()
    if isinstance(patterns, str):
        patterns = [patterns]
    out: list[str] = []
    for p in patterns:
        if p == "all":
            matched = list(valid)
        elif any(ch in p for ch in "*?["):
            matched = fnmatch.filter(valid, p)
            if not matched:
                raise _unknown(p, valid)
        else:
            if p not in valid:
                raise _unknown(p, valid)
            matched = [p]
        out.extend(m for m in matched if m not in out)
    return tuple(out)
