"""``fputrace doctor`` on this host: what it says must match what the host really offers."""
from __future__ import annotations

import json
import platform
from pathlib import Path

import pytest

from fputrace.capture.features import expected_tif_bit, kernel_version

from .conftest import run_fputrace

pytestmark = [pytest.mark.live]


@pytest.fixture(scope="module")
def report(need_bcc):
    res = run_fputrace("doctor", "--json", timeout=120)
    assert res.returncode in (0, 1), res.stderr
    rep = json.loads(res.stdout)
    assert (res.returncode == 0) == rep["ok"]
    return rep


def test_doctor_finds_a_working_mode(report):
    assert report["ok"], report["remedy"]
    assert report["load"]["ok"] is True
    assert report["mode"] in ("fentry", "kprobe", "tracepoint")


def test_refusals_match_the_host(report):
    # tracefs as doctor found (or mounted) it: the suite may start with tracefs unmounted
    tracefs = report["tracefs"]["path"]
    kprobes_here = Path("/sys/bus/event_source/devices/kprobe").exists() or \
        bool(tracefs and Path(tracefs, "kprobe_events").exists())
    kfpu = report["modes"]["kfpu_begin"]
    if not kprobes_here:
        assert not report["checks"]["kprobes"]["ok"]
        assert "unavailable" in kfpu["refused"]["kprobe"]
    if not report["checks"]["fentry"]["ok"] and report["checks"]["btf"]["ok"]:
        assert "EPERM" in kfpu["refused"]["fentry"]
    if not kprobes_here and not report["checks"]["fentry"]["ok"]:
        # this development host: tracepoints only
        assert report["mode"] == "tracepoint"
        assert kfpu["attach"] == "inferred:raw_syscalls" and kfpu["exact"] is False
        assert report["modes"]["xsave"]["attach"] == "tracepoint:x86_fpu:x86_fpu_regs_deactivated"
        assert report["modes"]["xrstor"]["attach"] == "tracepoint:x86_fpu:x86_fpu_regs_activated"
        assert report["modes"]["user_return"]["attach"] == "unavailable"


def test_tif_bit_is_verified_live(report):
    want = expected_tif_bit(kernel_version(platform.release()))
    assert report["tif_need_fpu_load_bit"] == want
    assert report["tif_calibration"]["verified"] is True
    assert report["tif_calibration"]["source"].startswith("live")


def test_headers_kind_matches_what_is_installed(report):
    exact = Path(f"/lib/modules/{platform.release()}/build/include").is_dir()
    assert report["headers"]["kind"] == ("exact" if exact else "fallback")


def test_xstate_layout(report):
    xs = report["xstate"]
    names = [f["name"] for f in xs["features"]]
    assert names[:2] == ["x87", "sse"] and xs["total_bytes"] >= 576


def test_table_output_and_exit_status(need_bcc):
    res = run_fputrace("doctor", "--no-load", timeout=120)
    assert res.returncode == 0, res.stderr
    for word in ("privileges", "headers", "btf", "kfpu_begin", "TIF_NEED_FPU_LOAD", "xstate"):
        assert word in res.stdout
