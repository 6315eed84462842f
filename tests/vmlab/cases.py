"""docs/CASES.md: what the deferred FPU restore (Linux 5.2, TIF_NEED_FPU_LOAD) saves, per real
workload and kernel, from the last lab and host runs (written by ``python -m tests.vmlab.report``).

The figures come from the lab's *measuring pass* (guest/lab.py: each workload again, with the
auto recorder, else the fentry one, alone, no bpftrace) on stock kernels, and from the host run in tracepoint mode;
the model replays each workload's window under the eager policy (Linux <= 5.1) and the recorded
deferred one (SPEC 5.3). The verification of the same counts against bpftrace is RESULTS.md.
"""
from __future__ import annotations

import time

WORKLOAD_TITLES = {
    "sha256": "AF_ALG sha256, 64 KiB page-aligned buffer per hash (user process, syscall context)",
    "sha256-small": "AF_ALG sha256, 4 KiB per hash",
    "gcm": "AF_ALG gcm(aes), 64 KiB per encryption",
    "pingpong": "pipe ping-pong of two FPU-using processes on one CPU (context switches, no kernel FPU)",
    "dmcrypt": "dm-crypt aes-xts-plain64 on a loop device, O_DIRECT write + read (kcryptd kworkers)",
    "wireguard": "WireGuard between two network namespaces over veth, TCP (crypt workers, NAPI softirq)",
    "raid6": "md raid6 on four loop devices, full-stripe O_DIRECT writes (gen_syndrome in md0_raid6)",
    "btrfs": "btrfs crc32c data checksums: write + fsync, drop caches, read back (writer, endio workers)",
    "cbuild": "parallel C build (Brotli library and tool, make -j<ncpu>, gcc -O2) on the host",
    "numpy": "NumPy matrix products on OpenBLAS threads on the host",
    "openssl": "openssl speed -evp aes-256-gcm on the host (AES-NI in user space)",
}


def _us(ns) -> str:
    if ns is None:
        return "–"
    return f"{ns / 1000:,.0f}" if ns >= 10_000 else f"{ns / 1000:,.1f}"


def _timed(f: dict) -> bool:
    """Section lengths are known (inferred sections have no begin time)."""
    return bool(f.get("max")) and f.get("inferred") != f.get("sections")


def _p99(f: dict) -> str:
    """p99 is the upper bound of its power-of-two bucket: never shown above the exact max."""
    if f.get("p99") is None or not _timed(f):
        return "–"
    return "≤ " + _us(min(f["p99"], f["max"] or f["p99"]))


def _n(v) -> str:
    return "–" if v is None else f"{int(v):,}"


def _saved(f: dict) -> str:
    """Restores the deferred policy saved, and their share of what eager would have done."""
    saved, eager = f.get("saved_xrstor"), f.get("eager_xrstor")
    if saved is None:
        return "–"
    return f"{saved:,}" + (f" ({100 * saved / eager:.0f}%)" if eager else "")


def _when(res: dict) -> str:
    t = res.get("finished_wall") or res.get("started_wall")
    return time.strftime("%Y-%m-%d", time.gmtime(t)) if t else "?"


def windows(res: dict) -> dict[str, dict]:
    """workload -> model window (the measuring pass where there is one, else the verification
    window of the first exact mode, else of any mode)."""
    modes = res.get("modes", {})
    out = {}
    for mode in ("fentry", "kprobe", "auto", "tracepoint"):
        m = modes.get(mode) or {}
        for name, w in (m.get("measure") or {}).items():
            out.setdefault(name, w | {"mode": mode, "pass": "measure"})
    for mode in ("fentry", "kprobe", "auto", "tracepoint"):
        m = modes.get(mode) or {}
        for k, w in (m.get("model") or {}).items():
            name = (res.get("windows") or {}).get(str(k), {}).get("workload")
            if name:
                out.setdefault(name, w | {"mode": mode, "pass": "verify"})
    return out


def figures(w: dict) -> dict:
    """The row of the summary for one workload window."""
    tot, est = w.get("totals") or {}, w.get("estimate") or {}
    meas, pol = est.get("measured") or {}, est.get("policies") or {}
    eager = pol.get("eager") or {}
    deferred = pol.get("deferred") or {}
    row = {"sections": tot.get("kfpu_sections"), "inferred": tot.get("kfpu_sections_inferred"),
           "p50": tot.get("kfpu_p50_ns"), "p99": tot.get("kfpu_p99_ns"), "max": tot.get("kfpu_max_ns"),
           "xsave": meas.get("xsave"), "xrstor": meas.get("xrstor"),
           "eager_xsave": eager.get("xsave"), "eager_xrstor": eager.get("xrstor"),
           "eager_avoidable": eager.get("avoidable_xrstor"), "deferred_xrstor": deferred.get("xrstor"),
           "deferred_avoidable": deferred.get("avoidable_xrstor"),
           "self_check": est.get("self_check"), "cost_model": est.get("cost_model"),
           "cost": est.get("cost_model_detail") or {}, "mode": w.get("mode"), "pass": w.get("pass")}
    if eager.get("xrstor") is not None and meas.get("xrstor") is not None:
        row["saved_xrstor"] = eager["xrstor"] - meas["xrstor"]
        row["saved_xsave"] = (eager.get("xsave") or 0) - (meas.get("xsave") or 0)
        row["saved_bytes"] = (eager.get("bytes") or 0) - (meas.get("bytes") or 0)
        row["saved_cycles"] = (eager.get("cycles") or 0) - (meas.get("cycles") or 0)
    return row


def _all(results: dict[str, dict], host_res: dict | None):
    """(workload, kernel label, result, window) in a stable order: workloads as run, kernels old
    to new, the host last."""
    runs = list(results.items()) + ([("host", host_res)] if host_res else [])
    order: list[str] = []
    for _, res in runs:
        for name in windows(res):
            if name not in order:
                order.append(name)
    for name in order:
        for label, res in runs:
            w = windows(res).get(name)
            if w:
                yield name, label, res, w


def _p50(f: dict) -> str:
    if f.get("p50") is None or not _timed(f):
        return "–"
    return "≤ " + _us(min(f["p50"], f["max"] or f["p50"]))


def cost_model_name(results: dict[str, dict], host_res: dict | None) -> str:
    return next((figures(w)["cost_model"] for *_, w in _all(results, host_res) if figures(w)["cost_model"]), "?")


def summary_table(results: dict[str, dict], host_res: dict | None) -> str:
    out = ["| workload | kernel | kernel FPU sections | preempt-off p50 / p99 / max (µs) | XSAVE "
           "| XRSTOR deferred (measured) | XRSTOR eager (replayed) | avoidable under eager | restores saved "
           f"| bytes saved | cycles saved (`{cost_model_name(results, host_res)}`) | self-check |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, label, res, w in _all(results, host_res):
        f = figures(w)
        sections = _n(f["sections"]) + (" (inferred)" if f["inferred"] and f["inferred"] == f["sections"] else "")
        sc = f["self_check"]
        out.append(f"| {name} | {label} | {sections} | {_p50(f)} / {_p99(f)} / {_us(f['max']) if _timed(f) else '–'} | "
                   f"{_n(f['xsave'])} | {_n(f['xrstor'])} | {_n(f['eager_xrstor'])} | {_n(f['eager_avoidable'])} | "
                   f"{_saved(f)} | {_n(f.get('saved_bytes'))} | {_n(f.get('saved_cycles'))} | "
                   f"{'–' if sc is None else f'{100 * sc:.2f}%'} |")
    return "\n".join(out)


def highlights(results: dict[str, dict], host_res: dict | None) -> list[str]:
    """Generated from the rows: where the deferred restore saved the largest and the smallest
    share of eager's restores."""
    rows = []
    for name, label, res, w in _all(results, host_res):
        f = figures(w)
        if f.get("eager_xrstor"):
            rows.append((f["saved_xrstor"] / f["eager_xrstor"], name, label, f))
    if len(rows) < 2:
        return []
    rows.sort(key=lambda r: -r[0])

    def say(r):
        share, name, label, f = r
        return f"{name} on {label} ({100 * share:.0f}%: {f['xrstor']:,} restores instead of {f['eager_xrstor']:,})"
    n = min(3, len(rows) // 2)
    return ["- Largest share of eager's restores avoided: " + "; ".join(say(r) for r in rows[:n]) + ".",
            "- Smallest: " + "; ".join(say(r) for r in rows[-n:][::-1]) + "."]


def _runs(results: dict[str, dict], host_res: dict | None) -> list[str]:
    out = ["| run | kernel | date | accel | pass used (recorder mode) |", "|---|---|---|---|---|"]
    for label, res in list(results.items()) + ([("host", host_res)] if host_res else []):
        k = res["kernel"]
        passes = {f"{w['pass']} ({w['mode']})" for w in windows(res).values()}
        out.append(f"| {label} | {k['release']} {k.get('package_version', '')} | {_when(res)} | {k.get('accel')} | "
                   f"{', '.join(sorted(passes))} |")
    return out


def _callers(w: dict, top: int = 6) -> list[dict]:
    rows = [c for c in w.get("callers") or [] if c.get("sections")]
    return sorted(rows, key=lambda c: -c["sections"])[:top]


def sections_per_hash(res: dict) -> tuple[float, list[tuple[str, float]]] | None:
    """Sections per sha256 hash in the verification window, and per caller."""
    sha = next((w for w in res.get("guest", {}).get("workloads", []) if w["name"] == "sha256"), None)
    win = windows(res).get("sha256")
    if not sha or not win:
        return None
    n = sha["args"][0]
    callers = [(c["caller"], c["sections"] / n) for c in _callers(win, 10)]
    pid_rows = [r for r in res.get("rows", []) if r["mode"] == "fentry" and r["tgid"] == sha["pid"]
                and res["windows"][str(r["window"])]["workload"] == "sha256"]
    total = pid_rows[0]["fpt_kfpu_begin"] / n if pid_rows else None
    return total, callers


def render(results: dict[str, dict], host_res: dict | None) -> str:
    gen = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    cost = next((figures(w) for *_, w in _all(results, host_res)), {}).get("cost") or {}
    out = ["# What the deferred FPU restore saves: measured cases", "",
           f"Generated by `python -m tests.vmlab.report` ({gen}) from the last lab runs (stock Debian "
           "kernels under QEMU, `fputrace record --mode auto` where the lab runs auto, else `--mode fentry`) and the last host run (this machine's "
           "kernel, `--mode tracepoint`). Do not edit: rerun the command.", "",
           "In 2018 the kernel developers moved the restore of a task's user FPU registers from "
           "`kernel_fpu_end()` and the context switch to the return to user mode "
           "(`TIF_NEED_FPU_LOAD`, Linux 5.2), and in 2019 asked how many restores that saves on real "
           "workloads (SPEC 1). Each row below is one workload on one kernel: what the kernel really "
           "did (deferred policy, measured), and what the same trace replayed under the old eager "
           "policy would have done (SPEC 5.3). The *restores saved* are the XRSTORs the eager kernel "
           "would have executed and thrown away, or executed for nothing.", "",
           *_runs(results, host_res), "",
           "## Summary", "",
           summary_table(results, host_res), "",
           *highlights(results, host_res),
           "- *kernel FPU sections*: `kernel_fpu_begin` .. `kernel_fpu_end` pairs in the workload's "
           "window, every task (workload, kernel threads, interrupts on whoever ran); on the host they "
           "are inferred (tracepoint mode: only sections that saved a user task's registers in a "
           "syscall). *preempt-off*: section lengths, preemption is off inside (power-of-two bucket "
           "bounds for p50 and p99; max exact).",
           "- *XSAVE / XRSTOR deferred (measured)*: what the kernel executed; *eager (replayed)*: the "
           "same events under Linux <= 5.1's policy; *avoidable*: restores thrown away before the task "
           "ran a user instruction (under deferred they are ~0, a check); *restores saved*: eager minus "
           "measured, and their share of the eager restores.",
           "- Where the kernel FPU is used by kernel threads (kcryptd, WireGuard's crypt workers, md, "
           "btrfs workers) there is no user state to restore at all, under either policy: the saving "
           "comes from user tasks that use the kernel FPU several times per kernel entry (AF_ALG, "
           "a writer checksumming its own data) and from tasks switched in that block again.",
           "- The lab's guests run under QEMU's TCG (software emulation): section lengths are the "
           "emulator's, tens of times those of hardware; compare them between callers, not with a "
           "real machine. Counts do not depend on the emulation.",
           f"- *bytes saved*: eager minus measured bytes moved by XSAVE+XRSTOR (576 + the live "
           f"components of each event). *cycles saved*: eager minus measured cycles under the cost model "
           f"`{cost.get('name') or cost_model_name(results, host_res)}` (XSAVE {cost.get('xsave_cycles', '?')}, "
           f"XRSTOR {cost.get('xrstor_cycles', '?')} cycles per instruction; `fputrace calibrate` measures "
           "them on a real CPU). Under QEMU's TCG the cycle figures are the cost model's, not the emulator's.",
           "- *self-check*: the replay under the recorded (deferred) policy against the measured "
           "counts, task by task (1 = exact).", ""]
    for name, title in WORKLOAD_TITLES.items():
        rows = [(label, res, w) for n, label, res, w in _all(results, host_res) if n == name]
        if not rows:
            continue
        out += [f"## {name}: {title}", "",
                "| kernel | sections | XSAVE measured / eager | XRSTOR measured / eager | avoidable (eager) "
                "| saved: XRSTOR, bytes, cycles | self-check |", "|---|---|---|---|---|---|---|"]
        for label, res, w in rows:
            f = figures(w)
            sc = f["self_check"]
            out.append(f"| {label} | {_n(f['sections'])} | {_n(f['xsave'])} / {_n(f['eager_xsave'])} | "
                       f"{_n(f['xrstor'])} / {_n(f['eager_xrstor'])} | {_n(f['eager_avoidable'])} | "
                       f"{_n(f.get('saved_xrstor'))}, {_n(f.get('saved_bytes'))} B, {_n(f.get('saved_cycles'))} | "
                       f"{'–' if sc is None else f'{100 * sc:.2f}%'} |")
        out += ["", "Kernel FPU sections per caller (preemption off inside; µs):", "",
                "| kernel | caller | sections | p50 | p99 | max |", "|---|---|---|---|---|---|"]
        for label, res, w in rows:
            for c in _callers(w):
                out.append(f"| {label} | `{c['caller']}` | {c['sections']:,} | ≤ {_us(min(c['p50_ns'], c['max_ns']))} | "
                           f"≤ {_us(min(c['p99_ns'], c['max_ns']))} | {_us(c.get('max_ns'))} |")
        out.append("")
    out += ["## Sections per sha256 hash, per kernel", "",
            "One AF_ALG hash of a page-aligned 64 KiB buffer (16 pages): the hash code splits it into "
            "this many kernel FPU sections (from the verification window: sections of the workload "
            "process / hashes).", "",
            "| kernel | sections per hash | per caller |", "|---|---|---|"]
    for label, res in results.items():
        sp = sections_per_hash(res)
        if sp:
            total, callers = sp
            out.append(f"| {label} | {'–' if total is None else f'{total:g}'} | "
                       + "; ".join(f"`{c}` {v:g}" for c, v in callers) + " |")
    return "\n".join(out) + "\n"
