"""Stock-kernel lab (SPEC 7, issues 4, 8 and 11): fputrace's fentry, kprobe, auto and tracepoint
modes on Debian 5.10, 6.1, 6.12 and 7.x kernels under QEMU, cross-checked against bpftrace in the
same guest run, per window and per process, for EVERY process that ran in the window.

One boot per kernel (module-scoped fixture): bpftrace counts per window and process; one
``fputrace record`` per mode records system-wide at the same time, so all of them and bpftrace
observe the SAME processes; each workload runs in its own window (AF_ALG hashing and AEAD,
a pipe ping-pong, dm-crypt, WireGuard, md raid6, btrfs); the files are analysed on the host.

Environment knobs (developers): FPUTRACE_VMLAB_KERNELS=6.1,7 limits the kernels;
FPUTRACE_VMLAB_REUSE=1 reuses the last stored result of each kernel instead of booting (only for
working on these assertions; CI never sets it).
"""
from __future__ import annotations

import os
import re
import shutil
import warnings

import pytest

from tests.vmlab import analysis, kernels, lab as labmod

# one kernel boot (fetch on first use + a few minutes of emulation) happens inside the first test
pytestmark = [pytest.mark.vmlab, pytest.mark.slow, pytest.mark.timeout(2700)]

LABELS = [k for k in os.environ.get("FPUTRACE_VMLAB_KERNELS", ",".join(kernels.KERNELS)).split(",") if k]
FACTS = labmod.FACTS
KERNEL_WORKLOADS = ("dmcrypt", "wireguard", "raid6", "btrfs")


def _missing_capability() -> str:
    if os.geteuid() != 0:
        return "needs root (BPF in the guest is fine, but the cache in /var/cache and dpkg -x need root)"
    for tool, pkg in (("qemu-system-x86_64", "qemu-system-x86"), ("bpftrace", "bpftrace"),
                      ("mkfs.ext4", "e2fsprogs"), ("cpio", "cpio"), ("zstd", "zstd"),
                      ("apt-get", "apt"), ("dpkg", "dpkg"), ("depmod", "kmod")):
        if shutil.which(tool) is None:
            return f"{tool} not installed (Debian package {pkg}; run ./setup.sh)"
    if not os.path.exists("/bin/busybox"):
        return "/bin/busybox missing (Debian busybox-static; run ./setup.sh)"
    if not (labmod.qemu.REPO_DIR / ".venv" / "bin" / "fputrace").exists():
        return "the repository venv has no fputrace (run ./setup.sh): the guest runs .venv/bin/fputrace"
    return ""


@pytest.fixture(scope="module", params=LABELS)
def lab(request) -> dict:
    missing = _missing_capability()
    if missing:
        pytest.skip(missing)
    label = request.param
    if os.environ.get("FPUTRACE_VMLAB_REUSE") == "1" and labmod.load_result(label):
        return _warn_panics(labmod.load_result(label))
    try:
        return _warn_panics(labmod.run_lab(label, log=lambda m: print(m, flush=True)))
    except kernels.FetchError as err:
        unreachable = kernels.registry_unreachable()
        if unreachable:
            pytest.skip(f"kernel {label}: the Debian archive is not reachable ({unreachable}): {err}")
        pytest.fail(f"kernel {label} could not be fetched although the Debian archive answers: {err}")


# ---- helpers ---------------------------------------------------------------------------------
class GuestPanicWarning(UserWarning):
    """A lab guest panicked or stalled and was booted once more (lab.run_lab); shown in pytest's summary."""


def _warn_panics(lab: dict) -> dict:
    for p in lab["kernel"].get("panics") or []:
        warnings.warn(GuestPanicWarning(
            f"{lab['kernel']['release']}: the first boot failed after {p['after_s']} s and the lab booted "
            f"once more: {p.get('bug')}" + (f" at {p['rip']} in {p.get('task')}" if p.get("rip") else "") +
            (f"; trace {' < '.join(p['frames'])}" if p.get("frames") else "") +
            f"; last output {p.get('last_output')}; console {p['run_dir']}/console.log"))
    return lab


def _guest_ok(lab: dict) -> None:
    k = lab["kernel"]
    assert lab.get("guest"), (f"{k['release']}: the guest lab produced no lab.json ({k['reason'] or 'rc=' + str(k['returncode'])})"
                              f"\n{k['output_tail']}")


def _need_mode(lab: dict, mode: str) -> None:
    if mode not in lab.get("modes_run", labmod.MODES):
        pytest.skip(f"--mode {mode} is not run on {lab['kernel']['label']} (lab.MODES_BY_KERNEL: each "
                    f"recorder start costs 1-2 min under TCG; it runs on "
                    f"{[k for k, v in labmod.MODES_BY_KERNEL.items() if mode in v]})")


def _rows(lab: dict, mode: str) -> list[dict]:
    return [r for r in lab.get("rows", []) if r["mode"] == mode]


def _release_tuple(lab: dict) -> tuple[int, int]:
    m = re.match(r"(\d+)\.(\d+)", lab["kernel"]["release"])
    return int(m.group(1)), int(m.group(2))


def _window(lab: dict, workload: str) -> int:
    return next(int(k) for k, w in lab["windows"].items() if w["workload"] == workload)


def _workload(lab: dict, name: str) -> dict:
    return next(w for w in lab["guest"]["workloads"] if w["name"] == name)


def _model(lab: dict, mode: str, workload: str) -> dict:
    return lab["modes"][mode]["model"][str(_window(lab, workload))]


def _tasks(lab: dict, mode: str, workload: str) -> dict[int, dict]:
    return {int(t): v for t, v in _model(lab, mode, workload)["tasks"].items()}


def _misses(lab: dict, tool: str) -> dict[str, int]:
    return (lab.get("bpftool", {}).get("misses") or {}).get(tool) or {}


def _at_edge(lab: dict, mode: str, r: dict, fact: str) -> int:
    """fputrace's events of this fact and process (row r) within analysis.EDGE_NS of its window's
    markers on another CPU, in the recording of this mode."""
    return analysis.edge_events(lab["modes"][mode].get("edge_by_tgid") or {}, r["window"], r["tgid"], fact)


def _diffs(lab: dict, mode: str, rows: list[dict], pairs) -> list[str]:
    """Per-process differences that the measured reasons do not explain, by analysis.compare's
    rule (window-edge events per process; misses, kprobe-layer misses and ftrace-layer drops
    summed): nothing else is tolerated, in the lab's own tracers neither. Until 2026-12-02 their
    rows had one more event of slack (TRACER_SLACK, never measured); at 0 every stored run since
    the analysis took its form passes (7 full lab runs, 27 kernel runs, all kernels), and the
    one 6.1 event that needed it (a blake2s section in the kprobe recorder that neither kprobe
    tool counted) has the ftrace drop counter beside it now."""
    out = []
    for c in analysis.compare(lab, mode, rows, pairs):
        if c["explained"]:
            continue
        for d in c["differing"]:
            r = d["row"]
            w = lab["windows"][str(r["window"])]["workload"]
            out.append(f"window {r['window']} ({w}) tgid {r['tgid']}{' (a tracer)' if d['tracer'] else ''}: "
                       f"{c['ours']}={r[c['ours']]} bpftrace={r[c['theirs']]} (events at the window's edge {d['edge']})")
        out.append(f"{c['ours']}: +{c['over']}/-{c['under']} over all processes beyond the events at window edges; "
                   f"measured misses: bpftrace {c['bpftrace_missed']}, fputrace {c['fputrace_missed']}; "
                   f"{analysis.drops_note(lab.get('ftrace_drops') or {}, c['fact'])}")
    return out


# ---- the run itself --------------------------------------------------------------------------
def test_guest_run_completed(lab):
    _guest_ok(lab)
    k = lab["kernel"]
    assert k["returncode"] == 0, f"guest lab exit status {k['returncode']} {k['reason']}\n{k['output_tail']}"
    failed = [w for w in lab["guest"]["workloads"] if w["returncode"] != 0]
    assert not failed, f"workloads failed: {failed}"
    broken = {n: s["error"] for n, s in lab["guest"]["subsystems"].items() if not s["ready"]}
    assert not broken, f"kernel subsystems could not be set up: {broken}"
    assert {w["name"] for w in lab["guest"]["workloads"]} >= set(KERNEL_WORKLOADS)


def test_simd_drivers_in_use(lab):
    """Without udev nothing autoloads the SIMD drivers; the lab loads them, and each subsystem
    must run on them (a generic C driver never touches the kernel FPU)."""
    _guest_ok(lab)
    drivers = {w["name"]: w.get("driver", "?") for w in lab["guest"]["workloads"]}
    assert "generic" not in drivers["sha256"].replace("generic-gcm", ""), drivers
    assert "aesni" in drivers["gcm"] or "vaes" in drivers["gcm"], drivers
    subs = lab["guest"]["subsystems"]
    assert "aesni" in subs["dmcrypt"]["driver"] or "vaes" in subs["dmcrypt"]["driver"], subs["dmcrypt"]
    assert "generic" not in subs["btrfs"]["driver"], subs["btrfs"]
    assert "avx2" in subs["raid6"]["gen_syndrome"] or "avx512" in subs["raid6"]["gen_syndrome"], subs["raid6"]


def test_bpftrace_cross_check_ran(lab):
    _guest_ok(lab)
    bt = lab["guest"]["bpftrace"]
    assert bt["ready"], f"bpftrace did not start: {bt['error']}"
    assert bt.get("lost", 0) == 0, f"bpftrace lost {bt['lost']} output events (the window markers)"
    names = [w["name"] for w in lab["guest"]["workloads"]]
    assert [w["workload"] for _, w in sorted(lab["windows"].items(), key=lambda kv: int(kv[0]))] == names
    sha = (bt.get("counts") or {}).get(str(_window(lab, "sha256")), {})
    assert sha.get(str(_workload(lab, "sha256")["pid"]), {}).get("kfpu_begin", 0) > 0, \
        f"bpftrace saw no kernel FPU use by the sha256 workload: {bt}"


@pytest.mark.parametrize("mode", labmod.MODES)
def test_recorder_clean(lab, mode):
    """Each mode attached, recorded and stopped cleanly on SIGINT, complete file, no loss."""
    _guest_ok(lab)
    _need_mode(lab, mode)
    st = lab["guest"]["recorders"][mode]
    assert st["ready"], f"fputrace record --mode {mode} never started tracing: {st['error']}"
    assert st.get("returncode") == 0, f"fputrace record --mode {mode} exit {st.get('returncode')}: {st.get('log')}"
    m = lab["modes"][mode]
    assert "error" not in m, m.get("error")
    meta = m["meta"]
    assert not meta["truncated"], f"{mode}: recording incomplete"
    assert sum((meta["lost_per_cpu"] or {}).values()) == 0, f"{mode}: lost events {meta['lost_per_cpu']}"
    auto = "kprobe" if _preemptible(lab) else "fentry"
    expected = {"fentry": "fentry", "kprobe": "kprobe", "auto": auto, "tracepoint": "tracepoint"}[mode]
    assert meta["capture_mode"] == expected, f"--mode {mode} recorded as {meta['capture_mode']}"


def _preemptible(lab: dict) -> bool:
    """The guest kernel's preemption model (debugfs sched/preempt) allows preempting kernel code."""
    model = lab["guest"]["facts"].get("preempt")
    assert model, f"the guest did not report its preemption model: {lab['guest']['facts']}"
    return model in ("full", "lazy", "rt")


# ---- exact modes: every process, every window --------------------------------------------------
@pytest.mark.parametrize("mode", labmod.EXACT_MODES)
def test_event_counts_equal_bpftrace(lab, mode):
    """Per window and process (every tgid either tool saw: workloads, kworkers, md threads, the
    idle task, ksoftirqd, bpftrace and the recorders themselves), fputrace's exact events (read
    back with fputrace.load) equal bpftrace's kprobe counts of the same kernel functions:
    kernel FPU begin/end -> KFPU_BEGIN/END, the save function -> XSAVE, the restore function
    (5.10: the x86_fpu_regs_activated tracepoint, the restore being inline) -> XRSTOR,
    switch_fpu_return -> USER_RETURN. The only tolerance is the measured recursion misses."""
    _guest_ok(lab)
    _need_mode(lab, mode)
    rows = _rows(lab, mode)
    assert rows, f"no analysis rows for mode {mode}: {lab['modes'].get(mode)}"
    pairs = [(f"fpt_{f}", f"bt_{f}") for f in FACTS if f != "xrstor" or _has_restore_probe(lab)]
    diff = _diffs(lab, mode, rows, pairs)
    if not _has_restore_probe(lab):
        diff += _diffs(lab, mode, rows, [("fpt_xrstor", "bt_tp_activated")])
    assert not diff, f"{lab['kernel']['release']} --mode {mode}:\n" + "\n".join(diff)
    assert sum(r["fpt_kfpu_begin"] for r in rows) > 0 and sum(r["fpt_xrstor"] for r in rows) > 0


def _has_restore_probe(lab: dict) -> bool:
    return "xrstor" in lab["guest"]["bpftrace"]["probes"]


@pytest.mark.parametrize("mode", labmod.EXACT_MODES)
def test_model_report_equals_bpftrace(lab, mode):
    """The model, fed with each window's events, keeps the exact counts per process: XSAVE,
    XRSTOR and kernel FPU sections equal bpftrace's, and in an exact mode it infers no section
    of its own (kernel FPU begin is probed: every section is seen)."""
    _guest_ok(lab)
    _need_mode(lab, mode)
    assert "model_error" not in lab["modes"][mode], lab["modes"][mode].get("model_error")
    rows = _rows(lab, mode)
    invented = {(r["window"], r["tgid"]): r["model_kfpu_sections_inferred"] for r in rows
                if r["model_kfpu_sections_inferred"]}
    assert not invented, f"{lab['kernel']['release']} --mode {mode}: inferred sections in an exact mode: {invented}"
    restore = "bt_xrstor" if _has_restore_probe(lab) else "bt_tp_activated"
    diff = _diffs(lab, mode, rows, [("model_kfpu_sections", "bt_kfpu_begin"), ("model_xsave", "bt_xsave"),
                                    ("model_xrstor", restore)])
    assert not diff, f"{lab['kernel']['release']} --mode {mode}:\n" + "\n".join(diff)


@pytest.mark.parametrize("mode", labmod.MODES)
def test_fork_records_name_the_child_process(lab, mode):
    """Every FORK record in the windows names the child's tgid (0 would put a new kworker's
    sections under the idle task). The parent can be preempted and migrate between task_newtask
    and sched_process_fork (7.x: preempt=lazy), so the BPF side pairs them by child pid, not by
    CPU. (A fork racing the recorder's own attach, task_newtask before its program is attached,
    cannot be paired: such forks are outside the windows.)"""
    _guest_ok(lab)
    _need_mode(lab, mode)
    forks = lab["modes"][mode]["forks"]
    assert forks["total"] > 0 and forks["unknown_tgid"] == 0, forks


@pytest.mark.parametrize("workload", KERNEL_WORKLOADS)
def test_kernel_threads_do_the_work(lab, workload):
    """Issue 8.2: the kernel FPU use of dm-crypt, WireGuard, raid6 and btrfs happens in kernel
    threads (kcryptd and crypt workers, md0_raid6, btrfs/writeback workers) and in interrupt
    context; fentry sees it there, process by process as bpftrace does (the counts themselves are
    compared for every process above). Here: most sections of the window belong to kernel
    threads, and each of those threads' counts equals bpftrace's."""
    _guest_ok(lab)
    k = _window(lab, workload)
    tasks = _tasks(lab, "fentry", workload)
    rows = [r for r in _rows(lab, "fentry") if r["window"] == k]
    kthread_rows = [r for r in rows if tasks.get(r["tgid"], {}).get("kthread") or r["tgid"] == 0]
    in_kthreads = sum(r["bt_kfpu_begin"] for r in kthread_rows)
    total = sum(r["bt_kfpu_begin"] for r in rows)
    assert total > 0, f"{workload}: no kernel FPU section in its window: {rows}"
    if workload != "btrfs":        # btrfs checksums part of the data in the writer's own context
        assert in_kthreads >= 0.5 * total, \
            f"{workload}: only {in_kthreads} of {total} sections in kernel threads: {kthread_rows}"
    else:
        assert in_kthreads > 0, f"btrfs: no section in a kernel thread: {rows}"
    assert not _diffs(lab, "fentry", kthread_rows, [("fpt_kfpu_begin", "bt_kfpu_begin"),
                                                    ("fpt_kfpu_end", "bt_kfpu_end")]), kthread_rows


# ---- attach points and kernel facts ------------------------------------------------------------
def test_auto_mode_on_stock_kernel(lab):
    """Stock kernels have BTF and allow fentry: auto chooses it for every FPU probe that exists,
    except, on a preemptible kernel (7.x: preempt=lazy), the probes whose function entry runs
    with preemption on (kernel FPU begin, paired with its end, and fork's save): there an fentry
    program can be preempted, and the kernel then skips it for every other task on that CPU
    (recursion misses; see test_fentry_misses_on_preemptible_kernels), so auto takes the kprobe
    and says why. Checked on the recording in auto mode (run on 5.10 and 7.x)."""
    _guest_ok(lab)
    _need_mode(lab, "auto")
    attach, refused = lab["modes"]["auto"]["attach"], lab["modes"]["auto"]["refused"]
    preemptible = _preemptible(lab)
    for ev in ("kfpu_begin", "kfpu_end", "xsave", "user_return", "fork_save"):
        if ev not in attach:
            continue
        want = "kprobe:" if preemptible and ev in ("kfpu_begin", "kfpu_end", "fork_save") else "fentry:"
        assert str(attach[ev]).startswith(want), f"auto chose {attach[ev]} for {ev}: {attach}"
        if want == "kprobe:":
            assert "preempt=" in refused[ev]["fentry"], refused[ev]


def test_fentry_misses_on_preemptible_kernels(lab):
    """The evidence for auto's choice above, measured: on a preemptible kernel the fentry
    recorder's program on the kernel FPU begin function has recursion misses (runs the kernel
    skipped while another task was preempted inside it); kprobe and auto (kprobe there) have at
    most the few that any BPF program has when it fires inside another one (as many as
    bpftrace's kprobe on the same function). Where the kernel is not preemptible, fentry misses
    next to nothing."""
    _guest_ok(lab)
    own = {m: analysis.own_misses(lab["modes"][m]["meta"]) for m in ("fentry", "kprobe", "auto")
           if m in lab.get("modes_run", [])}
    if any(v is None for v in own.values()) or _release_tuple(lab) < (5, 12):
        pytest.skip(f"{lab['kernel']['release']}: recursion misses are not counted (kernel < 5.12)")
    bt = _misses(lab, "bpftrace").get("kfpu_begin", 0)
    begins = sum(r["bt_kfpu_begin"] for r in _rows(lab, "fentry"))
    fentry = own["fentry"].get("kfpu_begin", 0)
    if _preemptible(lab):
        assert fentry > bt, f"preemptible kernel, fentry misses {fentry} of {begins}, bpftrace {bt}: {own}"
    else:
        assert fentry <= max(2, bt), f"fentry misses {fentry} of {begins} on a non-preemptible kernel: {own}"
    for mode in ("kprobe", "auto"):
        if mode in own and (mode == "kprobe" or _preemptible(lab)):
            assert own[mode].get("kfpu_begin", 0) <= max(2, 2 * bt), f"{mode}: {own[mode]} (bpftrace {bt})"


def test_ftrace_drop_counter(lab):
    """The ftrace-drop counter (guest/lab.py arm_drop_counters), where the miss counters are
    armed (before 6.7): beside each ftrace-based kprobe on a probed function's fentry site, an
    int3 kprobe on the next instruction, listed without [FTRACE] while the entry one has it, and
    counting: every call reaches both sites, so the int3 kprobe's hits + missed are never fewer
    than the entry one's beyond the calls between the two sites while a snapshot was read (one
    per CPU). More are hits the ftrace layer dropped uncounted: analysis.misses counts them as
    misses of both kprobe tools, so a difference they explain is allowed (_diffs)."""
    _guest_ok(lab)
    twins = lab["guest"].get("drop_counters")
    if not lab["guest"].get("kprobe_counters"):
        pytest.skip(f"{lab['kernel']['release']}: no tracefs miss counters armed (kernel >= 6.7 counts kprobe "
                    f"programs' skips itself; the lab adds no kprobes there), so no drop counter either")
    assert twins and set(twins) == set(lab["guest"]["kprobe_counters"]), twins
    drops = lab.get("ftrace_drops") or {}
    bad = {f: t for f, t in twins.items() if "name" not in t or "FTRACE" in (t.get("flags") or "")
           or "FTRACE" not in (t.get("entry_flags") or "")}
    assert not bad, f"int3 kprobe not registered past an [FTRACE] entry kprobe: {bad}"
    assert set(drops) == set(twins) and all("drops" in d for d in drops.values()), drops
    ncpu = lab["guest"]["facts"].get("nproc") or 1
    for fact, d in drops.items():
        entry = d["entry_hits"] + d["entry_missed"]
        assert d["drops"] >= -ncpu, f"{fact}: the int3 kprobe at {d['at']} saw fewer calls than the entry: {d}"
        if fact in ("kfpu_begin", "kfpu_end", "xsave", "user_return"):      # busy in every run
            assert entry > 0 and d["int3_hits"] > 0, f"{fact}: no calls counted: {d}"
    # the same calls as trace events, paired per task (drops found there are listed, not asserted)
    traced = lab.get("ftrace_drops_traced") or {}
    if "events" in traced or lab["guest"].get("drop_trace"):
        assert "events" in traced, f"the trace buffer pairing failed: {traced}"
        assert traced["events"] > 0 and not sum(traced["overrun"].values()), \
            f"trace buffer: {traced['events']} counter events, overruns {traced['overrun']}"


def test_tif_need_fpu_load_bit(lab):
    """TIF_NEED_FPU_LOAD is bit 14 from 5.2 up to 6.17 and bit 19 from 6.18 (generic TIF bits)."""
    _guest_ok(lab)
    expected = 19 if _release_tuple(lab) >= (6, 18) else 14
    got = {mode: m["meta"]["tif_need_fpu_load_bit"] for mode, m in lab["modes"].items() if "meta" in m}
    assert got and all(v == expected for v in got.values()), \
        f"{lab['kernel']['release']}: expected bit {expected}, recordings say {got}"


def test_5_10_attach_points_and_fallbacks(lab):
    """SPEC 4, the 5.2-5.10 column: kernel_fpu_begin is a real function (kernel_fpu_begin_mask
    only where a stable backport added it), the save is copy_fpregs_to_fpstate, the restore is
    inline, so XRSTOR comes from x86_fpu_regs_activated and the recording says why the probes
    were refused; TIF_NEED_FPU_LOAD is bit 14; 5.10 has BTF and the ring buffer (5.8+)."""
    _guest_ok(lab)
    if _release_tuple(lab) != (5, 10):
        pytest.skip(f"the 5.2-5.10 attach points are checked on 5.10 only (this is {lab['kernel']['release']})")
    facts = lab["guest"]["facts"]
    assert facts["btf"], "Debian 11's kernel has BTF"
    sym = facts["symbols"]
    assert sym["kernel_fpu_begin"] or sym["kernel_fpu_begin_mask"]
    assert sym["copy_fpregs_to_fpstate"] and not sym["save_fpregs_to_fpstate"]
    assert not sym["restore_fpregs_from_fpstate"] and not sym["__restore_fpregs_from_fpstate"]
    for mode in [m for m in ("fentry", "kprobe", "auto") if m in lab.get("modes_run", [])]:
        m = lab["modes"][mode]
        how = "fentry" if mode == "auto" else mode      # 5.10 is not preemptible: auto = fentry
        begin = "kernel_fpu_begin_mask" if sym["kernel_fpu_begin_mask"] else "kernel_fpu_begin"
        assert m["attach"]["kfpu_begin"] == f"{how}:{begin}", m["attach"]
        assert m["attach"]["xsave"] == f"{how}:copy_fpregs_to_fpstate", m["attach"]
        assert m["attach"]["xrstor"] == "tracepoint:x86_fpu:x86_fpu_regs_activated", m["attach"]
        why = m["refused"]["xrstor"]
        assert "inlined" in str(why.get(how, "")), why
        assert m["meta"]["transport"]["kind"].startswith("ringbuf"), m["meta"]["transport"]   # not the perf buffer


def test_tracepoint_mode_exact_part(lab):
    """Tracepoint-only mode: restores come from x86_fpu_regs_activated and must equal bpftrace's
    restore count (5.10: its count of the same tracepoint); its exact saves are the
    context-switch saves, and must equal the switch-cause XSAVEs the fentry recorder saw for the
    very same process and window, and bpftrace's count of regs_deactivated after that task's own
    sched_switch. Against bpftrace they may differ only by the measured misses and edge events
    (_diffs): on 7.2 bpftrace's kprobe on the restore function missed 12 runs in a run where the
    tracepoint counted 940 restores of the sha256 process and bpftrace 938; in another, bpftrace's
    regs_deactivated and sched_switch programs missed 53 and 62 runs and its switch saves fell
    short by 35 over 14 processes, while both fputrace recorders agreed exactly."""
    _guest_ok(lab)
    _need_mode(lab, "tracepoint")
    fentry = {(r["window"], r["tgid"]): r for r in _rows(lab, "fentry")}
    restore = "bt_xrstor" if _has_restore_probe(lab) else "bt_tp_activated"
    rows = _rows(lab, "tracepoint")
    assert rows, f"no analysis rows for mode tracepoint: {lab['modes'].get('tracepoint')}"
    diff = _diffs(lab, "tracepoint", rows, [("fpt_xrstor", restore), ("fpt_xsave_switch", "bt_switch_saves")])
    for r in rows:
        f = fentry.get((r["window"], r["tgid"]), {})
        edge = _at_edge(lab, "tracepoint", r, "xsave")      # see _diffs (3)
        if abs(r["fpt_xsave_switch"] - f.get("fpt_xsave_switch", 0)) > edge:
            diff.append(f"window {r['window']} tgid {r['tgid']}: switch XSAVE {r['fpt_xsave_switch']} vs fentry "
                        f"{f.get('fpt_xsave_switch', 0)} (at the window's edges {edge})")
        if r["fpt_kfpu_begin"] or r["fpt_xsave_kfpu"]:
            diff.append(f"window {r['window']} tgid {r['tgid']}: tracepoint mode claims exact kernel FPU events")
    assert not diff, "\n".join(diff)


# Inference may over-count by this much per process: the model infers a kernel FPU section from
# TIF_NEED_FPU_LOAD turning on inside a syscall; on 7.2 the ping-pong processes got 1-2 such
# sections that bpftrace did not see (no kernel_fpu_begin_mask inside any of their syscalls).
INFERENCE_EXTRA_MAX = 2


def test_tracepoint_inference_agreement(lab):
    """SPEC 5.4: inference sees at most one kernel FPU section per syscall, so it is compared with
    the syscalls during which the kernel FPU was used (bpftrace: the begin function between
    sys_enter and sys_exit of the same thread), per process in the AF_ALG windows. Per process
    it may over-count by at most INFERENCE_EXTRA_MAX; over those workloads it must find at least
    80% of them, and at least half on the short, rarely preempted syscalls of sha256 on 4 KiB."""
    _guest_ok(lab)
    _need_mode(lab, "tracepoint")
    names = ("sha256", "sha256-small", "gcm", "pingpong")
    rows = {n: next((r for r in _rows(lab, "tracepoint") if r["window"] == _window(lab, n)
                     and r["tgid"] == _workload(lab, n)["pid"]), None) for n in names}
    missing = [n for n, r in rows.items() if r is None and n != "pingpong"]
    assert not missing, f"no tracepoint-mode row for {missing}"
    rows = {n: r for n, r in rows.items() if r is not None}
    for name, r in rows.items():
        assert r["model_kfpu_sections"] <= r["bt_syscalls_with_kfpu"] + INFERENCE_EXTRA_MAX, \
            f"{name}: inferred {r['model_kfpu_sections']} > true {r['bt_syscalls_with_kfpu']} syscalls"
    small = rows["sha256-small"]
    assert small["bt_syscalls_with_kfpu"] > 0
    agreement = small["model_kfpu_sections"] / small["bt_syscalls_with_kfpu"]
    assert agreement >= 0.5, f"sha256-small: inferred {small['model_kfpu_sections']} of " \
                             f"{small['bt_syscalls_with_kfpu']} syscalls with kernel FPU use"
    inferred = sum(r["model_kfpu_sections"] for r in rows.values())
    truth = sum(r["bt_syscalls_with_kfpu"] for r in rows.values())
    assert inferred >= 0.8 * truth, f"all workloads: inferred {inferred} of {truth}"


# ---- known ground truth -------------------------------------------------------------------------
# Kernel FPU sections per AF_ALG sha256 hash of one page-aligned 64 KiB buffer (16 pages): the
# number depends on how the kernel's hash code splits the data, not on fputrace, so it is pinned
# per kernel, with the code path that makes it (the callers fputrace reports; docs/CASES.md).
# AF_ALG maps the user pages into a scatterlist and the ahash-over-shash walk hands the SIMD
# driver one page per call; each call is one kernel_fpu_begin/end section:
SECTIONS_PER_HASH = {
    # hash_sendmsg -> crypto_ahash_update: 16 x shash_ahash_update -> sha256_avx2_update
    # (_sha256_update), one per page; recvmsg -> crypto_ahash_final -> sha256_avx2_final ->
    # sha256_finup with no data left: 16 + 1
    "5.10": {"_sha256_update": 16, "sha256_finup": 1},
    "6.1": {"_sha256_update": 16, "sha256_finup": 1},
    # 6.12's AF_ALG defers the last chunk to recvmsg and hashes it with finup (ahash finup walk):
    # 15 x _sha256_update + 1 x sha256_finup (the last page and the padding in one section)
    "6.12": {"_sha256_update": 15, "sha256_finup": 1},
    # 7.x hashes in lib/crypto: the x86 glue's sha256_blocks_avx2 wraps each call of the
    # assembly in kernel_fpu_begin/end: 16 calls, one per page, + 1 for the final padded block
    "7": {"sha256_blocks_avx2": 17},
}


def _per_hash(lab: dict) -> dict[str, float]:
    """Sections per hash by calling function (offsets and .part/.constprop suffixes dropped), for
    the SIMD sha256 callers in the sha256 window; interrupts that hit the process (blake2s of
    the random pool) are other callers."""
    n = _workload(lab, "sha256")["args"][0]
    out: dict[str, float] = {}
    for c in _model(lab, "fentry", "sha256")["callers"]:
        fn = re.split(r"[+.]", c["caller"])[0]
        if "sha256" in fn and c["sections"]:
            out[fn] = out.get(fn, 0) + c["sections"] / n
    return out


def test_sha256_sections_per_hash(lab):
    """Every hash is split the same way (an exact integer per caller and hash), as pinned per
    kernel in SECTIONS_PER_HASH, and the workload process's sections are those plus nothing but
    interrupt-context sections of other callers (the random pool's blake2s from the timer softirq
    on whoever runs: a handful, at most 2%)."""
    _guest_ok(lab)
    sha = _workload(lab, "sha256")
    n, size = sha["args"]
    assert size == 65536 and sha["pages_per_buffer"] == 16
    got = _per_hash(lab)
    expected = SECTIONS_PER_HASH.get(lab["kernel"]["label"])
    assert got == expected, f"{lab['kernel']['release']}: sections per hash by caller {got}, pinned {expected}"
    r = next(r for r in _rows(lab, "fentry") if r["window"] == _window(lab, "sha256") and r["tgid"] == sha["pid"])
    expected_total = n * sum(got.values())
    assert 0 <= r["fpt_kfpu_begin"] - expected_total <= max(5, 0.02 * expected_total), r


def test_pingpong_saves_and_restores(lab):
    """Two processes pinned to one CPU: every hand-over switches one out (XSAVE) and the other
    needs its registers back (XRSTOR) before it returns to user mode. On 6.16+ switch_fpu is
    inlined (no switch_fpu_prepare symbol): the saves are still seen, via save_fpregs_to_fpstate."""
    _guest_ok(lab)
    pp = _workload(lab, "pingpong")
    n = pp["args"][0]
    k = _window(lab, "pingpong")
    for pid in (pp["pid"], pp["child_pid"]):
        r = next(r for r in _rows(lab, "fentry") if r["window"] == k and r["tgid"] == pid)
        assert r["fpt_xsave_switch"] >= n and r["fpt_xrstor"] >= n, r
    if _release_tuple(lab) >= (6, 16):
        assert not lab["guest"]["facts"]["symbols"]["switch_fpu_prepare"], "expected inline switch_fpu"


@pytest.mark.parametrize("workload", ("sha256", "pingpong", *KERNEL_WORKLOADS))
def test_estimate_self_check_per_window(lab, workload):
    """SPEC 5.3: replaying a window under the policy that recorded it reproduces the measured
    counts. On an exact (fentry) recording of a stock kernel that must hold to within 1%: the
    only slack is state the model could not see before the window opened (first restore per
    task). Eager never restores less than deferred."""
    _guest_ok(lab)
    est = _model(lab, "fentry", workload)["estimate"]
    assert est["self_check"] is not None and est["self_check"] >= 0.99, f"{workload}: self-check {est}"
    pol = est["policies"]
    assert pol["eager"]["xrstor"] >= pol["deferred"]["xrstor"], pol
