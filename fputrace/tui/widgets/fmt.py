"""Number formatting shared by the renderers (presentation only: no analysis here)."""
from __future__ import annotations

import math
import zlib

# Owner colours: tasks get a stable colour from their tid; the three non-task owners are fixed.
TASK_PALETTE = ("#5fafff", "#87d75f", "#ffaf5f", "#d787ff", "#5fd7d7", "#ffd75f",
                "#ff87af", "#afaf87", "#87afff", "#d7af5f", "#5fd787", "#af87d7")
KERNEL_STYLE, NONE_STYLE, UNKNOWN_STYLE = "bold #ff5f5f", "#4e4e4e", "bold yellow"


def task_style(tid: int) -> str:
    return TASK_PALETTE[zlib.crc32(int(tid).to_bytes(4, "little")) % len(TASK_PALETTE)]


def count(n: float) -> str:
    """1234567 -> '1.2M' (4 characters or so, for narrow columns)."""
    n = float(n)
    if not math.isfinite(n):
        return "-"
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= div:
            v = n / div
            return f"{v:.1f}{unit}" if abs(v) < 100 else f"{v:.0f}{unit}"
    return f"{n:.0f}" if float(n).is_integer() or abs(n) >= 10 else f"{n:.1f}"


def duration_ns(ns: float) -> str:
    ns = float(ns)
    for unit, div in (("s", 1e9), ("ms", 1e6), ("µs", 1e3)):
        if abs(ns) >= div:
            v = ns / div
            return f"{v:.1f}{unit}" if abs(v) < 100 else f"{v:.0f}{unit}"
    return f"{ns:.0f}ns"


def size_bytes(n: float) -> str:
    n = float(n)
    for unit, div in (("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
        if abs(n) >= div:
            return f"{n / div:.1f} {unit}"
    return f"{n:.0f} B"


def clock_s(ns: int) -> str:
    """Trace position as m:ss.t."""
    s = max(0, int(ns)) / 1e9
    return f"{int(s // 60)}:{s % 60:04.1f}"
