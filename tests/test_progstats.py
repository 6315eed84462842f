"""The kernel's own account of fputrace's programs (bpf_prog_info): the reader agrees with bpftool,
and runs the kernel skipped (recursion protection) reach the status, the recording, the report.

How the kernel is made to skip a real fputrace program on this host: its programs are tracepoint
programs, which the kernel does not run while another kprobe/tracepoint BPF program is running on
the same CPU (``bpf_prog_active``). The test attaches the recorder's own ``sched_process_exit``
program (it reads no tracepoint field) to ``signal:signal_generate`` as well, and loads a helper
program on ``raw_syscalls:sys_enter`` that calls ``bpf_send_signal()`` when the workload calls
getppid(): the signal is generated inside the helper program, so the tracepoint fires while a BPF
program runs and the kernel skips fputrace's program, once per getppid(), and counts the miss.
"""
from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from fputrace.capture import progstats

from .conftest import bpf_prog_ids, fputrace_cmd, run_fputrace

pytestmark = [pytest.mark.live]


def test_info_layout_matches_the_uapi_header(tmp_path):
    """The offsets progstats reads are those of this system's <linux/bpf.h>."""
    src = tmp_path / "off.c"
    src.write_text("#include <stdio.h>\n#include <stddef.h>\n#include <linux/bpf.h>\nint main(void){"
                   "printf(\"%zu %zu %zu %zu %zu\\n\", offsetof(struct bpf_prog_info, id), "
                   "offsetof(struct bpf_prog_info, name), offsetof(struct bpf_prog_info, run_time_ns), "
                   "offsetof(struct bpf_prog_info, run_cnt), offsetof(struct bpf_prog_info, recursion_misses));}")
    res = subprocess.run(["gcc", "-o", str(tmp_path / "off"), str(src)], capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot compile against <linux/bpf.h> (linux-libc-dev): {res.stderr.strip()[:200]}")
    got = [int(x) for x in subprocess.run([str(tmp_path / "off")], capture_output=True, text=True).stdout.split()]
    assert got == [progstats.OFF_ID, progstats.OFF_NAME, progstats.OFF_RUN_TIME, progstats.OFF_RUN_CNT,
                   progstats.OFF_RECURSION]


def test_reader_agrees_with_bpftool_and_counts_runs(need_bcc):
    import threading
    from fputrace.capture import CaptureOptions, CaptureSession
    stop = threading.Event()
    with progstats.run_time_stats() as enabled:
        with CaptureSession(CaptureOptions(mode="tracepoint", buffer_pages=256, calibrate_s=0.1)) as cap:
            threading.Timer(0.5, stop.set).start()
            for _ in cap.batches(stop):
                pass
            infos = cap.program_infos
            tool = {p["id"]: p for p in json.loads(subprocess.run(["bpftool", "-j", "prog", "show"],
                                                                  capture_output=True, text=True).stdout)}
    assert enabled, "BPF_ENABLE_STATS refused (root has CAP_SYS_ADMIN here)"
    assert {"sched_switch", "sys_enter", "x86_fpu_regs_deactivated"} <= set(infos)
    for name, info in infos.items():
        peer = tool[info.id]
        # bcc's programs carry BTF function info (bpftool shows the whole name); the tp_btf ones
        # loaded by fputrace itself only their 15-character kernel name
        assert (peer["name"].endswith(name) or name.startswith(peer["name"])) \
            and info.kernel_name in peer["name"], (name, peer["name"])
        assert info.recursion_misses == 0, (name, info)
    sw = infos["sched_switch"]
    assert sw.run_cnt > 0 and 0 < sw.ns_per_run < 100_000, sw
    assert tool[sw.id]["run_cnt"] >= sw.run_cnt       # bpftool looked later


HELPER = r"""
#include <uapi/linux/ptrace.h>
BPF_ARRAY(sent, u64, 1);
TRACEPOINT_PROBE(raw_syscalls, sys_enter)
{
    if ((bpf_get_current_pid_tgid() >> 32) != TARGET || args->id != 110 /* getppid */)
        return 0;
    if (bpf_send_signal(23 /* SIGURG: ignored by default */) == 0) {
        int zero = 0;
        u64 *n = sent.lookup(&zero);
        if (n)
            __sync_fetch_and_add(n, 1);
    }
    return 0;
}
"""

CHILD = "import os, sys\nsys.stdin.readline()\nfor _ in range(int(sys.argv[1])): os.getppid()\n"


@pytest.mark.slow
def test_skipped_probe_runs_reach_status_meta_and_report(need_bcc, tmp_path):
    import bcc
    lib = bcc.libbcc.lib
    n = 200
    out = tmp_path / "skipped.fpt"
    rec = subprocess.Popen([*fputrace_cmd(), "record", "-q", "--mode", "tracepoint", "-o", str(out)],
                           stderr=subprocess.PIPE, text=True)
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(n)], stdin=subprocess.PIPE, text=True)
    perf_fd = prog_fd = -1
    helper = None
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (out.exists() and out.stat().st_size > 0):
            assert rec.poll() is None, rec.stderr.read()
            time.sleep(0.2)
        tool = {p["id"]: p for p in json.loads(subprocess.run(["bpftool", "-j", "prog", "show"],
                                                              capture_output=True, text=True).stdout)}
        exit_prog = [i for i in bpf_prog_ids(rec.pid)
                     if tool.get(i, {}).get("name") == "tracepoint__sched__sched_process_exit"]
        assert len(exit_prog) == 1, "the recorder's sched_process_exit program"
        prog_fd = lib.bpf_prog_get_fd_by_id(exit_prog[0])
        assert prog_fd >= 0
        perf_fd = lib.bpf_attach_tracepoint(prog_fd, b"signal", b"signal_generate")
        assert perf_fd >= 0, "attach to signal:signal_generate"
        from fputrace.capture.features import host_features
        from fputrace.capture.headers import apply
        apply(host_features().headers)           # bcc needs a kernel header tree here too
        helper = bcc.BPF(text=HELPER.encode(), cflags=[f"-DTARGET={child.pid}"])
        child.stdin.write("go\n")
        child.stdin.close()
        assert child.wait(timeout=60) == 0
        sent = int(helper[b"sent"][ctypes.c_int(0)].value)
        assert sent == n, f"the helper sent {sent} signals for {n} getppid() calls"
        time.sleep(1.5)                    # the recorder reads the counts about once a second
    finally:
        if helper is not None:
            helper.cleanup()
        if perf_fd >= 0:
            lib.bpf_close_perf_event_fd(perf_fd)
        if prog_fd >= 0:
            os.close(prog_fd)
        if child.poll() is None:
            child.kill()
        rec.send_signal(signal.SIGINT)
        _, err = rec.communicate(timeout=120)
    assert rec.returncode == 0, err
    import fputrace
    meta = fputrace.load(out).meta
    assert meta["recursion_misses"] == {"sched_process_exit": n}, meta["recursion_misses"]
    assert meta["fputrace_tgid"] == rec.pid
    res = run_fputrace("report", "--format", "json", str(out))
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["totals"]["bpf_recursion_misses"] == n
    text = run_fputrace("report", str(out)).stdout
    assert f"probe runs the kernel skipped {n}" in text


def test_final_line_names_skipped_runs(need_bcc, tmp_path):
    """Without skips the final line still says how many: 0 (the count exists, it is not hidden)."""
    res = run_fputrace("record", "-o", str(tmp_path / "x.fpt"), "--mode", "tracepoint", "--duration", "0.5s")
    assert res.returncode == 0, res.stderr
    assert "0 probe runs the kernel skipped" in res.stderr, res.stderr


def test_dashboard_header_shows_skipped_runs():
    from fputrace.tui.widgets.header import render_header
    plain = render_header({"host": "h", "recursion_misses": {"sched_switch": 3, "sys_enter": 4}}, None, None).plain
    assert "SKIPPED 7 probe runs" in plain
    assert "SKIPPED" not in render_header({"host": "h", "recursion_misses": {}}, None, None).plain


def test_record_stats_shows_what_each_program_costs(need_bcc, tmp_path):
    """--stats: BPF run-time statistics on for the recording; the cost table at the end and in
    meta program_stats; the live status line (a terminal: script(1)) shows ns per run."""
    import shutil
    out = tmp_path / "stats.fpt"
    res = run_fputrace("record", "-o", str(out), "--stats", "--mode", "tracepoint", "--",
                       sys.executable, "-c", CHILD.replace("sys.stdin.readline()\n", ""), "20000")
    assert res.returncode == 0, res.stderr
    lines = res.stderr.splitlines()
    assert any("kernel-side cost of each program" in line for line in lines), res.stderr
    table = {line.split()[1]: line.split()[2:] for line in lines if line.startswith("fputrace:   ") and
             not line.split()[1] == "program"}
    assert {"sched_switch", "sys_enter", "sys_exit"} <= set(table), table
    runs, rate, ns = table["sys_enter"]
    assert int(runs.replace(",", "")) >= 20000 and 0 < float(ns) < 100_000    # every getppid() entered
    import fputrace
    ps = fputrace.load(out).meta["program_stats"]
    assert ps["sys_enter"]["runs"] == int(runs.replace(",", "")) and ps["sys_enter"]["run_time_ns"] > 0
    if shutil.which("script"):
        cmd = " ".join([*fputrace_cmd(), "record", "-o", str(tmp_path / "tty.fpt"), "--stats", "--duration", "2s"])
        tty = subprocess.run(["script", "-qec", cmd, "/dev/null"], capture_output=True, text=True, timeout=180)
        assert tty.returncode == 0, tty.stdout
        assert "ns/run" in tty.stdout and "switch" in tty.stdout, tty.stdout[-500:]
