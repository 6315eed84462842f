"""Plain-text rendering of reports and estimates with rich tables (no colour when not a terminal).
Reads the reports' ``Columns`` tables (no pandas on the CLI's path)."""
from __future__ import annotations

import io

import numpy as np
from rich.console import Console
from rich.table import Table

from .tables import OWN_MARK

NO_SQUEEZE = {"live": 18, "charged_set": 14}    # shown whole: "SSE+AVX+AVX512+AMX", "amx 0x602e7"
LEFT = ("comm", "caller", "cause", "kind", "owner", "policy", "live", "class", "charged_set", "match",
        "side", "components")


def _console() -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, width=120, color_system=None, force_terminal=False), buf


def _table(title: str, cols, columns: list[str]) -> Table:
    """A rich table of some ``Columns`` (or a list of row dicts)."""
    t = Table(title=title, title_justify="left")
    for c in columns:
        t.add_column(c, min_width=NO_SQUEEZE.get(c), justify="left" if c in LEFT else "right")
    rows = (cols.rows(columns) if hasattr(cols, "rows")
            else ([r[c] for c in columns] for r in cols))
    for rec in rows:
        t.add_row(*(f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else str(v)
                    for v in rec))
    return t


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def _nonzero(t):
    return t.take((t["xsave"] + t["xrstor"]) > 0)


def render_report(rep, top: int | None = 20, pid: int | None = None, sort: str = "xsave") -> str:
    con, buf = _console()
    tot = rep.totals
    con.print(f"fputrace report: {tot['events']:,} events over {tot['duration_ns'] / 1e9:.3f} s, "
              f"recorded policy: {rep.recorded_policy or 'unknown'}")
    con.print(f"XSAVE {tot['xsave']:,}  XRSTOR {tot['xrstor']:,}  avoidable XRSTOR "
              f"{tot['avoidable_xrstor']:,}  kernel FPU sections {tot['kfpu_sections']:,} "
              f"(inferred {tot['kfpu_sections_inferred']:,})")
    con.print(f"lost events {tot['lost_events']:,}  probe runs the kernel skipped "
              f"{tot.get('bpf_recursion_misses', 0):,}")
    if tot["kfpu_max_ns"]:
        con.print(f"kernel FPU section length (preemption off): p50 < {tot['kfpu_p50_ns']:,} ns, "
                  f"p99 < {tot['kfpu_p99_ns']:,} ns, max {tot['kfpu_max_ns']:,} ns")
    moved = tot["xsave_bytes"] + tot["xrstor_bytes"]
    mark = " (not this CPU's)" if rep.cost_model == "builtin-default" else ""
    con.print(f"bytes moved {moved:,}, about {tot['cycles']:,.0f} cycles (cost model "
              f"{rep.cost_model}{mark}; per component class below)")
    tasks = rep.task_rows(pid, top, sort)
    # the xstate columns under short headings: live components, bytes per save, shares of all
    tasks["live"] = [c.replace("AVX-512", "AVX512") for c in tasks["components"]]
    tasks["B/save"] = np.round(tasks["bytes_per_xsave"]).astype(np.int64)
    tasks["bytes%"] = [_pct(x) for x in tasks["bytes_share"].tolist()]
    tasks["cycles%"] = [_pct(x) for x in tasks["cycles_share"].tolist()]
    tasks["avoidable B"] = tasks["avoidable_bytes"]
    own = tasks["fputrace_own"]
    tasks["comm"] = [f"{OWN_MARK}{c}" if o else c for c, o in zip(tasks["comm"], own.tolist())]
    title = f"per task (top {top}" if top else "per task ("
    con.print(_table(f"{title}{', ' if top else ''}by {sort})", tasks,
                     ["tid", "tgid", "comm", "xsave", "xrstor", "avoidable_xrstor",
                      "kfpu_sections", "gap"]))
    if own.any():
        con.print(f"{OWN_MARK} fputrace's own tasks (tgid {rep.meta['fputrace_tgid']}, the process "
                  "that recorded this; fputrace_own in --format json/csv)", markup=False, highlight=False)
    con.print(_table("per task: live state at its saves and restores, what they moved", tasks,
                     ["tid", "comm", "live", "B/save", "bytes%", "cycles%", "avoidable B"]))
    tab = rep.tables
    classes = _nonzero(tab["per_class"])
    if len(classes):
        classes["cycles"] = np.round(classes["cycles"]).astype(np.int64)
        con.print(_table("per component class (highest live group of each save/restore)", classes,
                         ["class", "xsave", "xrstor", "bytes", "cycles", "charged_set", "match"]))
    if len(tab["per_cause"]):
        con.print(_table("per cause", tab["per_cause"], ["kind", "cause", "count", "avoidable"]))
    con.print(_table("per CPU", tab["per_cpu"], ["cpu", "xsave", "xrstor", "kfpu_sections",
                                                 "lost_events", "owner", "owner_tid"]))
    if len(tab["kfpu_callers"]):
        con.print(_table("kernel FPU callers", tab["kfpu_callers"].head(top or None),
                         ["caller", "sections", "inferred_sections", "total_ns", "max_ns",
                          "p50_ns", "p99_ns"]))
    if len(tab["kfpu_hist"]):              # bcc-style log2 histogram (one implementation: export/)
        from ..export.log2hist import log2_hist
        con.print("kernel FPU section lengths (preemption off), timed sections:")
        con.print("\n".join(log2_hist(tab["kfpu_hist"])), markup=False, highlight=False)
    con.print("exactness:")
    for k, v in rep.exactness.items():
        con.print(f"  {k}: {v}")
    if rep.modes:
        con.print("modes: " + ", ".join(f"{k}={v.get('attach')}" for k, v in rep.modes.items()
                                          if isinstance(v, dict)))
    return buf.getvalue()


def render_estimate(est) -> str:
    con, buf = _console()
    sc = "unavailable" if est.self_check is None else f"{est.self_check:.2%}"
    con.print(f"fputrace estimate: recorded policy {est.recorded_policy or 'unknown'}, "
              f"self-check {sc}, cost model {est.cost_model_name}"
              + (" (not this CPU's)" if est.cost_model_name == "builtin-default" else ""))
    rows = [dict(r, cycles=int(round(r["cycles"]))) for r in est.policy_rows]
    m = est.measured
    con.print(f"measured: XSAVE {m['xsave']:,}  XRSTOR {m['xrstor']:,}  bytes {m['bytes']:,}")
    con.print(_table("per policy", rows, ["policy", "xsave", "xrstor", "avoidable_xrstor", "bytes",
                                          "cycles"]))
    d = est.difference
    if d is not None and d["xrstor_fewer_pct"] is not None:
        con.print(f"{d['policy']} against {d['base']}: {d['xrstor']:,} fewer XRSTOR "
                  f"({d['xrstor_fewer_pct']:.1f}%), {d['xsave']:,} fewer XSAVE, "
                  f"{d['bytes']:,} bytes and {d['cycles']:,.0f} cycles less")
    if est.class_rows is not None and len(est.class_rows):
        pc = _nonzero(est.class_rows)
        pc["cycles"] = np.round(pc["cycles"]).astype(np.int64)
        con.print(_table("per policy and component class (cycles of the calibrated set charged)",
                         pc, ["side", "class", "xsave", "xrstor", "bytes", "cycles", "charged_set",
                              "match"]))
    big = est.large_state_rows
    if big is not None and len(big):
        pols = [c[len("avoidable_bytes_"):] for c in big.names if c.startswith("avoidable_bytes_")]
        big["B/save"] = np.round(big["bytes_per_xsave"]).astype(np.int64)
        for p in pols:
            big[f"{p}: avoidable"] = [f"{n:,} ({b:,} B)" for n, b in
                                      zip(big[f"avoidable_xrstor_{p}"].tolist(),
                                          big[f"avoidable_bytes_{p}"].tolist())]
        con.print(_table("tasks with AVX-512/AMX state: restores thrown away unused (bytes moved "
                         "for nothing)", big, ["tid", "comm", "components", "B/save",
                                               *[f"{p}: avoidable" for p in pols]]))
    for n in est.notes:
        con.print(f"note: {n}")
    return buf.getvalue()
