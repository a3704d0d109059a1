"""Checkpoints: array leaves in safetensors, everything else in a JSON header inside the same file.

Loading never executes code from the file: the caller rebuilds the pytree skeleton from its own configs and the
file only supplies arrays by name. Writes go to a temporary file in the same folder and are renamed into place, so
a run killed mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jax
import numpy as np
from safetensors.numpy import load_file, save_file
from safetensors import safe_open

from mesalab.store import atomic_write


class CheckpointError(RuntimeError):
    """A checkpoint that does not fit what the caller expects (different config or different arrays)."""


def _named_leaves(tree: Any) -> dict[str, np.ndarray]:
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in flat}


def save(path: str | Path, tree: Any, header: dict[str, Any]) -> None:
    """Write every array leaf of `tree` (named by its key path) and a JSON `header`, atomically."""
    arrays = {k: np.ascontiguousarray(v) for k, v in _named_leaves(tree).items()}
    atomic_write(Path(path), lambda tmp: save_file(arrays, str(tmp), metadata={"header": json.dumps(header, sort_keys=True)}))


def read_header(path: str | Path) -> dict[str, Any]:
    with safe_open(str(path), framework="numpy") as f:
        return json.loads(f.metadata()["header"])


def load_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """Every stored array by name (no code runs: safetensors holds only raw tensors)."""
    return load_file(str(path))


def load(path: str | Path, like: Any) -> tuple[Any, dict[str, Any]]:
    """Fill the skeleton `like` with the arrays stored in `path`; returns (tree, header)."""
    arrays = load_file(str(path))
    flat, treedef = jax.tree_util.tree_flatten_with_path(like)
    names = [jax.tree_util.keystr(p) for p, _ in flat]
    missing = [n for n in names if n not in arrays]
    extra = [n for n in arrays if n not in names]
    if missing or extra:
        raise CheckpointError(f"checkpoint {path} does not match: missing {missing[:5]}, unexpected {extra[:5]}")
    leaves = []
    for (p, ref), name in zip(flat, names):
        arr = arrays[name]
        if tuple(arr.shape) != tuple(np.shape(ref)):
            raise CheckpointError(f"checkpoint {path}: {name} has shape {arr.shape}, expected {np.shape(ref)}")
        # Host-side leaves (NumPy) stay NumPy and keep their precision; device leaves go back to the device.
        leaves.append(arr if isinstance(ref, np.ndarray) else jax.numpy.asarray(arr, dtype=ref.dtype))
    return jax.tree_util.tree_unflatten(treedef, leaves), read_header(path)
