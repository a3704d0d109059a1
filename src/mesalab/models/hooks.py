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

Layers whose mixer is not attention (TransformerConfig.attention; hook_attn_out then holds the mixer's output):
    "lstm" (models.recurrent)   blocks.{l}.lstm.hook_c / hook_h                  [pos, d_model]
    "ssm" (models.ssm)          blocks.{l}.ssm.hook_x / hook_delta / hook_y      [pos, d_inner]
                                blocks.{l}.ssm.hook_B / hook_C                   [pos, ssm_state]
                                blocks.{l}.ssm.hook_state                        [pos, d_inner, ssm_state]
    "ngram<k>" (models.ngram)   blocks.{l}.attn.hook_pattern                     [1, query_pos, key_pos]
                                blocks.{l}.attn.hook_z                           [pos, 1, d_model]
They have none of the other attn.* sites. d_inner = ssm_expand · d_model.

With `pos_embedding="concat_sinusoidal"`, `hook_embed` is [pos, d_model − pos_dim] and `hook_pos_embed`
[pos, pos_dim]: the residual stream is their concatenation.
`hook_resid_mid` exists in attention-only models too (it then equals `hook_resid_post` before clipping).
The cache holds each site's value *after* any intervention on it, i.e. what the rest of the network saw.

With `pos_embedding="rope"`, `blocks.{l}.attn.hook_rot_q / hook_rot_k` [pos, head, d_head] hold the rotated queries
and keys (hook_q / hook_k stay before the rotation, as in TransformerLens) and there is no `hook_pos_embed`.
`hook_out` [pos, d_out] is the model's output (after ln_final and the unembedding); like TransformerLens's logits it
is not part of "all" or of glob patterns, but it can be cached and intervened on by name.

Besides fixed values (`Intervention`), three kinds compute their value (all are data, and work under jit, vmap, grad
and the training scan):
  `Computed`:  fn(activation, env, value) during the same pass, where env holds the model's input tokens
               (env["tokens"], [pos, d_in]) and every earlier site of the pass (after its interventions): a pattern
               computed from the sequence, the embeddings shifted by one position.
  `FromPass`:  a two-pass forward: the value of site `source` in a first pass of the same model (or of another,
               `model`: grafting from a checkpoint) run with interventions `first_pass` (none: the clean pass),
               optionally transformed by fn(source_value, tokens, value). Preserving patterns or values at their
               clean-pass values is FromPass(source=the site itself).
  `FromBatch`: fn(batch, value) -> a per-example value [B, ...] from the Batch (its info, e.g. which label is
               right): resolved into a batched replacement by `resolve_batch`, or in training by wrapping the loss
               with `batch_resolved(loss_fn)`.
`merge(*dicts)` chains interventions that act on the same site (a `Chain`, applied in order: values preserved, then
some heads ablated). The S6 clamp catalogue built from these lives in `models.clamps`.
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
    "attn.hook_rot_q": (0, 1),
    "attn.hook_rot_k": (0, 1),
    "attn.hook_q_precond": (0, 1),
    "attn.hook_attn_scores": (1, 0),
    "attn.hook_pattern": (1, 0),
    "attn.hook_z": (0, 1),
    # Sequence mixers other than attention (TransformerConfig.attention "lstm", "ssm"; see the module docstring).
    "lstm.hook_c": (0, None),
    "lstm.hook_h": (0, None),
    "ssm.hook_x": (0, None),
    "ssm.hook_delta": (0, None),
    "ssm.hook_B": (0, None),
    "ssm.hook_C": (0, None),
    "ssm.hook_state": (0, 1),  # the channel axis serves as the head axis (heads=… picks channels)
    "ssm.hook_y": (0, None),
    "hook_attn_out": (0, None),
    "hook_resid_mid": (0, None),
    "mlp.hook_pre": (0, None),
    "mlp.hook_post": (0, None),
    "hook_mlp_out": (0, None),
    "hook_resid_post": (0, None),
}
# Sites that exist once per model (not per block) at its end; intervenable and cacheable by name, never by "all".
OUTPUT_SITES: tuple[str, ...] = ("hook_out",)


class UnknownSiteError(KeyError):
    """A site name that the model does not have; the message lists the valid ones."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it readable
        return str(self.args[0])


def site_axes(name: str) -> tuple[int, int | None]:
    if name.startswith(("classifier.", "input_mlp.")) or name in OUTPUT_SITES:
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

    def apply(self, x: jax.Array, site: str, env: Mapping[str, jax.Array] | None = None) -> jax.Array:
        _check_broadcast(self.value, x, site)
        new = x + self.value if self.kind == "add" else jnp.broadcast_to(self.value, x.shape).astype(x.dtype)
        return restrict(x, new, site, self.heads, self.positions)


def _check_broadcast(value: Any, x: jax.Array, site: str) -> None:
    try:
        shape = jnp.broadcast_shapes(jnp.shape(value), x.shape)
    except ValueError:
        shape = None
    if shape != x.shape:
        raise ValueError(f"intervention on {site!r}: value of shape {tuple(jnp.shape(value))} does not "
                         f"broadcast to the site's shape {tuple(x.shape)} (per example; see models.hooks)")


def restrict(x: jax.Array, new: jax.Array, site: str, heads: jax.Array | None,
             positions: jax.Array | None) -> jax.Array:
    """`new` on the chosen heads and positions of the site's activation x, x elsewhere."""
    if heads is None and positions is None:
        return new
    pos_axis, head_axis = site_axes(site)
    keep = jnp.ones(x.shape, bool)
    if heads is not None:
        if head_axis is None:
            raise ValueError(f"intervention on {site!r} restricts heads, but that site has no head axis")
        keep = keep & _axis_mask(x.shape, head_axis, heads)
    if positions is not None:
        keep = keep & _axis_mask(x.shape, pos_axis, positions)
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

    def __init__(self, valid: list[str], interventions: Mapping[str, Intervention] | None, cache: Iterable[str],
                 tokens: jax.Array | None = None, extra: Iterable[str] = ()):
        """valid: the model's sites; extra: sites valid by name only (OUTPUT_SITES); tokens: the model's input,
        which Computed interventions read as env["tokens"]."""
        self.interventions = dict(interventions or {})
        check_sites(self.interventions, [*valid, *extra])
        for site, iv in self.interventions.items():
            items = iv.items if iv.kind == "chain" else (iv,)
            bad = next((i for i in items if i.kind in ("from_pass", "from_batch")), None)
            if bad is not None:
                how = ("hooks.resolve_batch(interventions, batch), or train with loss_fn=hooks.batch_resolved(...)"
                       if bad.kind == "from_batch" else "the model's __call__ or run_with_cache")
                raise ValueError(f"intervention on {site!r} is an unresolved {type(bad).__name__}; "
                                 f"resolve it with {how}")
        self.wanted = resolve_sites(cache, valid, extra)
        self.cache: dict[str, jax.Array] = {}
        self.env: dict[str, jax.Array] = {} if tokens is None else {"tokens": tokens}

    def __call__(self, name: str, x: jax.Array) -> jax.Array:
        iv = self.interventions.get(name)
        if iv is not None:
            x = iv.apply(x, name, self.env)
        self.env[name] = x
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


def resolve_sites(patterns: Iterable[str] | str | None, valid: list[str], extra: Iterable[str] = ()) -> tuple[str, ...]:
    """Expand names and glob patterns ("*hook_pattern", "all") into site names, rejecting unknown ones; names in
    `extra` are accepted when given in full but never matched by "all" or a pattern."""
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
            if p not in valid and p not in extra:
                raise _unknown(p, valid)
            matched = [p]
        out.extend(m for m in matched if m not in out)
    return tuple(out)


# The computed kinds live in models.computed (they build on Intervention); re-exported here, their natural home.
from mesalab.models.computed import (  # noqa: E402, F401
    Chain, Computed, FromBatch, FromPass, batch_resolved, merge, resolve_batch, resolve_passes,
)
