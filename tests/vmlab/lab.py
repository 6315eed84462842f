"""One lab run per kernel: boot once, run guest/lab.py, then analyse its recordings on the host.

``run_lab("6.1")`` returns (and stores under ``<cache>/results/<label>.json``) a dict:

  kernel     label, release, package version, wall time, accel
  guest      guest/lab.py's lab.json: kernel facts, modules, subsystems, workloads (pids, window),
             recorder and bpftrace status, bpftrace counts per window and pid, the markers
  windows    {k: {lo, hi, cpu_lo, cpu_hi, workload}}: the stretch of time each workload had
  modes      per mode: meta (capture mode, attach per logical event, TIF bit, lost), ``events``
             per window and tgid (counts from ``fputrace.load``), ``model`` per window (per-tgid
             sums of the model's per-task report, totals, callers, estimate)
  rows       the comparison table, one row per (mode, window, tgid): see ``compare_rows``
  bpftool    every BPF program's run count and recursion misses; ``misses`` per tool and fact
  ftrace_drops  per fact: kprobe hits the ftrace layer dropped uncounted (an int3 kprobe past
             the fentry site against the ftrace-based one on it; analysis.ftrace_drops)

The analysis runs on the host (no emulation: seconds instead of minutes) with the same fputrace
tree the guest used.
"""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

from . import analysis, kernels, qemu

GUEST_DIR = Path(__file__).resolve().parent / "guest"
# per checkout: several worktrees (or a CI clone) share the cache, and each one's documents come
# from its own runs
RESULTS_DIR = kernels.CACHE_DIR / "results" / qemu.checkout_key()
MODES = ("fentry", "kprobe", "auto", "tracepoint")
EXACT_MODES = ("fentry", "kprobe", "auto")
# Every `fputrace record` start costs 1-2 min of emulated CPU (imports + bcc compile), and all
# recorders share the guest's 2 vCPUs with the workloads. auto runs where it matters: on 5.10
# (every mode of the 5.2-5.10 era) and on 7.x (preempt=lazy: auto takes kprobes for the kernel FPU
# begin/end); on 6.1 and 6.12 it is fentry's plan exactly (test_auto_mode_on_stock_kernel).
PANIC_RETRIES = 1
MODES_BY_KERNEL = {"5.10": MODES, "6.1": ("fentry", "kprobe", "tracepoint"),
                   "6.12": ("fentry", "kprobe", "tracepoint"), "7": MODES}
# sizes: small enough for the whole matrix to stay within the lab's budget on 2 cores under TCG,
# large enough that every count is in the hundreds or thousands
SIZES = {"sha256": (50, 65536), "sha256_small": (200, 4096), "gcm": (50, 65536), "pingpong": 500,
         "subsystems": "dmcrypt=4,wireguard=1,raid6=4,btrfs=4"}
GUEST_TIMEOUT_S = 1500
FACTS = tuple(analysis.FACT_KIND)
MEASURE_MODE = "fentry"      # the mode of RESULTS.md's every-process table (the measuring pass: guest/lab.py)


def guest_command(run_dir: Path, modes=MODES, sizes=SIZES) -> str:
    fputrace_bin = qemu.REPO_DIR / ".venv" / "bin" / "fputrace"
    s = sizes
    return (f"python3 {GUEST_DIR / 'lab.py'} {run_dir / 'out'} {fputrace_bin} --modes {','.join(modes)} "
            f"--sha256 {s['sha256'][0]} {s['sha256'][1]} --sha256-small {s['sha256_small'][0]} "
            f"{s['sha256_small'][1]} --gcm {s['gcm'][0]} {s['gcm'][1]} --pingpong {s['pingpong']} "
            f"--subsystems {s['subsystems']}")


def workload_pids(guest: dict) -> dict[str, int]:
    """'sha256' -> pid, ..., 'pingpong-child', 'wireguard-tcp_server' ... for helper processes."""
    out = {}
    for w in guest.get("workloads", []):
        if w.get("pid"):
            out[w["name"]] = int(w["pid"])
        if w.get("child_pid"):
            out[w["name"] + "-child"] = int(w["child_pid"])
        for key in ("tcp-server_pid", "tcp-client_pid"):
            if w.get(key):
                out[f"{w['name']}-{key.removesuffix('_pid')}"] = int(w[key])
    return out


def windows(guest: dict) -> dict[int, dict]:
    bounds = analysis.window_bounds(guest.get("bpftrace", {}).get("windows") or [])
    names = {w.get("window"): w["name"] for w in guest.get("workloads", [])}
    for k, b in bounds.items():
        b["workload"] = names.get(k, f"window {k}")
    return bounds


def compare_rows(mode: str, k: int, fpt: dict, bt: dict) -> list[dict]:
    """Per tgid that either side saw in window ``k``: fputrace's exact events and the model's
    per-process sums next to bpftrace's counts of the same kernel functions."""
    ev = (fpt.get("events") or {}).get(k, {})
    model = ((fpt.get("model") or {}).get(k) or {}).get("per_tgid", {})
    rows = []
    for tgid in sorted(set(ev) | set(bt) | set(model)):
        e, b, m = ev.get(tgid, {}), bt.get(tgid, {}), model.get(tgid, {})
        row = {"mode": mode, "window": k, "tgid": tgid}
        for f in FACTS:
            row[f"fpt_{f}"] = e.get(f, 0)
            row[f"bt_{f}"] = b.get(f, 0)
        row["bt_tp_activated"] = b.get("tp:x86_fpu_regs_activated", 0)
        row["bt_tp_deactivated"] = b.get("tp:x86_fpu_regs_deactivated", 0)
        row["bt_syscalls_with_kfpu"] = b.get("syscalls_with_kfpu", 0)
        row["bt_switch_saves"] = b.get("switch_saves", 0)
        for cause in ("switch", "kfpu", "fork", "sync", "unknown"):
            row[f"fpt_xsave_{cause}"] = e.get(f"xsave_{cause}", 0)
        row["fpt_xsave_kfpu_inferred"] = e.get("xsave_kfpu_inferred", 0)
        row["fpt_kfpu_begin_inferred"] = e.get("kfpu_begin_inferred", 0)
        for f in analysis.MODEL_FIELDS:
            row[f"model_{f}"] = m.get(f, 0)
        if any(v for key, v in row.items() if key not in ("mode", "window", "tgid")):
            rows.append(row)
    return rows


def analyse(run_dir: Path, guest: dict) -> dict:
    bounds = windows(guest)
    bt = {int(k): {int(p): c for p, c in per.items()}
          for k, per in (guest.get("bpftrace", {}).get("counts") or {}).items()}
    try:
        progs = json.loads((run_dir / "out" / "bpftool-prog.json").read_text() or "[]")
    except (OSError, ValueError):
        progs = []
    modes, rows = {}, []
    for mode, status in (guest.get("recorders") or {}).items():
        path = run_dir / "out" / f"{mode}.fpt"
        if not path.exists():
            modes[mode] = {"error": f"no recording ({status.get('error') or 'recorder failed'})"}
            continue
        measure = {w["name"].removeprefix("measure-"): (w["lo_ns"], w["hi_ns"]) for w in guest.get("measure") or []
                   if w.get("returncode") == 0} if mode == guest.get("measure_mode", "fentry") else None
        modes[mode] = analysis.analyse_recording(path, bounds, measure=measure)
        for k in bounds:
            rows.extend(compare_rows(mode, k, modes[mode], bt.get(k, {})))
    return {"windows": bounds, "modes": modes, "rows": rows,
            "ftrace_drops": analysis.ftrace_drops(guest.get("skips"), guest.get("drop_counters")),
            "ftrace_drops_traced": analysis.traced_drops(guest.get("drop_trace"), bounds),
            "bpftool": {"programs": analysis.program_runs(progs),
                        "misses": analysis.program_misses(progs) | {"kprobe_layer": {
                            f: int(v["missed"]) for f, v in (guest.get("kprobe_misses") or {}).items()},
                            "kprobe_skips": analysis.kprobe_skips(guest.get("skips"),
                                                                  guest.get("bpftrace", {}).get("probes") or {})}}}


def _jsonable(obj):
    """int keys (pids) become strings in JSON; keep the structure otherwise."""
    return json.loads(json.dumps(obj, default=str))


def run_lab(label: str, modes=None, sizes=SIZES, log=print) -> dict:
    """Boot ``label``, run every mode and workload, analyse, store and return the result.

    A guest kernel panic or stall gets one more boot: stock kernels under TCG have twice died of a
    NULL call from the syscall-exit path into switch_fpu_return while the fentry recorder attached
    next to kprobes on the same function (6.12 and 7.2), and 6.1 once spun both vCPUs silently
    while bpftrace attached and mdadm created the array (kernel text patching under emulation is
    the suspect). So does a boot whose bpftrace reference printed no counts (failed_boot). The
    failed boot is kept, with its oops or reason, in ``kernel.panics``: the tests warn with it and
    RESULTS.md lists it."""
    kernel = kernels.fetch(label, log=log)
    modes = modes or MODES_BY_KERNEL.get(kernel.label, MODES)
    t0 = time.monotonic()
    panics = []
    for boot in range(1 + PANIC_RETRIES):
        run_dir = qemu.new_run_dir()
        res = qemu.run(kernel, guest_command(run_dir, modes, sizes), timeout_s=GUEST_TIMEOUT_S, mem="3G",
                       run_dir=run_dir, stall_s=qemu.STALL_S)
        failure = failed_boot(res, run_dir)
        if failure is None or boot == PANIC_RETRIES:
            break
        panics.append({"run_dir": str(run_dir), "after_s": round(res.wall_s, 1),
                       "last_output": res.output.strip().splitlines()[-1:], **failure})
        log(f"[lab] {kernel.release}: {res.reason or 'no reference counts'} ({failure.get('bug', '?')}, in "
            f"{failure.get('task', '?')}); console in {run_dir}/console.log; booting once more")
    lab_json = run_dir / "out" / "lab.json"
    guest = json.loads(lab_json.read_text()) if lab_json.exists() else {}
    result = {"modes_run": list(modes), "kernel": {"label": label, "release": kernel.release, "package_version": kernel.package_version,
                         "accel": res.accel, "guest_wall_s": round(res.wall_s, 1), "guest_cpu_s": res.cpu_s,
                         "loadavg_1m": round(os.getloadavg()[0], 2),
                         "returncode": res.returncode, "reason": res.reason, "panics": panics,
                         "output_tail": "\n".join(res.output.strip().splitlines()[-25:])},
              "run_dir": str(run_dir), "guest": guest, "finished_wall": time.time()}
    if guest:
        result.update(analyse(run_dir, guest))
    result["kernel"]["total_wall_s"] = round(time.monotonic() - t0, 1)
    result = _jsonable(result)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / f"{label}.json").write_text(json.dumps(result, indent=1))
    return result


def failed_boot(res: qemu.GuestResult, run_dir: Path) -> dict | None:
    """Why this boot cannot be compared, worth one more boot (run_lab), or None: the guest kernel
    panicked or stalled, or bpftrace, the reference, ended without printing its counts (6.12 once
    in the 44 kernel runs of 2026-12-01/02: it did not exit within the guest's 300 s after SIGINT and was killed, the
    counts it held lost with it). fputrace's own failures are not retried: the tests report them."""
    if (res.panicked or res.stalled) and res.returncode is None:
        return res.oops() or {"bug": res.reason, "frames": []}
    try:
        bt = json.loads((run_dir / "out" / "lab.json").read_text()).get("bpftrace") or {}
    except (OSError, ValueError):
        return None
    if bt.get("ready") and not bt.get("counts"):
        return {"bug": f"bpftrace (the reference) printed no counts, exit status {bt.get('returncode')}: "
                       f"{(bt.get('error') or '').splitlines()[0][:120]}", "frames": []}
    return None


def load_result(label: str) -> dict | None:
    path = RESULTS_DIR / f"{label}.json"
    return json.loads(path.read_text()) if path.exists() else None


def reanalyse(label: str) -> dict:
    """Analyse the recordings of the last stored run of ``label`` again (no boot): for work on the
    analysis or the model; the guest's facts and bpftrace counts are kept as they were."""
    result = load_result(label)
    if result is None:
        raise FileNotFoundError(f"no stored lab result for {label} in {RESULTS_DIR}")
    result.update(analyse(Path(result["run_dir"]), result["guest"]))
    result = _jsonable(result)
    (RESULTS_DIR / f"{label}.json").write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    import sys
    args = sys.argv[1:]
    again = "--reanalyse" in args
    for lab in [a for a in args if a != "--reanalyse"] or list(kernels.KERNELS):
        r = reanalyse(lab) if again else run_lab(lab)
        print(f"{lab}: rc={r['kernel']['returncode']} rows={len(r.get('rows', []))}")
