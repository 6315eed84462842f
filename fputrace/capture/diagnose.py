"""What ``fputrace doctor`` finds out (a dict: its --json output) and how it is shown."""
from __future__ import annotations

import time

from ..errors import FputraceError
from .features import Probe, expected_tif_bit, host_features
from .options import CaptureOptions
from .plan import LOGICAL_EVENTS, make_plan


def _check(ok: bool | None, detail: str) -> dict:
    return {"ok": None if ok is None else bool(ok), "detail": detail}   # None: not tested


def diagnose(mode: str = "auto", load: bool = True, verbose: bool = False) -> dict:
    """What works here. ``load=False`` compiles and loads nothing (fentry stays "not tested"
    unless a verdict is cached for this boot); ``verbose`` keeps the logs of failed loads."""
    feat = host_features()
    fentry_log = ""
    if not feat.fentry.tested:
        if load and feat.privileges.ok and feat.bcc.ok and feat.headers.kind != "none":
            from .loader import verify_fentry
            fentry_log = verify_fentry(feat)
        else:
            feat.set_fentry(Probe(False, "not tested (--no-load)" if not load else
                                  "not tested (no privileges, bcc or headers)", tested=False))
    if not feat.tp_btf.tested:
        if load and feat.privileges.ok:
            from .loader import verify_tp_btf
            verify_tp_btf(feat)
        else:
            feat.set_tp_btf(Probe(False, "not tested (--no-load)" if not load else "not tested", tested=False))
    checks = {
        "privileges": _check(feat.privileges.ok, feat.privileges.reason),
        "bcc": _check(feat.bcc.ok, feat.bcc.reason),
        "kernel": _check(True, f"{feat.release} ({feat.recorded_policy} FPU restore)"),
        "headers": _check(feat.headers.kind != "none", f"{feat.headers.kind}: {feat.headers.detail}"),
        "btf": _check(feat.btf.ok, feat.btf.reason),
        "tracefs": _check(feat.tracefs is not None, feat.tracefs_state.detail),
        "fentry": _check(feat.fentry.ok if feat.fentry.tested else None, feat.fentry.reason),
        "kprobes": _check(feat.kprobes.ok, feat.kprobes.reason),
        "raw_tracepoints": _check(feat.raw_tracepoints.ok, feat.raw_tracepoints.reason or "available"),
        "tp_btf": _check(feat.tp_btf.ok if feat.tp_btf.tested else None, feat.tp_btf.reason),
        "transport": _check(True, _transport_text(feat)),
    }
    report = {"ok": False, "mode": None, "checks": checks, "modes": {}, "headers": feat.headers.as_meta(),
              "tif_need_fpu_load_bit": expected_tif_bit(feat.version),
              "tif_calibration": {"expected": expected_tif_bit(feat.version), "verified": False,
                                  "source": "kernel version (not loaded)"},
              "xstate": feat.xstate, "tracefs": feat.tracefs_state.as_meta(), "remedy": None,
              "load": None}
    if verbose and fentry_log and not feat.fentry.ok:
        checks["fentry"]["log"] = fentry_log
    if not feat.privileges.ok:
        report["remedy"] = "run as root (sudo fputrace doctor) or grant CAP_BPF and CAP_PERFMON"
        return report
    try:
        plan = make_plan(feat, mode)
    except FputraceError as err:
        report["remedy"] = str(err)
        return report
    report["modes"] = plan.modes_meta()
    report["mode"] = plan.effective_mode
    hot = plan.hot.as_meta()
    report["tracepoint_programs"] = hot
    checks["hot_tracepoints"] = _check(True, hot["kind"] + (f" ({hot['reason']})" if hot["reason"] else
                                       ": fields read directly, typed by the kernel's BTF"))
    remedy = None
    if not feat.bcc.ok:
        remedy = "apt install python3-bpfcc (./setup.sh does it)"
    elif feat.headers.kind == "none":
        remedy = "apt install linux-headers-amd64 (or the headers of the running kernel)"
    if remedy:
        report["remedy"] = remedy
        return report
    if not load:
        report["ok"] = True
        report["load"] = {"ok": None, "detail": "skipped (--no-load)"}
        return report
    from .session import CaptureSession
    t0 = time.monotonic()
    try:
        with CaptureSession(CaptureOptions(mode=mode, buffer_pages=64, calibrate_s=0.5)) as cap:
            report["tif_need_fpu_load_bit"] = cap.meta["tif_need_fpu_load_bit"]
            report["tif_calibration"] = cap.meta["tif_calibration"]
            b = cap._loaded.bpf
            n = len(b.tracepoint_fds) + len(b.raw_tracepoint_fds) + len(b.kfunc_entry_fds) + \
                sum(len(v) for v in b.kprobe_fds.values())
        report["load"] = {"ok": True, "detail": f"compiled and attached {n} programs in "
                                                f"{time.monotonic() - t0:.1f} s, then detached"}
        report["ok"] = True
    except FputraceError as err:
        report["load"] = {"ok": False, "detail": str(err)}
        if verbose and getattr(err, "log", ""):
            report["load"]["log"] = err.log
        report["remedy"] = f"{err} (inspect with: fputrace record -o x --ebpf)"
    return report


def _transport_text(feat) -> str:
    from .options import DEFAULT_BUFFER_PAGES
    from .ringbuf import choose
    t = choose(feat, "auto", DEFAULT_BUFFER_PAGES, explicit=False)
    size = f"{t.pages * 4 // 1024} MiB" if t.pages >= 256 else f"{t.pages * 4} KiB"
    what = {"ringbuf_percpu": f"one BPF ring buffer per CPU ({t.rings} x {size})",
            "ringbuf": f"one shared BPF ring buffer ({size})", "perfbuf": "perf buffer"}[t.kind]
    return what + (f"; {t.reason}" if t.reason else "")


def _log_text(check: dict) -> str:
    """-v: the log of a failed load (bcc, clang, the verifier), under the check's line."""
    return ("\n  log:\n" + "\n".join("    " + line for line in check["log"].splitlines())) if check.get("log") else ""


def render_table(report: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    def mark(ok):
        return "[green]ok[/]" if ok else ("[yellow]–[/]" if ok is None else "[red]no[/]")

    t = Table(title="fputrace doctor", show_lines=False, title_justify="left")
    t.add_column("check", style="bold")
    t.add_column("", justify="center")
    t.add_column("detail", overflow="fold")
    for name, c in report["checks"].items():
        t.add_row(name.replace("_", " "), mark(c["ok"]), c["detail"] + _log_text(c))
    t.add_section()
    for name in LOGICAL_EVENTS:
        m = report["modes"].get(name)
        if not m:
            continue
        ok = m["attach"] != "unavailable"
        detail = m["attach"] + ("" if m["exact"] or not ok else "  (inferred/partial)")
        if m.get("note"):
            detail += f"\n  {m['note']}"
        host_wide = {"fentry": report["checks"]["fentry"]["detail"],
                     "kprobe": report["checks"]["kprobes"]["detail"]}
        for better, why in m["refused"].items():
            if host_wide.get(better) == why:
                why = f"see '{'kprobes' if better == 'kprobe' else better}' above"
            detail += f"\n  {better} refused: {why}"
        t.add_row(f"event {name}", mark(ok), detail)
    t.add_section()
    cal = report["tif_calibration"]
    t.add_row("TIF_NEED_FPU_LOAD", mark(cal.get("verified")),
              f"bit {report['tif_need_fpu_load_bit']} ({cal.get('source')}; "
              f"kernel version says {cal.get('expected')})")
    xs = report["xstate"]
    feats = ", ".join(f"{f['name']}:{f['size_bytes']}" for f in xs.get("features", []))
    t.add_row("xstate", mark(bool(xs.get("features"))),
              f"mask {xs.get('mask', 0):#x} (XCR0 {xs.get('xcr0', 0):#x}), {xs.get('total_bytes')} bytes, "
              f"{'compacted' if xs.get('compacted') else 'standard'} format\n  {feats}")
    if report.get("load"):
        t.add_row("test load", mark(report["load"]["ok"]), report["load"]["detail"] + _log_text(report["load"]))
    t.add_row("capture mode", mark(report["ok"]), report["mode"] or "none")
    Console().print(t)
