"""The numba engine as it was before the C engine (fputrace 1e64ed4), frozen here so that
tests/test_model_equivalence.py can run old and new side by side while both exist. Not used by
fputrace itself."""
from .model import Model

__all__ = ["Model"]
