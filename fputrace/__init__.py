"""fputrace: how much FPU/SIMD register save/restore traffic does the kernel do, for whom, and why."""
__version__ = "0.1.0"


def load(path):
    """Load a recording (or anything ``fputrace import`` wrote) as a ``Trace``.

    ``trace.events`` is a pandas DataFrame, ``trace.tasks`` the task table, ``trace.meta`` a dict;
    ``trace.report()`` and ``trace.estimate()`` run the model.
    """
    from .trace import load as _load
    return _load(path)
