"""The numba engine as it was before the C engine (fputrace 1e64ed4), frozen here so that
tests/test_model_equivalence.py can run old and new side by side while both exist. Not used by
fputrace itself. One change since, made in both engines: an exited task's last switch-out is the
one whose prev_state has EXIT_ZOMBIE/EXIT_DEAD (where the source gives prev_state), not the first
one after EXIT (a preemption on its way out), so its later events are not a new task generation."""
from .model import Model

__all__ = ["Model"]
