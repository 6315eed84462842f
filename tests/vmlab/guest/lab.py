"""The lab run inside ONE guest boot (plain python3; fputrace and bpftrace run as subprocesses).

1. facts about the kernel (symbols, BTF, tracepoints), SIMD crypto modules loaded (no udev here);
2. bpftrace starts counting per process; then one ``fputrace record`` per mode starts, all at
   once and system-wide, so every mode and bpftrace observe the SAME workload processes;
3. the ground-truth workloads run one after the other (their pids are printed);
4. every recorder gets SIGINT (a clean stop), then bpftrace; results go to OUT/lab.json, the
   recordings to OUT/<mode>.fpt, logs to OUT/<name>.log. The host analyses the files.

Usage: python3 lab.py OUT_DIR FPUTRACE_BIN [--modes fentry,kprobe,auto,tracepoint]
       [--sha256 N SIZE] [--sha256-small N SIZE] [--gcm N SIZE] [--pingpong N]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bpftrace_prog  # noqa: E402

HERE = Path(__file__).resolve().parent
SIMD_MODULES = ("sha256_ssse3", "aesni_intel", "algif_hash", "algif_skcipher", "algif_aead")
PROBE_SYMBOLS = bpftrace_prog.FUNCS + ("kernel_fpu_begin", "switch_fpu_prepare", "switch_fpu_finish",
                                       "fpregs_restore_userregs", "fpu__clear_user_states")
READY_TIMEOUT_S = 900
STOP_TIMEOUT_S = 300


def log(msg: str) -> None:
    print(f"[lab {time.monotonic():8.1f}] {msg}", flush=True)


def kernel_facts() -> dict:
    want = set(PROBE_SYMBOLS)
    present = set()
    with open("/proc/kallsyms") as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and parts[2] in want:
                present.add(parts[2])
    tp_root = Path("/sys/kernel/tracing/events")
    tps = [tp for tp in bpftrace_prog.TRACEPOINTS if (tp_root / tp.replace(":", "/")).is_dir()]
    flags = set()
    for line in open("/proc/cpuinfo"):
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    return {"release": platform.release(), "btf": os.path.exists("/sys/kernel/btf/vmlinux"),
            "preempt": preemption_model(), "symbols": {s: s in present for s in PROBE_SYMBOLS}, "tracepoints": tps,
            "cpu_flags": sorted(flags & {"avx", "avx2", "avx512f", "aes", "vaes", "sha_ni", "xsaves",
                                         "xsavec", "xsaveopt"}),
            "nproc": os.cpu_count()}


def preemption_model() -> str:
    """The running model of a PREEMPT_DYNAMIC kernel ("none voluntary (full) lazy" in debugfs),
    else the build's (the kernel config in the headers tree), else ''."""
    try:
        return open("/sys/kernel/debug/sched/preempt").read().split("(", 1)[1].split(")", 1)[0]
    except (OSError, IndexError):
        pass
    try:
        config = open(f"/lib/modules/{platform.release()}/build/.config").read().splitlines()
    except OSError:
        return ""
    for option, model in (("PREEMPT_RT", "rt"), ("PREEMPT_LAZY", "lazy"), ("PREEMPT", "full"),
                          ("PREEMPT_VOLUNTARY", "voluntary"), ("PREEMPT_NONE", "none")):
        if f"CONFIG_{option}=y" in config:
            return model
    return ""


def load_modules() -> dict:
    out = {}
    for m in SIMD_MODULES:
        res = subprocess.run(["modprobe", m], capture_output=True, text=True)
        out[m] = "loaded" if res.returncode == 0 else res.stderr.strip().splitlines()[-1:][0:1] or "failed"
        if isinstance(out[m], list):
            out[m] = out[m][0] if out[m] else "failed"
    return out


def wait_for(path: Path, text: str, proc: subprocess.Popen, timeout_s: float) -> str:
    """'' once ``text`` appears in the log ``path``; else why not."""
    t_end = time.monotonic() + timeout_s
    while time.monotonic() < t_end:
        if path.exists() and text in path.read_text(errors="replace"):
            return ""
        if proc.poll() is not None:
            return f"exited with status {proc.returncode} before ready"
        time.sleep(0.5)
    return f"not ready after {timeout_s:.0f}s"


def tail(path: Path, n: int = 8) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").strip().splitlines()[-n:])
    except OSError:
        return ""


def run_workload(argv: list[str], out: Path, name: str) -> dict:
    t0 = time.monotonic()
    res = subprocess.run([sys.executable, str(HERE / "workloads.py"), *argv], capture_output=True, text=True)
    (out / f"workload-{name}.log").write_text(res.stdout + res.stderr)
    info = {"name": name, "argv": argv, "returncode": res.returncode, "wall_s": round(time.monotonic() - t0, 2)}
    for line in res.stdout.splitlines():
        if line.startswith("WORKLOAD "):
            info.update(json.loads(line[len("WORKLOAD "):]))
    if res.returncode != 0:
        info["error"] = (res.stderr or res.stdout).strip()[-500:]
    log(f"workload {name}: rc={res.returncode} pid={info.get('pid')} {info.get('driver', '')} {info['wall_s']}s")
    return info


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("out", type=Path)
    p.add_argument("fputrace")
    p.add_argument("--modes", default="fentry,kprobe,auto,tracepoint")
    p.add_argument("--sha256", nargs=2, type=int, default=[300, 65536], metavar=("N", "SIZE"))
    p.add_argument("--sha256-small", nargs=2, type=int, default=[300, 4096], metavar=("N", "SIZE"),
                   help="short syscalls, rarely preempted: what the tracepoint inference can see")
    p.add_argument("--gcm", nargs=2, type=int, default=[300, 65536], metavar=("N", "SIZE"))
    p.add_argument("--pingpong", type=int, default=2000, metavar="N")
    args = p.parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    result: dict = {"started_wall": time.time()}
    t_start = time.monotonic()

    def save() -> None:
        result["wall_s"] = round(time.monotonic() - t_start, 1)
        (out / "lab.json").write_text(json.dumps(result, indent=1))

    result["facts"] = kernel_facts()
    result["modules"] = load_modules()
    log(f"kernel {result['facts']['release']} modules {result['modules']}")
    save()

    # --- bpftrace, counting per process from before the first recorder starts
    funcs = [f for f in bpftrace_prog.FUNCS if result["facts"]["symbols"].get(f)]
    prog = bpftrace_prog.program(funcs, result["facts"]["tracepoints"])
    (out / "bpftrace.bt").write_text(prog)
    bt_log = out / "bpftrace.out"
    bt = subprocess.Popen(["bpftrace", str(out / "bpftrace.bt")], stdout=open(bt_log, "w"),
                          stderr=subprocess.STDOUT, start_new_session=True)
    why = wait_for(bt_log, bpftrace_prog.READY, bt, READY_TIMEOUT_S)
    result["bpftrace"] = {"funcs": funcs, "ready": not why, "error": why and f"{why}: {tail(bt_log)}"}
    log(f"bpftrace ready={not why} {why}")

    # --- all recorders at once (system-wide): they see the same workload processes
    recorders = {}
    for mode in args.modes.split(","):
        lg = out / f"record-{mode}.log"
        proc = subprocess.Popen([args.fputrace, "record", "--mode", mode, "-o", str(out / f"{mode}.fpt")],
                                stdout=open(lg, "w"), stderr=subprocess.STDOUT, start_new_session=True)
        recorders[mode] = (proc, lg)
    t0 = time.monotonic()
    result["recorders"] = {}
    for mode, (proc, lg) in recorders.items():
        why = wait_for(lg, "Tracing FPU", proc, max(1.0, READY_TIMEOUT_S - (time.monotonic() - t0)))
        result["recorders"][mode] = {"ready": not why, "ready_s": round(time.monotonic() - t0, 1),
                                     "error": why and f"{why}: {tail(lg)}"}
        log(f"recorder {mode}: ready={not why} after {time.monotonic() - t0:.0f}s {why}")
    save()

    # --- ground truth
    time.sleep(1.0)
    result["workloads"] = [
        run_workload(["sha256", *map(str, args.sha256)], out, "sha256"),
        run_workload(["sha256", *map(str, args.sha256_small)], out, "sha256-small"),
        run_workload(["gcm", *map(str, args.gcm)], out, "gcm"),
        run_workload(["pingpong", str(args.pingpong)], out, "pingpong"),
    ]
    time.sleep(1.0)
    save()

    # --- evidence for any fentry/kprobe difference: BPF programs' recursion misses (a kprobe
    #     program is skipped when it fires while another kprobe-attached program runs on the CPU)
    for what in ("prog", "link"):
        res = subprocess.run(["bpftool", "-j", what, "show"], capture_output=True, text=True)
        (out / f"bpftool-{what}.json").write_text(res.stdout if res.returncode == 0 else "[]")
    # --- clean stops: recorders first (they drain and close their files), then bpftrace
    for mode, (proc, lg) in recorders.items():
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    for mode, (proc, lg) in recorders.items():
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            result["recorders"][mode]["stop_error"] = f"did not stop within {STOP_TIMEOUT_S}s of SIGINT"
        result["recorders"][mode]["returncode"] = proc.returncode
        result["recorders"][mode]["log"] = tail(lg, 12)
        log(f"recorder {mode}: rc={proc.returncode}")
    if bt.poll() is None:
        bt.send_signal(signal.SIGINT)
    try:
        bt.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        bt.kill()
        bt.wait()
    result["bpftrace"]["returncode"] = bt.returncode
    result["bpftrace"]["counts"] = bpftrace_prog.parse(bt_log.read_text(errors="replace"))
    if not result["bpftrace"]["counts"]:
        result["bpftrace"]["error"] = result["bpftrace"]["error"] or f"no counts: {tail(bt_log)}"
    save()
    log("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
