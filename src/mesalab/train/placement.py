"""Where an ensemble's members train: split along the member axis over the local devices.

With MESALAB_HOST_DEVICES = N (jax_setup.py; off by default, see there for the measured gains and the hang that
keeps it opt-in) XLA has N host CPU devices, and placing a share of the members on each keeps more cores busy
where XLA:CPU runs these models' small operations on about one thread. On a single device nothing moves. Members never
interact, so each member's numbers are those of the same member trained on one device (tests/test_placement.py).
The member count must be divisible by the devices used: E members use the largest divisor of E that is at most the
device count (E = 3 on 2 devices: one device), and a member grouped into sequential batches (TrainConfig.
ensemble_group below E) stays on one device.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

MEMBER_AXIS = "members"


def member_mesh(n_members: int, devices: list | None = None) -> Mesh | None:
    """A 1-D mesh over the most local devices that divide n_members evenly; None when that is one device."""
    devices = list(jax.local_devices() if devices is None else devices)
    used = max(d for d in range(1, len(devices) + 1) if n_members % d == 0)
    return None if used == 1 else Mesh(np.asarray(devices[:used]), (MEMBER_AXIS,))


def place_members(tree: Any, mesh: Mesh | None) -> Any:
    """Every array leaf (leading axis = members) split along that axis over the mesh; unchanged without a mesh."""
    if mesh is None:
        return tree
    split = NamedSharding(mesh, PartitionSpec(MEMBER_AXIS))
    return jax.tree_util.tree_map(lambda x: jax.device_put(x, split) if isinstance(x, (jax.Array, np.ndarray))
                                  and np.ndim(x) >= 1 else x, tree)


def devices_used(tree: Any) -> int:
    """How many devices hold the leaves of a placed tree (1 for an unplaced one)."""
    leaves = [x for x in jax.tree_util.tree_leaves(tree) if isinstance(x, jax.Array)]
    return max((len(x.sharding.device_set) for x in leaves), default=1)
