"""Where an ensemble's members train: split along the member axis over the local devices.

With MESALAB_HOST_DEVICES = N (jax_setup.py; by default one per core) XLA has N host CPU devices, and placing a share of the
members on each keeps more cores busy where XLA:CPU runs these models' small operations on about one thread. On a
single device nothing moves. Members never interact, so each member's numbers are those of the same member trained
on one device, to float round-off (tests/test_placement.py). The member count must be divisible by the devices used:
E members use the largest divisor of E that is at most the device count (E = 3 on 2 devices: one device), and a
member grouped into sequential batches (TrainConfig.ensemble_group below E) stays on one device. With
fit(split="batch") every device takes a share of each member's batch instead (batch_mesh, split_batch); XLA sums the
gradient across them.

Programs that call jaxlib's CPU linear-algebra kernels stay on one device (`safe_member_mesh`). Those kernels
(custom calls named `lapack_*`: QR, LU, triangular solves, Cholesky, eigh, SVD) split a batch of matrices over
XLA's intra-op thread pool — the pool the calling thunk itself runs on — and then block until the pieces finish
(jaxlib/cpu/lapack_kernels.cc, `ParallelBatchMap`; it splits once a call holds more than about 200,000 FLOP, e.g.
150 QRs of 10 × 10). The pool has one thread per core and is shared by every host device. With two devices each
running such a call, both threads of a 2-core machine wait for pieces that no thread is free to run: a deadlock.
Found 2026-11-29 with gdb on the mesa-dynamics workload (benchmarks/engine.py (b): every batch draws its
orthogonal W* by QR), whose members on two devices hung at 0% CPU on the first call, both pool threads parked in
`lapack_sgeqrf_ffi` → `ParallelBatchMap` → `BlockingCounter::Wait`. It needs both devices inside such a call at
once, which is why the hang came and went. The same re-entry deadlock is reported for XLA's FFT thunk
(PyAutoLabs/PyAutoFit issue 1530).
"""

from __future__ import annotations

import dataclasses
import re
import warnings
from typing import Any, Callable, Sequence

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

SPLITS = ("members", "batch")   # Trainer.fit's ways to use several devices (the module docstring)
MEMBER_AXIS = "members"
BATCH_AXIS = "batch"
POOL_REENTERING_CALL = re.compile(r"custom_call @(lapack_\w+)")


def divisor_mesh(n: int, devices: list | None, axis: str) -> Mesh | None:
    """A 1-D mesh named `axis` over the most local devices that divide n evenly; None when that is one device."""
    devices = list(jax.local_devices() if devices is None else devices)
    used = max(d for d in range(1, len(devices) + 1) if n % d == 0)
    return None if used == 1 else Mesh(np.asarray(devices[:used]), (axis,))


def member_mesh(n_members: int, devices: list | None = None) -> Mesh | None:
    """The mesh that splits n_members members (divisor_mesh)."""
    return divisor_mesh(n_members, devices, MEMBER_AXIS)


def pool_reentering_calls(program: Callable, args: Sequence[Any]) -> list[str]:
    """The jaxlib CPU linear-algebra kernels (see the module docstring) that the jitted `program` calls on `args`."""
    return sorted(set(POOL_REENTERING_CALL.findall(program.lower(*args).as_text())))


def safe_member_mesh(n_members: int, devices: list | None, program: Callable, args: Sequence[Any],
                     mesh_of: Callable = member_mesh) -> Mesh | None:
    """member_mesh (or `mesh_of`, e.g. batch_mesh with the batch size), unless the program calls a kernel that can
    deadlock on several devices: then None (one device), with a warning that names the kernels."""
    mesh = mesh_of(n_members, devices)
    if mesh is None:
        return None
    calls = pool_reentering_calls(program, args)
    if calls:
        warnings.warn(f"training on one device, not {mesh.devices.size}: the program calls {', '.join(calls)}, "
                      "jaxlib CPU kernels that can deadlock on several host devices "
                      "(mesalab/train/placement.py)", stacklevel=3)
        return None
    return mesh


def batch_mesh(batch_size: int, devices: list | None = None) -> Mesh | None:
    """The mesh that splits a batch of batch_size sequences (divisor_mesh)."""
    return divisor_mesh(batch_size, devices, BATCH_AXIS)


def split_batch(batch: Any, sharding: NamedSharding) -> Any:
    """A sampled batch with its inputs, targets and loss mask split along their first (batch) axis (fit(split=
    "batch")); inside vmap over members the member axis stays whole."""
    put = lambda x: jax.lax.with_sharding_constraint(x, sharding)  # noqa: E731
    return dataclasses.replace(batch, inputs=put(batch.inputs), targets=put(batch.targets),
                               loss_mask=put(batch.loss_mask))


def replicate(tree: Any, mesh: Mesh | None) -> Any:
    """Every array leaf copied whole to each device of the mesh; unchanged without a mesh."""
    if mesh is None:
        return tree
    whole = NamedSharding(mesh, PartitionSpec())
    return jax.tree_util.tree_map(lambda x: jax.device_put(x, whole) if isinstance(x, (jax.Array, np.ndarray))
                                  else x, tree)


def place_members(tree: Any, mesh: Mesh | None) -> Any:
    """Every array leaf (leading axis = members) split along that axis over the mesh; unchanged without a mesh."""
    if mesh is None:
        return tree
    split = NamedSharding(mesh, PartitionSpec(MEMBER_AXIS))
    return jax.tree_util.tree_map(lambda x: jax.device_put(x, split) if isinstance(x, (jax.Array, np.ndarray))
                                  and np.ndim(x) >= 1 else x, tree)


def gather(tree: Any) -> Any:
    """Every array leaf held by several devices copied whole onto the first of them; other leaves unchanged."""
    def one(x: Any) -> Any:
        if not isinstance(x, jax.Array) or len(x.sharding.device_set) == 1:
            return x
        return jax.device_put(x, min(x.sharding.device_set, key=lambda d: d.id))
    return jax.tree_util.tree_map(one, tree)


def devices_used(tree: Any) -> int:
    """How many devices hold the leaves of a placed tree (1 for an unplaced one)."""
    leaves = [x for x in jax.tree_util.tree_leaves(tree) if isinstance(x, jax.Array)]
    return max((len(x.sharding.device_set) for x in leaves), default=1)
