"""``fputrace stat`` output: one interval (``intervals.Interval``) as perf-stat-style lines or JSON.

Text, like ``perf stat -I``: every line starts with the interval's end time (seconds since the
start), then a count, a unit and what was counted, so ``grep``/``awk`` can pick any series:

    #           time             counts unit events
         1.000185163             12,345      XSAVE
         1.000185163             11,234      XRSTOR
         1.000185163                  0      XRSTOR avoidable
         1.000185163                120      kernel-FPU sections
         1.000185163              1.234 ms   kernel-FPU time
         1.000185163                  0      lost events
         1.000185163              5,000      XSAVE   postgres/1234
         1.000185163              4,900      XRSTOR  postgres/1234

JSON: one object per interval and line (JSON Lines), keys as in ``interval_dict``.
"""
from __future__ import annotations

import json

HEADER = "#           time             counts unit events"


def interval_dict(iv, top: int) -> dict:
    t = iv.totals
    return {
        "time_s": round(iv.end_s, 9), "interval_s": round(iv.end_s - iv.start_s, 9),
        "xsave": t["xsave"], "xrstor": t["xrstor"], "avoidable_xrstor": t["avoidable_xrstor"],
        "kfpu_sections": t["kfpu_sections"], "kfpu_ns": t["kfpu_ns"],
        "xsave_bytes": t["xsave_bytes"], "xrstor_bytes": t["xrstor_bytes"],
        "lost_events": t["lost_events"], "events": t["events"],
        "top_tasks": [
            {"tid": int(r.tid), "tgid": int(r.tgid), "comm": str(r.comm), "xsave": int(r.xsave),
             "xrstor": int(r.xrstor), "avoidable_xrstor": int(r.avoidable_xrstor),
             "kfpu_sections": int(r.kfpu_sections), "kfpu_ns": int(r.kfpu_ns)}
            for r in iv.top_tasks(top).itertuples()],
    }


def _line(time_s: float, count: str, unit: str, event: str) -> str:
    return f"{time_s:16.9f} {count:>18} {unit:<5}  {event}"


def interval_lines(iv, top: int) -> list[str]:
    t = iv.totals
    ts = iv.end_s
    out = [
        _line(ts, f"{t['xsave']:,}", "", "XSAVE"),
        _line(ts, f"{t['xrstor']:,}", "", "XRSTOR"),
        _line(ts, f"{t['avoidable_xrstor']:,}", "", "XRSTOR avoidable"),
        _line(ts, f"{t['kfpu_sections']:,}", "", "kernel-FPU sections"),
        _line(ts, f"{t['kfpu_ns'] / 1e6:,.3f}", "ms", "kernel-FPU time"),
        _line(ts, f"{t['lost_events']:,}", "", "lost events"),
    ]
    for r in iv.top_tasks(top).itertuples():
        who = f"{r.comm or '?'}/{r.tid}"
        out.append(_line(ts, f"{int(r.xsave):,}", "", f"XSAVE   {who}"))
        out.append(_line(ts, f"{int(r.xrstor):,}", "", f"XRSTOR  {who}"))
    return out


def interval_json(iv, top: int) -> str:
    return json.dumps(interval_dict(iv, top), separators=(",", ":"))
