"""Process-wide JAX settings, applied when mesalab is imported (by the CLI and by API users alike): a persistent
compilation cache outside the repository, and one XLA host device per core. JAX itself is not imported here
(`mesalab --help` stays fast): the settings go into the environment variables JAX reads when it is imported, or
into jax.config when it already was.

- Compiling dominates the run time of small models; the cache makes the second run of a program start at once.
  Set MESALAB_COMPILATION_CACHE to a folder to move it, or to "off" to disable it.
- MESALAB_HOST_DEVICES = N asks XLA for N host CPU devices, and the engine splits an ensemble's members over them
  (train/placement.py). The default is one device per core this process may use (1 on a one-core machine, where
  nothing changes). Measured on 2 cores (benchmarks/engine.py, E = 8 and 64): 1.07–1.32× for workload (a),
  1.45–1.67× for (b), 1.60–2.07× for (c) (the README's table). The split changes a run's numbers at float
  round-off (the compiled programs fuse differently), so the device count is part of what reproduces a run
  (store.py records it); MESALAB_HOST_DEVICES=1 gives the numbers of one device. Programs that call jaxlib's LAPACK
  kernels stay on one device (the cause of a hang found 2026-11-29; placement.py). An invalid value is reported
  with a warning and one device is used. Nothing changes when XLA_FLAGS already sets the count, or when JAX's
  backends were started before mesalab was imported.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

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
    settings = {"jax_compilation_cache_dir": path, "jax_persistent_cache_min_compile_time_secs": 0.5,
                "jax_persistent_cache_min_entry_size_bytes": -1}
    if "jax" in sys.modules:
        config = sys.modules["jax"].config
        if getattr(config, "jax_compilation_cache_dir", None):  # the user configured a cache already: theirs wins
            return
        for name, value in settings.items():
            config.update(name, value)
    else:  # read by JAX at import; a user's own setting wins
        for name, value in settings.items():
            os.environ.setdefault(name.upper(), str(value))


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS reports one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no affinity call
        return os.cpu_count() or 1


def host_device_count() -> int:
    """The host devices to ask XLA for: MESALAB_HOST_DEVICES, by default usable_cores()."""
    setting = os.environ.get("MESALAB_HOST_DEVICES", str(usable_cores()))
    if not setting.isdigit() or int(setting) < 1:
        raise ValueError(f"MESALAB_HOST_DEVICES = {setting!r}; expected a positive integer (1: one CPU device)")
    return int(setting)


def _backends_started() -> bool:
    if "jax" not in sys.modules:
        return False
    try:
        from jax._src import xla_bridge
        return bool(xla_bridge.backends_are_initialized())
    except (ImportError, AttributeError):  # a JAX without the check: assume they have not started
        return False


def use_host_cores() -> None:
    """Ask XLA for host_device_count() CPU devices, unless the user's XLA_FLAGS chose already or JAX has started."""
    flags = os.environ.get("XLA_FLAGS", "")
    try:
        n = host_device_count()
    except ValueError as e:  # at import time a traceback would hide the message; say it and carry on with one
        warnings.warn(f"{e}; using 1", stacklevel=2)
        return
    if n == 1 or "xla_force_host_platform_device_count" in flags or _backends_started():
        return
    os.environ["XLA_FLAGS"] = f"{flags} --xla_force_host_platform_device_count={n}".strip()


enable_compilation_cache()
use_host_cores()
