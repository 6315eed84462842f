"""bcc-style log2 histograms in plain text (as runqlat, funclatency, biolatency print them).

    lines = log2_hist(report.kfpu_hist, "nsecs")

     nsecs               : count     distribution
     16384 -> 32767      : 1131     |*******************                     |
     32768 -> 65535      : 660      |***********                             |

Rows are the model's power-of-two buckets ``[lo, hi)`` (report ``kfpu_hist``), shown inclusive as
``lo -> hi-1`` like bcc. Empty buckets between the first and the last non-empty one are shown,
the leading and trailing ones are not.
"""
from __future__ import annotations

STARS = 40


def log2_hist(table, unit: str = "nsecs") -> list[str]:
    """``table``: columns lo_ns, hi_ns, count (the report's ``Columns``, or a DataFrame)."""
    recs = [(int(lo), int(hi), int(n)) for lo, hi, n in
            zip(table["lo_ns"], table["hi_ns"], table["count"])]
    recs = [r for r in recs if r[2] > 0]
    if not recs:
        return []
    by_lo = {lo: (hi, n) for lo, hi, n in recs}
    first, last = min(by_lo), max(by_lo)
    buckets = []
    lo = first
    while lo <= last:                      # fill the empty buckets in between
        hi, n = by_lo.get(lo, (max(1, lo * 2), 0))
        buckets.append((lo, hi, n))
        lo = hi
    width = max(10, len(str(last * 2)))
    peak = max(n for _, _, n in buckets)
    out = [f"{'':{width - 5}}{unit:<{width + 9}} : count     distribution"]   # ':' over ':'

    for lo, hi, n in buckets:
        stars = "*" * (n * STARS // peak)
        out.append(f"{lo:>{width}} -> {hi - 1:<{width}} : {n:<8} |{stars:<{STARS}}|")
    return out
