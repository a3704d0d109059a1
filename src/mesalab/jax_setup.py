"""Process-wide JAX settings, applied on import: a persistent compilation cache outside the repository.

Compiling dominates the run time of small models; the cache makes the second run of a program start at once.
Set MESALAB_COMPILATION_CACHE to a folder to move it, or to "off" to disable it.
"""

from __future__ import annotations

import os
from pathlib import Path

import jax


def cache_dir() -> str | None:
    setting = os.environ.get("MESALAB_COMPILATION_CACHE")
    if setting == "off":
        return None
    if setting:
        return setting
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return str(Path(base) / "mesalab" / "jax")


def enable_compilation_cache() -> None:
    path = cache_dir()
    if path is None:
        return
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)


enable_compilation_cache()
