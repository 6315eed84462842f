"""One lab run per kernel: boot once, run guest/lab.py, then analyse its recordings on the host.

``run_lab("6.1")`` returns (and stores under ``<cache>/results/<label>.json``) a dict:

  kernel     label, release, package version, wall time, accel
  guest      guest/lab.py's lab.json: kernel facts, modules, workloads (pids), recorder and
             bpftrace status, bpftrace counts per pid
  modes      per mode: meta (capture mode, attach per logical event, TIF bit, lost), ``events``
             per pid (counts from ``fputrace.load``: kind / cause / inferred) and ``model`` per pid
             (``fputrace report --format json`` per-task rows summed over the process)
  rows       the comparison table, one row per (mode, workload process); see ``compare_row``

The analysis runs on the host (no emulation: seconds instead of minutes) with the same fputrace
tree the guest used.
"""
from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from . import kernels, qemu

GUEST_DIR = Path(__file__).resolve().parent / "guest"
RESULTS_DIR = kernels.CACHE_DIR / "results"
MODES = ("fentry", "kprobe", "auto", "tracepoint")
EXACT_MODES = ("fentry", "kprobe", "auto")
# Every `fputrace record` start costs 1-2 min of emulated CPU (imports + bcc compile). To keep the
# matrix near 15 min, auto (== fentry on a stock kernel) runs on the oldest and the newest kernel.
MODES_BY_KERNEL = {"6.1": MODES, "6.12": ("fentry", "kprobe", "tracepoint"), "7": MODES}
# sizes: small enough for the whole matrix to stay within ~15 min on 2 cores under TCG, large
# enough that every count is in the hundreds or thousands
SIZES = {"sha256": (100, 65536), "sha256_small": (300, 4096), "gcm": (100, 65536), "pingpong": 1000}
GUEST_TIMEOUT_S = 1500

# fputrace event (kind, cause) -> the bpftrace probe that counts the same kernel fact
EXACT_PAIRS = {
    "kfpu_begin": "kernel_fpu_begin_mask",
    "kfpu_end": "kernel_fpu_end",
    "xsave": "save_fpregs_to_fpstate",
    "xrstor": "restore_fpregs_from_fpstate",
    "user_return": "switch_fpu_return",
}
XSAVE_CAUSE_SWITCH, XSAVE_CAUSE_KFPU = 1, 2


def guest_command(run_dir: Path, modes=MODES, sizes=SIZES) -> str:
    fputrace_bin = qemu.REPO_DIR / ".venv" / "bin" / "fputrace"
    s = sizes
    return (f"python3 {GUEST_DIR / 'lab.py'} {run_dir / 'out'} {fputrace_bin} --modes {','.join(modes)} "
            f"--sha256 {s['sha256'][0]} {s['sha256'][1]} --sha256-small {s['sha256_small'][0]} "
            f"{s['sha256_small'][1]} --gcm {s['gcm'][0]} {s['gcm'][1]} --pingpong {s['pingpong']}")


def event_counts(trace, pids: set[int]) -> dict[int, dict[str, int]]:
    """Per process: events by kind (exact and inferred apart) and XSAVE by cause."""
    ev = trace.events
    ev = ev[ev.tgid.isin(list(pids))]
    out: dict[int, dict[str, int]] = {p: {} for p in pids}
    for (tgid, kind, inferred), n in ev.groupby(["tgid", "kind", "inferred"], observed=True).size().items():
        key = str(kind).lower() + ("_inferred" if inferred else "")
        out[int(tgid)][key] = out[int(tgid)].get(key, 0) + int(n)
    xs = ev[ev.kind == "XSAVE"]
    for (tgid, cause, inferred), n in xs.groupby(["tgid", "a1", "inferred"], observed=True).size().items():
        name = {XSAVE_CAUSE_SWITCH: "switch", XSAVE_CAUSE_KFPU: "kfpu"}.get(int(cause), f"cause{int(cause)}")
        key = f"xsave_{name}" + ("_inferred" if inferred else "")
        out[int(tgid)][key] = out[int(tgid)].get(key, 0) + int(n)
    return out


def model_counts(path: Path, pids: set[int]) -> dict[int, dict[str, int]]:
    """Per process: ``fputrace report --format json`` (the model, as users get it) per-task rows
    summed over the process's threads."""
    res = subprocess.run([str(qemu.REPO_DIR / ".venv" / "bin" / "fputrace"), "report", "--format", "json",
                          str(path)], capture_output=True, text=True, timeout=600)
    if res.returncode != 0:
        raise RuntimeError(f"fputrace report exit {res.returncode}: {res.stderr.strip()[-300:]}")
    rep = json.loads(res.stdout)
    out: dict[int, dict[str, int]] = {p: {} for p in pids}
    for row in rep.get("per_task", []):
        if row.get("tgid") in pids:
            acc = out[row["tgid"]]
            for k in ("xsave", "xrstor", "kfpu_sections", "kfpu_sections_inferred", "avoidable_xrstor"):
                acc[k] = acc.get(k, 0) + int(row.get(k, 0))
    return out


def estimate(path: Path) -> dict:
    """``fputrace estimate --format json``: policy replay of the whole recording + self-check."""
    res = subprocess.run([str(qemu.REPO_DIR / ".venv" / "bin" / "fputrace"), "estimate", "--format", "json",
                          str(path)], capture_output=True, text=True, timeout=600)
    if res.returncode != 0:
        return {"error": f"fputrace estimate exit {res.returncode}: {res.stderr.strip()[-300:]}"}
    est = json.loads(res.stdout)
    return {"self_check": est.get("self_check"), "measured": est.get("measured"),
            "policies": {p: {k: v.get(k) for k in ("xsave", "xrstor", "avoidable_xrstor")}
                         for p, v in (est.get("policies") or {}).items()},
            "notes": est.get("notes", [])}


def workload_pids(guest: dict) -> dict[str, int]:
    """'sha256' -> pid, ..., 'pingpong' and 'pingpong-child' for the two ping-pong processes."""
    out = {}
    for w in guest.get("workloads", []):
        if w.get("pid"):
            out[w["name"]] = int(w["pid"])
        if w.get("child_pid"):
            out[w["name"] + "-child"] = int(w["child_pid"])
    return out


def analyse_recording(path: Path, pids: set[int]) -> dict:
    import fputrace
    from fputrace.errors import FputraceError
    try:
        tr = fputrace.load(path)
    except FputraceError as err:
        return {"error": f"fputrace.load: {err}"}
    meta = tr.meta
    res = {"meta": {k: meta.get(k) for k in ("capture_mode", "tif_need_fpu_load_bit", "tif_calibration",
                                            "lost_per_cpu", "truncated", "bpf_counters", "headers")},
           "attach": {ev: m.get("attach") for ev, m in (meta.get("modes") or {}).items()},
           "events": event_counts(tr, pids)}
    try:
        res["model"] = model_counts(path, pids)
    except Exception as err:   # the model is another part: report its failure, keep the rest
        res["model_error"] = f"{type(err).__name__}: {err}"
    res["estimate"] = estimate(path)
    return res


def compare_row(mode: str, workload: str, pid: int, fpt: dict, bt: dict) -> dict:
    """One table row: fputrace's counts for this process next to bpftrace's."""
    ev = fpt.get("events", {}).get(pid, {}) if fpt else {}
    model = (fpt or {}).get("model", {}).get(pid, {})
    row = {"mode": mode, "workload": workload, "pid": pid}
    for name, probe in EXACT_PAIRS.items():
        row[f"fpt_{name}"] = ev.get(name, 0)
        row[f"bt_{name}"] = bt.get(probe, 0)
    row["fpt_xsave_switch"] = ev.get("xsave_switch", 0)
    row["fpt_xsave_kfpu"] = ev.get("xsave_kfpu", 0)
    row["fpt_xsave_kfpu_inferred"] = ev.get("xsave_kfpu_inferred", 0)
    row["fpt_kfpu_begin_inferred"] = ev.get("kfpu_begin_inferred", 0)
    row["bt_tp_activated"] = bt.get("tp:x86_fpu_regs_activated", 0)
    row["bt_tp_deactivated"] = bt.get("tp:x86_fpu_regs_deactivated", 0)
    row["bt_syscalls_with_kfpu"] = bt.get("syscalls_with_kfpu", 0)
    for k in ("xsave", "xrstor", "kfpu_sections", "kfpu_sections_inferred", "avoidable_xrstor"):
        row[f"model_{k}"] = model.get(k)
    return row


def kprobe_misses(run_dir: Path) -> dict[str, int]:
    """bpftrace's kprobe programs (named after the probed function, 15 chars) -> recursion misses:
    runs the kernel skipped because another BPF program was active on that CPU (bpf_prog_active).
    Such hits are missing from bpftrace's counts; fentry programs are not skipped this way."""
    path = run_dir / "out" / "bpftool-prog.json"
    try:
        progs = json.loads(path.read_text() or "[]")
    except (OSError, ValueError):
        return {}
    out = {}
    for field, probe in EXACT_PAIRS.items():
        out[field] = max([int(p.get("recursion_misses", 0)) for p in progs
                          if p.get("type") == "kprobe" and p.get("name") == probe[:15]] or [0])
    return out


def analyse(run_dir: Path, guest: dict) -> dict:
    pids_by_name = workload_pids(guest)
    pids = set(pids_by_name.values())
    bt_counts = {int(p): c for p, c in (guest.get("bpftrace", {}).get("counts") or {}).items()}
    modes, rows = {}, []
    for mode, status in (guest.get("recorders") or {}).items():
        path = run_dir / "out" / f"{mode}.fpt"
        if not path.exists():
            modes[mode] = {"error": f"no recording ({status.get('error') or 'recorder failed'})"}
            continue
        modes[mode] = analyse_recording(path, pids)
        for name, pid in pids_by_name.items():
            rows.append(compare_row(mode, name, pid, modes[mode], bt_counts.get(pid, {})))
    return {"modes": modes, "rows": rows, "bpftrace_kprobe_misses": kprobe_misses(run_dir)}


def _jsonable(obj):
    """int keys (pids) become strings in JSON; keep the structure otherwise."""
    return json.loads(json.dumps(obj, default=str))


def run_lab(label: str, modes=None, sizes=SIZES, log=print) -> dict:
    """Boot ``label`` once, run every mode and workload, analyse, store and return the result."""
    kernel = kernels.fetch(label, log=log)
    modes = modes or MODES_BY_KERNEL.get(kernel.label, MODES)
    run_dir = qemu.new_run_dir()
    t0 = time.monotonic()
    res = qemu.run(kernel, guest_command(run_dir, modes, sizes), timeout_s=GUEST_TIMEOUT_S, mem="3G",
                   run_dir=run_dir)
    lab_json = run_dir / "out" / "lab.json"
    guest = json.loads(lab_json.read_text()) if lab_json.exists() else {}
    result = {"modes_run": list(modes), "kernel": {"label": label, "release": kernel.release, "package_version": kernel.package_version,
                         "accel": res.accel, "guest_wall_s": round(res.wall_s, 1),
                         "returncode": res.returncode, "reason": res.reason,
                         "output_tail": "\n".join(res.output.strip().splitlines()[-25:])},
              "run_dir": str(run_dir), "guest": guest, "finished_wall": time.time()}
    if guest:
        result.update(analyse(run_dir, guest))
    result["kernel"]["total_wall_s"] = round(time.monotonic() - t0, 1)
    result = _jsonable(result)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / f"{label}.json").write_text(json.dumps(result, indent=1))
    return result


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
