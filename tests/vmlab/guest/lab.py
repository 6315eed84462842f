"""The lab run inside ONE guest boot (plain python3; fputrace and bpftrace run as subprocesses).

1. facts about the kernel (symbols, BTF, tracepoints); bpftrace starts (system-wide); meanwhile
   modules are loaded (no udev here) and the kernel subsystems (dm-crypt, WireGuard, md raid6,
   btrfs) set up;
2. once bpftrace is ready, one ``fputrace record`` per mode starts, all together, system-wide, so
   every mode and bpftrace observe the SAME processes;
3. each workload runs in its own *window*: ``prctl(WINDOW_MAGIC, k)`` before it, ``k = 0`` after
   it has settled. bpftrace counts per window and process; the host cuts fputrace's recordings at
   the timestamps bpftrace printed for the markers. Nothing outside the windows is compared (the
   recorders' start, the set-up and tear-down of the subsystems);
4. BPF program statistics (run counts, recursion misses) are saved, every recorder but the
   measuring one gets SIGINT (a clean stop), then bpftrace;
5. the measuring pass: the workloads once more, with the auto (else fentry) recorder alone (the figures of
   docs/CASES.md), then it stops too. Results go to OUT/lab.json, recordings to OUT/<mode>.fpt.

Usage: python3 lab.py OUT_DIR FPUTRACE_BIN [--modes fentry,kprobe,auto,tracepoint]
       [--sha256 N SIZE] [--sha256-small N SIZE] [--gcm N SIZE] [--pingpong N]
       [--subsystems dmcrypt=MIB,wireguard=MIB,raid6=MIB,btrfs=MIB]
"""
from __future__ import annotations

import argparse
import ctypes
import errno
import json
import os
import platform
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bpftrace_prog  # noqa: E402
import subsystems  # noqa: E402

HERE = Path(__file__).resolve().parent
SIMD_MODULES = ("sha256_ssse3", "aesni_intel", "algif_hash", "algif_skcipher", "algif_aead")
PROBE_SYMBOLS = bpftrace_prog.FUNCS + ("switch_fpu_prepare", "switch_fpu_finish", "fpregs_restore_userregs",
                                       "fpu__clear_user_states", "fpu_clone")
READY_TIMEOUT_S = 900
STOP_TIMEOUT_S = 300
SETTLE_S = 0.5
# the recorder that stays for the measuring pass: auto where it runs (on a preemptible kernel it
# takes kprobes for the kernel FPU begin/end, which fentry misses when preempted inside), else fentry
MEASURE_MODES = ("auto", "fentry")
_libc = ctypes.CDLL(None, use_errno=True)


def heartbeat(every_s: float = 5.0) -> None:
    """Touch $VMLAB_RUNDIR/heartbeat from a thread (no process of its own for the lab to compare):
    the host kills a guest whose heartbeat stops (qemu.STALL_S: a kernel livelocked under TCG)."""
    import threading
    path = Path(os.environ.get("VMLAB_RUNDIR", ".")) / "heartbeat"

    def beat() -> None:
        while True:
            path.touch()
            time.sleep(every_s)
    threading.Thread(target=beat, daemon=True).start()


def log(msg: str) -> None:
    print(f"[lab {time.monotonic():8.1f}] {msg}", flush=True)


def mark(window: int) -> None:
    """Open window ``window`` (0: close): bpftrace sees this prctl at sys_enter (it fails, EINVAL)."""
    _libc.prctl(bpftrace_prog.WINDOW_MAGIC, window, 0, 0, 0)


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
    preempt = preemption_model()
    return {"release": platform.release(), "btf": os.path.exists("/sys/kernel/btf/vmlinux"), "preempt": preempt,
            "symbols": {s: s in present for s in PROBE_SYMBOLS}, "tracepoints": tps,
            "cpu_flags": sorted(flags & {"avx", "avx2", "avx512f", "aes", "vaes", "sha_ni", "xsaves",
                                         "xsavec", "xsaveopt", "pclmulqdq"}),
            "nproc": os.cpu_count()}


def release() -> tuple[int, int]:
    major, minor = platform.release().split(".")[:2]
    return int(major), int(minor)


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


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def stop_recorders(recorders: dict, result: dict) -> None:
    """SIGINT to all at once (they drain in parallel), then wait for each."""
    for proc, _ in recorders.values():
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


KPROBE_EVENTS = Path("/sys/kernel/tracing/kprobe_events")
KPROBE_PROFILE = Path("/sys/kernel/tracing/kprobe_profile")
KPROBE_LIST = Path("/sys/kernel/debug/kprobes/list")
# the fentry site is 5 bytes (call __fentry__, nop5 when idle), after a 4-byte endbr64 where the
# kernel has IBT: the first instruction boundary past it is at most 9 bytes in
INT3_MAX_OFFSET = 16


def add_kprobe(name: str, where: str) -> None:
    """Define and enable the tracefs kprobe vmlab/<name> at ``where`` (fn or fn+off); OSError if
    the kernel refuses it (EILSEQ: ``where`` is not an instruction boundary)."""
    fd = os.open(KPROBE_EVENTS, os.O_WRONLY | os.O_APPEND)   # O_APPEND without the seek Python's
    try:                                                     # "a" mode makes (tracefs: EINVAL)
        os.write(fd, f"p:vmlab/{name} {where}\n".encode())
    finally:
        os.close(fd)
    Path(f"/sys/kernel/tracing/events/vmlab/{name}/enable").write_text("1\n")


def remove_kprobe(name: str) -> None:
    Path(f"/sys/kernel/tracing/events/vmlab/{name}/enable").write_text("0\n")
    fd = os.open(KPROBE_EVENTS, os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, f"-:vmlab/{name}\n".encode())
    finally:
        os.close(fd)


def kprobe_flags(fn: str, offset: int) -> str | None:
    """The flags debugfs lists for the kprobes at fn+offset ("[FTRACE]", "[OPTIMIZED]", ""), or
    None if none is listed there ("ffffffff81040af0  k  kernel_fpu_begin_mask+0x0    [FTRACE]")."""
    where = f"{fn}+{offset:#x}"
    for line in KPROBE_LIST.read_text().splitlines():
        parts = line.split(None, 3)
        if len(parts) >= 3 and parts[2] == where:
            return parts[3].strip() if len(parts) > 3 else ""
    return None


def arm_miss_counters(probes: dict[str, str]) -> dict[str, str]:
    """A tracefs kprobe on each function bpftrace probes, to read the kprobe layer's misses:
    a kprobe hit while another kprobe handler runs on that CPU (an interrupt's kernel FPU use
    during a handler) is skipped, and since kprobes on one address are aggregated, every one
    of them counts the miss: kprobe_profile's nmissed of ours = bpftrace's (and fputrace
    --mode kprobe's). BPF's own recursion misses (bpftool) are another counter."""
    armed = {}
    for fact, fn in probes.items():
        name = f"vmlab_{fact}"
        try:
            add_kprobe(name, fn)
            armed[fact] = name
        except OSError as err:
            log(f"kprobe miss counter for {fn}: {err}")
    return armed


def arm_drop_counters(probes: dict[str, str]) -> dict[str, dict]:
    """Beside each function-entry counter (an ftrace-based kprobe: the fentry site), an int3
    kprobe on the first instruction after the fentry site, to measure the hits the ftrace layer
    drops without counting them: kprobe_ftrace_handler returns at once when
    ftrace_test_recursion_trylock fails (ftrace callback recursion; counted only with
    CONFIG_FTRACE_RECORD_RECURSION, off in Debian's kernels), for every kprobe on that address
    (bpftrace's, fputrace --mode kprobe's, ours). An int3 kprobe does not pass that guard, and
    counts its own reentries in nmissed. No instruction lies between the two sites, so every call
    that reaches the first reaches the second: (int3 hits + missed) - (entry hits + missed) are
    the drops. The offset is found by asking the kernel: it refuses a kprobe off an instruction
    boundary (EILSEQ), and lists one on the fentry site (+0, or +4 after endbr64) as [FTRACE].
    -> fact -> {name, at, offset, flags, entry_flags} or {error}."""
    out = {}
    for fact, fn in probes.items():
        name = f"vmlab_{fact}_int3"
        out[fact] = {"error": f"no instruction boundary past the fentry site within {INT3_MAX_OFFSET} bytes"}
        for off in range(1, INT3_MAX_OFFSET + 1):
            try:
                add_kprobe(name, f"{fn}+{off}")
            except OSError as err:
                if err.errno == errno.EILSEQ:      # inside an instruction
                    continue
                out[fact] = {"error": f"{fn}+{off}: {err}"}
                break
            try:
                flags = kprobe_flags(fn, off)
                entry = next((f for o in range(off) if (f := kprobe_flags(fn, o)) is not None), None)
            except OSError as err:                   # no debugfs: the sites cannot be told apart
                remove_kprobe(name)
                out[fact] = {"error": f"{KPROBE_LIST}: {err}"}
                break
            if flags is None or "FTRACE" in flags:   # the fentry site itself (after endbr64)
                remove_kprobe(name)
                continue
            out[fact] = {"name": name, "at": f"{fn}+{off}", "offset": off, "flags": flags, "entry_flags": entry}
            break
        log(f"ftrace drop counter for {fn}: {out[fact]}")
    return out


TRACING = Path("/sys/kernel/tracing")
# each hit of an enabled tracefs kprobe is also an event in the trace buffer: with room for all of
# them (2 x ~230k calls in a lab run) and the clock of bpftrace's markers (bpf_ktime_get_ns =
# CLOCK_MONOTONIC = trace_clock "mono"), each int3 hit without an entry hit before it tells when
# and in which task a drop happened
TRACE_BUFFER_KB = 16384
_TRACE_LINE = re.compile(r"^\s*(?P<comm>.*?)-(?P<pid>\d+)\s+(?:\(\s*[\d-]+\)\s+)?\[(?P<cpu>\d+)\]\s+"
                         r"(?:\S+\s+)?(?P<ts>\d+\.\d+): (?P<event>vmlab_\w+):")


def start_drop_trace() -> dict:
    """An empty trace buffer on the mono clock, big enough for every counter event of the run."""
    out = {}
    for name, value in (("trace_clock", "mono"), ("buffer_size_kb", str(TRACE_BUFFER_KB))):
        try:
            (TRACING / name).write_text(value + "\n")
            out[name] = value
        except OSError as err:
            out[name] = f"error: {err}"
    os.close(os.open(TRACING / "trace", os.O_WRONLY | os.O_TRUNC))      # clear
    return out


def stop_drop_trace() -> None:
    """No more events into the buffer (the kprobes keep counting: kprobe_profile is not the buffer)."""
    (TRACING / "tracing_on").write_text("0\n")


def unpaired_calls(lines, twins: dict[str, dict]) -> dict:
    """Pair each int3 event with an entry event of the same fact before it in the same task (the
    idle task: on the same CPU); an int3 event without one is a call whose entry hit the ftrace
    layer dropped. -> {"events": n, "drops": [{fact, ts, cpu, pid, comm}], "entries_left": n}."""
    entry = {f"vmlab_{f}": f for f in twins}
    int3 = {t["name"]: f for f, t in twins.items() if "name" in t}
    pending: dict = {}
    out = {"events": 0, "drops": [], "entries_left": 0}
    for line in lines:
        m = _TRACE_LINE.match(line)
        if not m or (m["event"] not in entry and m["event"] not in int3):
            continue
        out["events"] += 1
        pid = int(m["pid"])
        fact = entry.get(m["event"]) or int3[m["event"]]
        key = (fact, pid if pid else -1 - int(m["cpu"]))
        if m["event"] in entry:
            pending[key] = pending.get(key, 0) + 1
        elif pending.get(key):
            pending[key] -= 1
        else:
            out["drops"].append({"fact": fact, "ts": float(m["ts"]), "cpu": int(m["cpu"]), "pid": pid,
                                 "comm": m["comm"].strip()})
    out["entries_left"] = sum(pending.values())
    return out


def drop_trace(twins: dict[str, dict]) -> dict:
    """unpaired_calls over the trace buffer, with the buffer's overruns (lost events: then the
    pairing is incomplete)."""
    overrun = {}
    for cpu_dir in sorted((TRACING / "per_cpu").glob("cpu*")):
        for line in (cpu_dir / "stats").read_text().splitlines():
            if line.startswith("overrun:"):
                overrun[cpu_dir.name] = int(line.split()[1])
    with open(TRACING / "trace") as f:
        res = unpaired_calls(f, twins)
    res["overrun"] = overrun
    res["drops"] = res["drops"][:100]
    return res


def skip_evidence(armed: dict[str, str], twins: dict[str, dict] | None = None) -> dict:
    """What the kernel counted at this moment: per probed function the kprobe's hits (every hit
    that reached the handlers) and misses, and every BPF program's run count. Taken when all
    tracers are ready and again after the last window: hits minus a kprobe program's runs in
    between are the runs the kernel skipped (bpf_prog_active: the hit came while another kprobe
    or tracepoint program ran on that CPU), which kernels before ~6.7 count nowhere else.
    ``int3``: the same for the int3 kprobes of arm_drop_counters (read in the same pass over
    kprobe_profile as the function-entry ones)."""
    both = kprobe_misses({**armed, **{f"{f}_int3": t["name"] for f, t in (twins or {}).items() if "name" in t}})
    return {"kprobes": {f: v for f, v in both.items() if f in armed},
            "int3": {f.removesuffix("_int3"): v for f, v in both.items() if f.endswith("_int3")},
            "programs": [{"type": p.get("type"), "name": p.get("name"), "run_cnt": p.get("run_cnt")}
                         for p in bpf_programs()]}


def kprobe_misses(armed: dict[str, str]) -> dict[str, dict[str, int]]:
    """fact -> {hits, missed} from kprobe_profile ("  name  hits  missed")."""
    rows = {}
    try:
        for line in KPROBE_PROFILE.read_text().splitlines():
            parts = line.split()
            if len(parts) == 3:
                rows[parts[0]] = {"hits": int(parts[1]), "missed": int(parts[2])}
    except OSError:
        return {}
    return {fact: rows[name] for fact, name in armed.items() if name in rows}


def bpf_programs() -> list[dict]:
    res = subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True, text=True)
    try:
        return json.loads(res.stdout) if res.returncode == 0 else []
    except ValueError:
        return []


def parse_subsystems(spec: str) -> dict[str, int]:
    out = {}
    for item in filter(None, spec.split(",")):
        name, _, mib = item.partition("=")
        out[name] = int(mib or 8)
    return out


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("out", type=Path)
    p.add_argument("fputrace")
    p.add_argument("--modes", default="fentry,kprobe,auto,tracepoint")
    p.add_argument("--sha256", nargs=2, type=int, default=[300, 65536], metavar=("N", "SIZE"))
    p.add_argument("--sha256-small", nargs=2, type=int, default=[300, 4096], metavar=("N", "SIZE"),
                   help="short syscalls, rarely preempted: what the tracepoint inference can see")
    p.add_argument("--gcm", nargs=2, type=int, default=[300, 65536], metavar=("N", "SIZE"))
    p.add_argument("--pingpong", type=int, default=2000, metavar="N")
    p.add_argument("--subsystems", default="dmcrypt=8,wireguard=4,raid6=8,btrfs=8")
    return p.parse_args()


def set_up(args, out: Path, result: dict) -> list:
    """Modules and the kernel subsystems: everything before the recorders start (bpftrace is
    already starting: its start-up overlaps this; it counts nothing outside the windows)."""
    subs = [subsystems.SUBSYSTEMS[name](mib) for name, mib in parse_subsystems(args.subsystems).items()]
    result["modules"] = subsystems.modprobe(*SIMD_MODULES, *(m for s in subs for m in s.modules))
    log(f"kernel {result['facts']['release']} modules {result['modules']}")
    result["subsystems"] = {}
    ready = []
    for s in subs:               # outside every window: key set-up uses the kernel FPU too
        t0 = time.monotonic()
        missing = s.missing_tool()
        try:
            if missing:
                raise subsystems.SetupError(f"{missing} not installed in the host root (run ./setup.sh)")
            info = s.setup()
            ready.append(s)
            result["subsystems"][s.name] = {"ready": True, "setup_s": round(time.monotonic() - t0, 1), **info}
        except (subsystems.SetupError, OSError) as err:
            result["subsystems"][s.name] = {"ready": False, "error": str(err)}
        log(f"subsystem {s.name}: {result['subsystems'][s.name]}")
    return ready


def start_bpftrace(out: Path, result: dict) -> subprocess.Popen:
    """bpftrace first, alone: it is ready before any recorder attaches, as in every lab run
    before the kernel subsystems came (7.2 crashed once, a call to NULL on the syscall exit path,
    while bpftrace and four recorders attached at the same time; cause not established). Its
    start-up (up to 2 min under TCG on 5.10) overlaps the subsystems' set-up."""
    probes = bpftrace_prog.choose({f for f, ok in result["facts"]["symbols"].items() if ok})
    (out / "bpftrace.bt").write_text(bpftrace_prog.program(probes, result["facts"]["tracepoints"]))
    result["bpftrace"] = {"probes": probes, "ready": False, "error": "", "t0": time.monotonic()}
    return subprocess.Popen(["bpftrace", str(out / "bpftrace.bt")], stdout=open(out / "bpftrace.out", "w"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def start_recorders(args, out: Path, result: dict, bt: subprocess.Popen) -> dict:
    """Once bpftrace is ready: one recorder per mode, started together (their start-ups overlap;
    nothing is compared before the first window opens), all system-wide. -> {mode: (proc, log)}"""
    bt_log = out / "bpftrace.out"
    why = wait_for(bt_log, bpftrace_prog.READY, bt, READY_TIMEOUT_S)
    t0 = result["bpftrace"].pop("t0")
    result["bpftrace"].update(ready=not why, error=why and f"{why}: {tail(bt_log)}", pid=bt.pid,
                              ready_s=round(time.monotonic() - t0, 1))
    log(f"bpftrace ready={not why} after {time.monotonic() - t0:.0f}s {why}")
    recorders = {}
    t0 = time.monotonic()
    for mode in args.modes.split(","):
        lg = out / f"record-{mode}.log"
        proc = subprocess.Popen([args.fputrace, "record", "--mode", mode, "-o", str(out / f"{mode}.fpt")],
                                stdout=open(lg, "w"), stderr=subprocess.STDOUT, start_new_session=True)
        recorders[mode] = (proc, lg)
    result["recorders"] = {}
    for mode, (proc, lg) in recorders.items():
        why = wait_for(lg, "Tracing FPU", proc, max(1.0, READY_TIMEOUT_S - (time.monotonic() - t0)))
        result["recorders"][mode] = {"ready": not why, "ready_s": round(time.monotonic() - t0, 1),
                                     "error": why and f"{why}: {tail(lg)}", "pid": proc.pid}
        log(f"recorder {mode}: ready={not why} after {time.monotonic() - t0:.0f}s {why}")
    return recorders


def stop_bpftrace(bt: subprocess.Popen, bt_log: Path, result: dict) -> None:
    stop(bt)
    text = bt_log.read_text(errors="replace")
    result["bpftrace"].update(returncode=bt.returncode, counts=bpftrace_prog.parse(text),
                              windows=bpftrace_prog.windows(text), lost=bpftrace_prog.lost_lines(text))
    if not result["bpftrace"]["counts"]:
        result["bpftrace"]["error"] = result["bpftrace"]["error"] or f"no counts: {tail(bt_log)}"


def main() -> int:
    args = parse_args()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    result: dict = {"started_wall": time.time(), "driver_pid": os.getpid()}
    t_start = time.monotonic()
    heartbeat()

    def save() -> None:
        result["wall_s"] = round(time.monotonic() - t_start, 1)
        (out / "lab.json").write_text(json.dumps(result, indent=1))

    result["facts"] = kernel_facts()
    subprocess.run(["sysctl", "-qw", "kernel.bpf_stats_enabled=1"])   # run_cnt in bpftool
    bt = start_bpftrace(out, result)
    ready_subs = set_up(args, out, result)
    save()
    recorders = start_recorders(args, out, result, bt)
    # armed once every tracer is attached, and only where the kernel does not count a kprobe
    # program's skipped runs itself (recursion_misses of kprobe programs: 6.7+): on 7.x the lab
    # runs exactly the tracers of every run that did not crash (see start_bpftrace)
    result["kprobe_counters"] = (arm_miss_counters(result["bpftrace"]["probes"])
                                 if release() < (6, 7) else {})
    result["drop_counters"] = arm_drop_counters({f: result["bpftrace"]["probes"][f]
                                                 for f in result["kprobe_counters"]})
    if result["drop_counters"]:
        try:
            result["drop_trace"] = {"setup": start_drop_trace()}
        except OSError as err:
            result["drop_trace"] = {"error": f"trace buffer: {err}"}
    result["skips"] = {"ready": skip_evidence(result["kprobe_counters"], result["drop_counters"])}
    save()

    # --- the workloads, one window each
    plan = [("sha256", ["sha256", *map(str, args.sha256)]),
            ("sha256-small", ["sha256", *map(str, args.sha256_small)]),
            ("gcm", ["gcm", *map(str, args.gcm)]),
            ("pingpong", ["pingpong", str(args.pingpong)])]
    plan += [(s.name, s.io_argv()) for s in ready_subs]
    time.sleep(1.0)
    result["workloads"] = []
    for k, (name, argv) in enumerate(plan, 1):
        mark(k)
        info = run_workload(argv, out, name)
        subsystems.settle(SETTLE_S)
        mark(0)
        result["workloads"].append(info | {"window": k})
        time.sleep(0.2)
    save()

    # --- evidence: every BPF program's run count and recursion misses, before anything detaches;
    #     then clean stops (recorders drain and close their files), but the measuring recorder
    (out / "bpftool-prog.json").write_text(json.dumps(bpf_programs()))
    result["kprobe_misses"] = kprobe_misses(result["kprobe_counters"])
    result["skips"]["done"] = skip_evidence(result["kprobe_counters"], result["drop_counters"])
    if result["drop_counters"]:
        try:
            stop_drop_trace()
        except OSError as err:
            result["drop_trace"]["error"] = f"tracing_on: {err}"
    keep = next((m for m in MEASURE_MODES if m in recorders), None)
    result["measure_mode"] = keep
    stop_recorders({m: r for m, r in recorders.items() if m != keep}, result)
    stop_bpftrace(bt, out / "bpftrace.out", result)
    save()

    # --- the measuring pass: the same workloads again with one recorder and no other tracer, so
    #     the figures of docs/CASES.md (durations, replayed policies) are not those of five tools
    #     at once; windows by the guest's CLOCK_MONOTONIC (bpf_ktime_get_ns is the same clock)
    result["measure"] = []
    if keep:
        for name, argv in plan:
            lo = time.monotonic_ns()
            info = run_workload(argv, out, f"measure-{name}")
            subsystems.settle(SETTLE_S)
            result["measure"].append(info | {"name": name, "lo_ns": lo, "hi_ns": time.monotonic_ns()})
            time.sleep(0.2)
        stop_recorders({keep: recorders[keep]}, result)
    for s in reversed(ready_subs):
        s.teardown()
    if result["drop_counters"]:       # read last: the text of every counter event, slow under TCG
        t0 = time.monotonic()
        try:
            result["drop_trace"].update(drop_trace(result["drop_counters"]))
        except OSError as err:
            result["drop_trace"]["error"] = str(err)
        log(f"drop trace: {time.monotonic() - t0:.0f}s {({k: v for k, v in result['drop_trace'].items() if k != 'drops'})}")
    save()
    log("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
