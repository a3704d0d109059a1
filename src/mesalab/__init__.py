"""mesalab: the mechanistic study of in-context learning on small sequence models."""

from mesalab import jax_setup  # noqa: F401  (compilation cache and host devices, before JAX starts)

__version__ = "0.1.0"


def load_run(path):
    """Read a run directory back: config, metrics DataFrame, results, claims and models (see mesalab.store)."""
    from mesalab.store import load_run as _load_run

    return _load_run(path)
