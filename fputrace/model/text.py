"""Plain-text rendering of reports and estimates with rich tables (no colour when not a terminal)."""
from __future__ import annotations

import io

from rich.console import Console
from rich.table import Table


def _console() -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, width=120, color_system=None, force_terminal=False), buf


NO_SQUEEZE = {"live": 18, "charged_set": 14}    # shown whole: "SSE+AVX+AVX512+AMX", "amx 0x602e7"


def _table(title: str, df, columns: list[str]) -> Table:
    t = Table(title=title, title_justify="left")
    for c in columns:
        t.add_column(c, min_width=NO_SQUEEZE.get(c), justify="left" if c in ("comm", "caller", "cause", "kind", "owner", "policy",
                                                "live", "class", "charged_set", "match", "side",
                                                "components")
                     else "right")
    for rec in df[columns].itertuples(index=False):
        t.add_row(*(f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else str(v)
                    for v in (x.item() if hasattr(x, "item") else x for x in rec)))
    return t


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


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
    tasks = rep.filtered(pid, top, sort).copy()
    # the xstate columns under short headings: live components, bytes per save, shares of all
    tasks["live"] = tasks["components"].str.replace("AVX-512", "AVX512")
    tasks["B/save"] = tasks["bytes_per_xsave"].round().astype("int64")
    tasks["bytes%"] = tasks["bytes_share"].map(_pct)
    tasks["cycles%"] = tasks["cycles_share"].map(_pct)
    title = f"per task (top {top}" if top else "per task ("
    tasks["avoidable B"] = tasks["avoidable_bytes"]
    con.print(_table(f"{title}{', ' if top else ''}by {sort})", tasks,
                     ["tid", "tgid", "comm", "xsave", "xrstor", "avoidable_xrstor",
                      "kfpu_sections", "gap"]))
    con.print(_table("per task: live state at its saves and restores, what they moved", tasks,
                     ["tid", "comm", "live", "B/save", "bytes%", "cycles%", "avoidable B"]))
    classes = rep.per_class[(rep.per_class.xsave + rep.per_class.xrstor) > 0].copy()
    if len(classes):
        classes["cycles"] = classes["cycles"].round().astype("int64")
        con.print(_table("per component class (highest live group of each save/restore)", classes,
                         ["class", "xsave", "xrstor", "bytes", "cycles", "charged_set", "match"]))
    if len(rep.per_cause):
        con.print(_table("per cause", rep.per_cause, ["kind", "cause", "count"]))
    con.print(_table("per CPU", rep.per_cpu, ["cpu", "xsave", "xrstor", "kfpu_sections",
                                              "lost_events", "owner", "owner_tid"]))
    if len(rep.kfpu_callers):
        con.print(_table("kernel FPU callers", rep.kfpu_callers.head(top or None),
                         ["caller", "sections", "inferred_sections", "total_ns", "max_ns",
                          "p50_ns", "p99_ns"]))
    if len(rep.kfpu_hist):
        con.print(_table("kernel FPU section lengths", rep.kfpu_hist, ["lo_ns", "hi_ns", "count"]))
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
    df = est.policies.reset_index()
    df["cycles"] = df["cycles"].round().astype("int64")
    m = est.measured
    con.print(f"measured: XSAVE {m['xsave']:,}  XRSTOR {m['xrstor']:,}  bytes {m['bytes']:,}")
    con.print(_table("per policy", df, ["policy", "xsave", "xrstor", "avoidable_xrstor", "bytes",
                                        "cycles"]))
    pc = est.per_class
    if len(pc):
        pc = pc[(pc.xsave + pc.xrstor) > 0].copy()
        pc["cycles"] = pc["cycles"].round().astype("int64")
        con.print(_table("per policy and component class (cycles of the calibrated set charged)",
                         pc, ["side", "class", "xsave", "xrstor", "bytes", "cycles", "charged_set",
                              "match"]))
    big = est.large_state_tasks
    if len(big):
        pols = [c[len("avoidable_bytes_"):] for c in big.columns if c.startswith("avoidable_bytes_")]
        big = big.copy()
        big["B/save"] = big["bytes_per_xsave"].round().astype("int64")
        for p in pols:
            big[f"{p}: avoidable"] = [f"{n:,} ({b:,} B)" for n, b in
                                      zip(big[f"avoidable_xrstor_{p}"], big[f"avoidable_bytes_{p}"])]
        con.print(_table("tasks with AVX-512/AMX state: restores thrown away unused (bytes moved "
                         "for nothing)", big, ["tid", "comm", "components", "B/save",
                                               *[f"{p}: avoidable" for p in pols]]))
    for n in est.notes:
        con.print(f"note: {n}")
    return buf.getvalue()
