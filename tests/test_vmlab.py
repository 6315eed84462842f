"""Stock-kernel lab (SPEC 7, issue 4): fputrace's fentry, kprobe and auto modes on Debian 6.1,
6.12 and 7.x kernels under QEMU, cross-checked against bpftrace in the same guest run.

One boot per kernel (module-scoped fixture): bpftrace counts per process; four ``fputrace record``
processes (fentry, kprobe, auto, tracepoint) record system-wide at the same time, so all of them
and bpftrace observe the SAME workload processes; the files are analysed on the host.

Environment knobs (developers): FPUTRACE_VMLAB_KERNELS=6.1,7 limits the kernels;
FPUTRACE_VMLAB_REUSE=1 reuses the last stored result of each kernel instead of booting (only for
working on these assertions; CI never sets it).
"""
from __future__ import annotations

import os
import re
import shutil

import pytest

from tests.vmlab import kernels, lab as labmod

# one kernel boot (fetch on first use + ~5 min of emulation) happens inside the first test of a kernel
pytestmark = [pytest.mark.vmlab, pytest.mark.slow, pytest.mark.timeout(2700)]

LABELS = [k for k in os.environ.get("FPUTRACE_VMLAB_KERNELS", ",".join(kernels.KERNELS)).split(",") if k]
EXACT_FIELDS = tuple(labmod.EXACT_PAIRS)


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
        return labmod.load_result(label)
    try:
        return labmod.run_lab(label, log=lambda m: print(m, flush=True))
    except kernels.FetchError as err:
        pytest.skip(f"kernel {label} could not be fetched from the Debian archive: {err}")


def _guest_ok(lab: dict) -> None:
    k = lab["kernel"]
    assert lab.get("guest"), (f"{k['release']}: the guest lab produced no lab.json ({k['reason'] or 'rc=' + str(k['returncode'])})"
                              f"\n{k['output_tail']}")


def _need_mode(lab: dict, mode: str) -> None:
    if mode not in lab.get("modes_run", labmod.MODES):
        pytest.skip(f"--mode {mode} is not run on {lab['kernel']['label']} (lab.MODES_BY_KERNEL: each "
                    f"recorder start costs 1-2 min under TCG; it runs on {[k for k, v in labmod.MODES_BY_KERNEL.items() if mode in v]})")


def _rows(lab: dict, mode: str) -> list[dict]:
    return [r for r in lab.get("rows", []) if r["mode"] == mode]


def _release_tuple(lab: dict) -> tuple[int, int]:
    m = re.match(r"(\d+)\.(\d+)", lab["kernel"]["release"])
    return int(m.group(1)), int(m.group(2))


def _pid(lab: dict, workload: str) -> int:
    return labmod.workload_pids(lab["guest"])[workload]


def test_guest_run_completed(lab):
    _guest_ok(lab)
    k = lab["kernel"]
    assert k["returncode"] == 0, f"guest lab exit status {k['returncode']} {k['reason']}\n{k['output_tail']}"
    failed = [w for w in lab["guest"]["workloads"] if w["returncode"] != 0]
    assert not failed, f"workloads failed: {failed}"


def test_simd_crypto_drivers_in_use(lab):
    """Without udev nothing autoloads the SIMD drivers; the lab loads them, and AF_ALG must bind
    them (a generic C driver would never touch the kernel FPU)."""
    _guest_ok(lab)
    drivers = {w["name"]: w.get("driver", "?") for w in lab["guest"]["workloads"]}
    assert "generic" not in drivers["sha256"].replace("generic-gcm", ""), drivers
    assert "aesni" in drivers["gcm"] or "vaes" in drivers["gcm"], drivers


def test_bpftrace_cross_check_ran(lab):
    _guest_ok(lab)
    bt = lab["guest"]["bpftrace"]
    assert bt["ready"], f"bpftrace did not start: {bt['error']}"
    counts = bt.get("counts") or {}
    sha = counts.get(str(_pid(lab, "sha256")), {})
    assert sha.get("kernel_fpu_begin_mask", 0) > 0, f"bpftrace saw no kernel FPU use by the sha256 workload: {bt}"


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
    auto = "kprobe" if _preemptible(lab) else "fentry"    # the weakest probe type it attached
    expected = {"fentry": "fentry", "kprobe": "kprobe", "auto": auto, "tracepoint": "tracepoint"}[mode]
    assert meta["capture_mode"] == expected, f"--mode {mode} recorded as {meta['capture_mode']}"


def _preemptible(lab: dict) -> bool:
    """The guest kernel's preemption model (debugfs sched/preempt, else its config) allows
    preempting kernel code (7.x: lazy; Debian's 6.1 and 6.12 run voluntary)."""
    model = lab["guest"]["facts"].get("preempt")
    assert model, f"the guest did not report its preemption model: {lab['guest']['facts']}"
    return model in ("full", "lazy", "rt")


# Tolerance, measured per run: bpftrace counts with kprobes, and the kernel skips a kprobe BPF
# program that fires while another BPF program is active on that CPU (bpf_prog_active; bpftool
# shows these as the program's recursion_misses). On 7.2, with five tracers at once, bpftrace's
# save/restore/switch_fpu_return programs missed 55-82 runs system-wide, and fentry saw up to 3
# more per process. fentry programs are not skipped that way. So fputrace may exceed bpftrace by
# at most bpftrace's own recursion misses for that probe (exact equality when it had none), and
# --mode kprobe (skipped the same way) may differ by at most that much in either direction.
def _count_diffs(lab: dict, rows: list[dict], mode: str, pairs) -> list[str]:
    misses = lab.get("bpftrace_kprobe_misses") or {}
    diff = []
    for r in rows:
        for ours, theirs in pairs:
            a, b = r[ours] or 0, r[theirs]
            slack = misses.get(theirs.removeprefix("bt_"), 0)
            ok = (0 <= a - b <= slack) if mode != "kprobe" else abs(a - b) <= slack
            if a != b and not ok:
                diff.append(f"{r['workload']}: {ours}={a} bpftrace={b} (bpftrace recursion misses {slack})")
    return diff


@pytest.mark.parametrize("mode", labmod.EXACT_MODES)
def test_event_counts_equal_bpftrace(lab, mode):
    """Per workload process, fputrace's events (read back with fputrace.load) equal bpftrace's
    kprobe counts of the same kernel functions: kernel_fpu_begin_mask/kernel_fpu_end ->
    KFPU_BEGIN/END, save_fpregs_to_fpstate -> XSAVE, restore_fpregs_from_fpstate -> XRSTOR,
    switch_fpu_return -> USER_RETURN. Both observe the whole life of the process; the only
    tolerance is bpftrace's own recursion misses (see above)."""
    _guest_ok(lab)
    _need_mode(lab, mode)
    rows = _rows(lab, mode)
    assert rows, f"no analysis rows for mode {mode}: {lab['modes'].get(mode)}"
    diff = _count_diffs(lab, rows, mode, [(f"fpt_{f}", f"bt_{f}") for f in EXACT_FIELDS])
    assert not diff, f"{lab['kernel']['release']} --mode {mode}:\n" + "\n".join(diff)
    assert sum(r["fpt_kfpu_begin"] for r in rows) > 0 and sum(r["fpt_xrstor"] for r in rows) > 0


@pytest.mark.parametrize("mode", labmod.EXACT_MODES)
def test_model_report_equals_bpftrace(lab, mode):
    """The model's per-process report (`fputrace report --format json`) keeps the exact counts:
    XSAVE, XRSTOR and kernel FPU sections equal bpftrace's, and in an exact mode the model infers
    no section of its own (kernel_fpu_begin is probed: every section is seen)."""
    _guest_ok(lab)
    _need_mode(lab, mode)
    assert "model_error" not in lab["modes"][mode], lab["modes"][mode].get("model_error")
    rows = _rows(lab, mode)
    invented = {r.get("workload", i): r["model_kfpu_sections_inferred"]
                for i, r in enumerate(rows) if r["model_kfpu_sections_inferred"]}
    assert not invented, f"{lab['kernel']['release']} --mode {mode}: inferred sections in an exact mode: {invented}"
    diff = _count_diffs(lab, rows, mode, [("model_kfpu_sections", "bt_kfpu_begin"), ("model_xsave", "bt_xsave"),
                                          ("model_xrstor", "bt_xrstor")])
    assert not diff, f"{lab['kernel']['release']} --mode {mode}:\n" + "\n".join(diff)


def test_auto_mode_on_stock_kernel(lab):
    """Stock kernels have BTF and allow fentry: auto chooses it for every FPU probe, except, on
    a preemptible kernel (7.x: preempt=lazy), the probes whose function runs with preemption on
    at entry (kernel FPU begin, paired with its end, and fork's save in fpu_clone): an fentry
    program preempted there makes the kernel skip that program for every other task on the CPU
    (recursion misses), so auto takes the kprobe there and says why."""
    _guest_ok(lab)
    _need_mode(lab, "auto")
    attach = lab["modes"]["auto"]["attach"]
    preemptible = _preemptible(lab)
    for ev in ("kfpu_begin", "kfpu_end", "xsave", "xrstor", "user_return", "fork_save"):
        if ev not in attach:
            continue
        want = "kprobe:" if preemptible and ev in ("kfpu_begin", "kfpu_end", "fork_save") else "fentry:"
        assert str(attach[ev]).startswith(want), \
            f"{lab['kernel']['release']} (preempt={lab['guest']['facts']['preempt']}): auto chose {attach[ev]} for {ev}: {attach}"


def test_tif_need_fpu_load_bit(lab):
    """TIF_NEED_FPU_LOAD is bit 14 up to 6.17 and bit 19 from 6.18 (generic TIF bits)."""
    _guest_ok(lab)
    expected = 19 if _release_tuple(lab) >= (6, 18) else 14
    got = {mode: m["meta"]["tif_need_fpu_load_bit"] for mode, m in lab["modes"].items() if "meta" in m}
    assert got and all(v == expected for v in got.values()), \
        f"{lab['kernel']['release']}: expected bit {expected}, recordings say {got}"


def test_tracepoint_mode_exact_part(lab):
    """Tracepoint-only mode: restores come from x86_fpu_regs_activated and must equal bpftrace's
    restore_fpregs_from_fpstate; its exact saves are the context-switch saves, and must equal the
    switch-cause XSAVEs the fentry recorder saw for the very same process."""
    _guest_ok(lab)
    _need_mode(lab, "tracepoint")
    fentry = {r["workload"]: r for r in _rows(lab, "fentry")}
    slack = (lab.get("bpftrace_kprobe_misses") or {}).get("xrstor", 0)
    diff = []
    for r in _rows(lab, "tracepoint"):
        if not 0 <= r["fpt_xrstor"] - r["bt_xrstor"] <= slack:     # the tracepoint sees what bpftrace's kprobe skipped
            diff.append(f"{r['workload']}: XRSTOR {r['fpt_xrstor']} vs bpftrace {r['bt_xrstor']} "
                        f"(bpftrace recursion misses on the restore {slack})")
        if r["fpt_xsave_switch"] != fentry[r["workload"]]["fpt_xsave_switch"]:
            diff.append(f"{r['workload']}: switch XSAVE {r['fpt_xsave_switch']} vs fentry "
                        f"{fentry[r['workload']]['fpt_xsave_switch']}")
        if r["fpt_kfpu_begin"] or r["fpt_xsave_kfpu"]:
            diff.append(f"{r['workload']}: tracepoint mode claims exact kernel FPU events")
    assert not diff, "\n".join(diff)


# Inference may over-count by this much per process: the model infers a kernel FPU section from
# TIF_NEED_FPU_LOAD turning on inside a syscall; on 7.2 the ping-pong processes got 1-2 such
# sections that bpftrace did not see (no kernel_fpu_begin_mask inside any of their syscalls).
INFERENCE_EXTRA_MAX = 2


def test_tracepoint_inference_agreement(lab):
    """SPEC 5.4: inference sees at most one kernel FPU section per syscall, so it is compared with
    the syscalls during which the kernel FPU was used (bpftrace: kernel_fpu_begin_mask between
    sys_enter and sys_exit of the same thread). Per process it may over-count by at most
    INFERENCE_EXTRA_MAX; over all workloads it must find at least 80% of them, and at least half
    on the short, rarely preempted syscalls of sha256 on 4 KiB buffers."""
    _guest_ok(lab)
    _need_mode(lab, "tracepoint")
    rows = {r["workload"]: r for r in _rows(lab, "tracepoint")}
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


def test_sha256_ground_truth_6_1(lab):
    """Known on 6.1 (sha256-avx2): one 64 KiB hash = 18 kernel FPU sections."""
    _guest_ok(lab)
    if _release_tuple(lab)[:2] != (6, 1):
        pytest.skip(f"the 18-sections-per-hash figure is pinned for 6.1 only (this is {lab['kernel']['release']})")
    sha = next(w for w in lab["guest"]["workloads"] if w["name"] == "sha256")
    assert sha["driver"] == "sha256-avx2"
    n, size = sha["args"]
    assert size == 65536
    r = next(r for r in _rows(lab, "fentry") if r["workload"] == "sha256")
    assert r["fpt_kfpu_begin"] == r["fpt_kfpu_end"] == 18 * n


def test_pingpong_saves_and_restores(lab):
    """Two processes pinned to one CPU: every hand-over switches one out (XSAVE) and the other
    needs its registers back (XRSTOR) before it returns to user mode. On 6.16+ switch_fpu is
    inlined (no switch_fpu_prepare symbol): the saves are still seen, via save_fpregs_to_fpstate."""
    _guest_ok(lab)
    pp = next(w for w in lab["guest"]["workloads"] if w["name"] == "pingpong")
    n = pp["args"][0]
    for r in _rows(lab, "fentry"):
        if r["workload"].startswith("pingpong"):
            assert r["fpt_xsave_switch"] >= n and r["fpt_xrstor"] >= n, r
    if _release_tuple(lab) >= (6, 16):
        assert not lab["guest"]["facts"]["symbols"]["switch_fpu_prepare"], "expected inline switch_fpu"


def test_estimate_self_check_on_exact_recording(lab):
    """SPEC 5.3: replaying a trace under the policy that recorded it reproduces the measured
    counts. On an exact (fentry) recording of a stock kernel that must hold to within 1%: the
    only slack is state the recorder could not see before it started (first restore per task)."""
    _guest_ok(lab)
    est = lab["modes"]["fentry"].get("estimate") or {}
    assert "error" not in est and est, f"fputrace estimate failed: {est}"
    assert est["self_check"] >= 0.99, f"self-check {est['self_check']}: {est}"
    pol = est["policies"]
    assert pol["eager"]["xrstor"] >= pol["deferred"]["xrstor"], pol
