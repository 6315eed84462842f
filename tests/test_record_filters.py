"""--pid and --comm reach the BPF side as -D constants and really filter, on this kernel."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from .conftest import run_fputrace

pytestmark = [pytest.mark.live]

SLEEPER = "import time\nx = 1.0\nwhile True:\n    x *= 1.0000001\n    time.sleep(0.002)\n"


def _own_events(tr):
    ev = tr.events
    return ev[~ev.kind.isin(["LOST"])]


def _record_sleeper(argv0: str, out, filter_args):
    """Run the sleeper as ``argv0``, record 2 s with the filter built from its pid, load the file."""
    proc = subprocess.Popen([argv0, "-c", SLEEPER])
    try:
        res = run_fputrace("record", "-q", "-o", str(out), *filter_args(proc.pid),
                           "--duration", "2s")
        assert res.returncode == 0, res.stderr
    finally:
        proc.kill()
        proc.wait()
    import fputrace
    return proc, fputrace.load(out)


def test_pid_filter_keeps_only_that_process(need_bcc, tmp_path):
    proc, tr = _record_sleeper(sys.executable, tmp_path / "pid.fpt", lambda pid: ("--pid", str(pid)))
    ev = _own_events(tr)
    assert len(ev) > 50, "a task sleeping 2 ms at a time switches hundreds of times in 2 s"
    assert set(ev.tgid.unique()) == {proc.pid}
    assert tr.meta["filter"] == {"pid": proc.pid, "comm": None}
    assert ((ev.kind == "XSAVE") & (ev.tid == proc.pid)).sum() > 50


def test_comm_filter_keeps_only_tasks_with_that_name(need_bcc, tmp_path):
    link = tmp_path / "fptcommtest"
    os.symlink(sys.executable, link)          # the task's comm is the name it was exec'ed by
    proc, tr = _record_sleeper(str(link), tmp_path / "comm.fpt", lambda pid: ("--comm", "fptcommtest"))
    ev = _own_events(tr)
    assert len(ev) > 50
    assert set(ev.tgid.unique()) == {proc.pid}
    names = dict(zip(tr.tasks.tid, tr.tasks.comm))
    assert names.get(proc.pid) == "fptcommtest"
