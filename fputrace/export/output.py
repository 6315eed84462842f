"""An export file appears under its name only when complete: written as OUT.partial, renamed."""
from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator


@contextmanager
def complete_or_nothing(out: str) -> Iterator[str]:
    """Yields the path to write; on success it becomes ``out``, on any failure it is removed (a
    reader never sees half an export, and an interrupted one leaves nothing behind)."""
    tmp = f"{out}.partial"
    try:
        yield tmp
        os.replace(tmp, out)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
