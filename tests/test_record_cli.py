"""``fputrace record`` end to end on this host: busy-host recording, kill -9, signals, wrong use."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from .conftest import fputrace_cmd, run_fputrace

BUSY = r"""
import hashlib, os, sys, time
end = time.time() + float(sys.argv[1])
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(w)
    while True:
        if not os.read(r, 1): os._exit(0)
os.close(r)
data = os.urandom(1 << 16)
while time.time() < end:
    hashlib.sha256(data).digest(); os.write(w, b"x"); os.urandom(64); time.sleep(0)
os.close(w); os.waitpid(pid, 0)
"""


@pytest.mark.live
@pytest.mark.slow
def test_ten_second_busy_host_recording_loads(need_bcc, tmp_path):
    out = tmp_path / "busy.fpt"
    busy = subprocess.Popen([sys.executable, "-c", BUSY, "12"])
    try:
        res = run_fputrace("record", "-q", "-o", str(out), "--duration", "10s", timeout=120)
    finally:
        busy.wait(timeout=30)
    assert res.returncode == 0, res.stderr
    assert (os.stat(out).st_mode & 0o777) == 0o600, "recordings name processes: owner-only"
    import fputrace
    tr = fputrace.load(out)
    ev, meta = tr.events, tr.meta
    assert len(ev) > 1000
    assert (np.diff(ev.ts_ns.to_numpy().astype(np.int64)) >= 0).all()
    span_s = (meta["end_ns"] - meta["start_ns"]) / 1e9
    assert 9.5 < span_s < 30, span_s
    assert meta["source"] == "record" and meta["capture_mode"] in ("fentry", "kprobe", "tracepoint")
    assert {"SWITCH", "XSAVE", "XRSTOR"} <= set(ev.kind.astype(str).unique())
    assert busy.pid in set(tr.tasks.tid), "the task table names the workload"
    assert meta.get("truncated") is not True


@pytest.mark.live
def test_kill_9_leaves_a_loadable_file(need_bcc, tmp_path):
    out = tmp_path / "killed.fpt"
    proc = subprocess.Popen([*fputrace_cmd(), "record", "-q", "-o", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not out.exists() or out.stat().st_size < 4096):
        time.sleep(0.2)
    time.sleep(2.5)                      # a few flushes of events, not just the header
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    import fputrace
    tr = fputrace.load(out)
    assert len(tr.events) > 0
    assert tr.meta.get("closed") is not True


@pytest.mark.live
def test_sigterm_finishes_cleanly_with_exit_0(need_bcc, tmp_path):
    out = tmp_path / "term.fpt"
    proc = subprocess.Popen([*fputrace_cmd(), "record", "-o", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not out.exists():
        time.sleep(0.1)
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "Tracing FPU save/restore" in err and "Hit Ctrl-C to end." in err
    assert "Traceback" not in err
    import fputrace
    tr = fputrace.load(out)
    assert tr.meta.get("closed") is True and tr.meta["end_ns"] > tr.meta["start_ns"]


@pytest.mark.live
def test_command_mode_stops_when_the_command_exits(need_bcc, tmp_path):
    out = tmp_path / "cmd.fpt"
    t0 = time.monotonic()
    res = run_fputrace("record", "-q", "-o", str(out), "--", sys.executable, "-c", "import time; time.sleep(1)")
    assert res.returncode == 0, res.stderr
    assert time.monotonic() - t0 < 30
    import fputrace
    tr = fputrace.load(out)
    pid = tr.meta["traced_pid"]
    assert pid in set(tr.events.tid) | set(tr.tasks.tid)
    assert (tr.events[tr.events.tid == pid].kind == "EXIT").any(), "the command's exit is in the file"


@pytest.mark.parametrize("argv", [
    ["record"],                                              # no -o
    ["record", "-o", "x.fpt", "--duration", "soon"],
    ["record", "-o", "x.fpt", "--buffer-pages", "3"],
    ["record", "-o", "x.fpt", "--buffer-pages", "1048576"],            # more than the ring can be
    ["record", "-o", "x.fpt", "--pid", "-4"],
    ["record", "-o", "x.fpt", "--pid", "1", "--comm", "init"],
    ["record", "-o", "x.fpt", "--mode", "lazy"],
    ["record", "-o", "x.fpt", "--comm", "a-name-longer-than-15"],
    ["record", "-o", "/nonexistent-dir/x.fpt", "--duration", "1s"],
    ["record", "-o", "x.fpt", "stray"],
])
def test_wrong_use_is_one_line_exit_2(argv, tmp_path):
    res = run_fputrace(*argv, cwd=tmp_path)
    assert res.returncode == 2, (argv, res.returncode, res.stderr)
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in res.stderr, res.stderr


def test_hidden_ebpf_prints_source_and_flags():
    res = run_fputrace("record", "-o", "x.fpt", "--mode", "tracepoint", "--pid", "7", "--ebpf")
    assert res.returncode == 0, res.stderr
    first = res.stdout.splitlines()[0]
    assert first.startswith("// bcc cflags:") and "-DFPT_FILTER_TGID=7" in first
    assert "TRACEPOINT_PROBE(sched, sched_switch)" in res.stdout
    assert "--ebpf" not in run_fputrace("record", "--help").stdout, "hidden flag"


def _as_nobody(*argv):
    import shutil
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("needs root and setpriv (util-linux) to run a command as an unprivileged user")
    return subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                           *fputrace_cmd(), *argv], capture_output=True, text=True, timeout=120, cwd="/tmp")


def test_not_root_is_one_line_exit_1():
    res = _as_nobody("record", "-o", f"/tmp/fputrace-nobody-{os.getpid()}.fpt", "--duration", "1s")
    assert res.returncode == 1, res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "root" in lines[0] and "Traceback" not in res.stderr


def test_doctor_not_root_exits_1_with_the_remedy():
    res = _as_nobody("doctor", "--no-load")
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert "run as root" in res.stderr


@pytest.mark.live
def test_a_mode_the_host_refuses_is_one_line_exit_1(need_bcc, tmp_path):
    from fputrace.capture.features import host_features
    feat = host_features()
    if feat.fentry.ok:
        pytest.skip("fentry works on this host: nothing to refuse")
    res = run_fputrace("record", "-o", str(tmp_path / "x.fpt"), "--mode", "fentry", "--duration", "1s")
    assert res.returncode == 1, res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "--mode fentry is not possible here" in lines[0], res.stderr
    assert not (tmp_path / "x.fpt").exists(), "no file when nothing was captured"


@pytest.mark.live
def test_recorder_maps_neither_pandas_nor_the_model_nor_the_compiler(need_bcc, tmp_path):
    """The recorder only streams: pandas and the model's engine stay out of its process, and
    once the programs are loaded the compiler inside bcc (LLVM, clang) is not resident (issue 13)."""
    out = tmp_path / "lean.fpt"
    proc = subprocess.Popen([*fputrace_cmd(), "record", "-q", "-o", str(out)], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (out.exists() and out.stat().st_size > 0):
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.2)
        time.sleep(1.0)
        maps = open(f"/proc/{proc.pid}/maps").read()
        resident = {}
        path = None
        for line in open(f"/proc/{proc.pid}/smaps"):
            head = line.split()
            if "-" in head[0] and len(head) >= 5 and ":" not in head[0]:
                path = head[5] if len(head) > 5 else ""
            elif head[0] == "Rss:" and path and ("libLLVM" in path or "libclang" in path):
                resident[path] = resident.get(path, 0) + int(head[1])
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    assert "pandas" not in maps, "pandas is mapped in the recorder"
    assert "fputrace/model/_engine" not in maps, "the model's engine is mapped in the recorder"
    # what stays is the copy-on-write part of their data (relocations), not their code
    assert sum(resident.values()) < 20 * 1024, {p: f"{kb // 1024} MB" for p, kb in resident.items()}
