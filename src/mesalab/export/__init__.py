"""Trained models in other libraries' formats (written with NumPy and safetensors only; no torch)."""

FORMATS = ("transformer-lens",)
