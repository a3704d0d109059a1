"""mesalab: the mechanistic study of in-context learning on small sequence models."""

__version__ = "0.1.0"
