"""``fputrace doctor`` on this host: what it says must match what the host really offers."""
from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fputrace.capture.features import expected_tif_bit, kernel_version

from .conftest import fputrace_cmd, run_fputrace

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


# ---- probing free of side effects, the verdict cache, -v (issue 8.7) ----------------------------

LOAD_WATCH = r"""
#include <uapi/linux/ptrace.h>
BPF_HASH(loads, u32, u64);
TRACEPOINT_PROBE(syscalls, sys_enter_bpf)
{
    if (args->cmd == 5 /* BPF_PROG_LOAD */) {
        u32 tgid = bpf_get_current_pid_tgid() >> 32;
        loads.increment(tgid);
    }
    return 0;
}
"""


def _program_loads_of(argv: list[str], env: dict) -> tuple[subprocess.CompletedProcess, int]:
    """Run fputrace and count its BPF_PROG_LOAD syscalls, seen by the kernel's syscall tracepoint."""
    import bcc
    from fputrace.capture.features import host_features
    from fputrace.capture.headers import apply
    apply(host_features().headers)               # bcc needs a kernel header tree here too
    watch = bcc.BPF(text=LOAD_WATCH.encode())
    try:
        proc = subprocess.Popen([*fputrace_cmd(), *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=env)
        out, err = proc.communicate(timeout=180)
        loads = {int(k.value): int(v.value) for k, v in watch[b"loads"].items()}
    finally:
        watch.cleanup()
    return subprocess.CompletedProcess(argv, proc.returncode, out, err), loads.get(proc.pid, 0)


@pytest.mark.parametrize("argv", [["doctor", "--no-load", "--json"],
                                  ["record", "-o", "x.fpt", "--ebpf"]], ids=["doctor-no-load", "record-ebpf"])
def test_no_load_and_ebpf_load_no_program(need_bcc, tmp_path, argv):
    """Not even the fentry test program: with no verdict cached for this boot (a fresh cache
    directory), fentry is reported as not tested."""
    env = {**os.environ, "FPUTRACE_CACHE": str(tmp_path / "cache")}
    res, loads = _program_loads_of(argv, env)
    assert res.returncode == 0, res.stderr
    assert loads == 0, f"{' '.join(argv)} loaded {loads} BPF programs"
    if argv[0] == "doctor":
        rep = json.loads(res.stdout)
        assert rep["checks"]["fentry"] == {"ok": None, "detail": "not tested (--no-load)"}
        assert rep["checks"]["tp_btf"] == {"ok": None, "detail": "not tested (--no-load)"}
        assert rep["load"]["detail"] == "skipped (--no-load)"
    else:
        note = res.stdout.splitlines()[1]
        assert note.startswith("// fentry and tp_btf not tested (--ebpf loads nothing)"), note
    # the same doctor with its test load does load programs (the watch sees them)
    if argv[0] == "doctor":
        res, loads = _program_loads_of(["doctor", "--json"], env)
        assert res.returncode == 0 and loads >= 2, (loads, res.stderr)


def test_only_eperm_and_success_are_cached_for_the_boot(tmp_path, monkeypatch):
    from fputrace.capture import headers
    from fputrace.capture.features import Features, Probe
    monkeypatch.setattr(headers, "CACHE_ROOT", tmp_path / "headers")
    feat = Features()
    feat.cache_probe("fentry", Probe(False, "use of undeclared identifier 'KFUNC_PROBE'"))
    assert feat.cached_probe("fentry") is None, "a compile error is fixable: not kept"
    path = feat._probe_cache_path("fentry")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("0\nunknown type name 'u64'\n")     # written by an older fputrace
    assert feat.cached_probe("fentry") is None, "a cached non-EPERM refusal is not trusted"
    feat.cache_probe("fentry", Probe(False, "EPERM: the kernel refuses fentry programs"))
    got = feat.cached_probe("fentry")
    assert got is not None and not got.ok and got.reason.startswith("EPERM") and "cached for this boot" in got.reason
    feat.cache_probe("fentry", Probe(True, "attached a test program to kernel_fpu_end"))
    assert feat.cached_probe("fentry").ok


def _capture_imports(module: str) -> set[str]:
    """Sibling modules of fputrace.capture that ``module`` imports, at module level or inside a
    function (a lazy import closes a circle just as well), leaving out ``if TYPE_CHECKING:``."""
    import ast
    import fputrace.capture as pkg
    tree = ast.parse((Path(pkg.__file__).parent / f"{module}.py").read_text())
    skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
            and getattr(node.test, "id", "") == "TYPE_CHECKING" for n in ast.walk(node)}
    return {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 1
            and n.module and id(n) not in skip}


def test_features_loader_and_plan_import_one_way():
    """plan -> features, loader -> features; features needs neither, loader does not need plan."""
    graph = {m: _capture_imports(m) & {"features", "loader", "plan"} for m in ("features", "loader", "plan")}
    assert graph == {"features": set(), "loader": {"features"}, "plan": {"features"}}, graph


def test_verbose_prints_the_whole_load_log(need_bcc, tmp_path):
    """A program the kernel refuses: here a root without capabilities (setpriv empties the bounding
    set), so map and program creation get EPERM. One line without -v; bcc's whole text with -v."""
    if not shutil.which("setpriv"):
        pytest.skip("setpriv (util-linux) not installed: cannot drop capabilities")
    argv = ["setpriv", "--bounding-set=-all", "--inh-caps=-all", *fputrace_cmd(), "record", "-o",
            str(tmp_path / "x.fpt"), "--mode", "tracepoint", "--duration", "1s"]
    quiet = subprocess.run(argv, capture_output=True, text=True, timeout=180)
    loud = subprocess.run(argv + ["-v"], capture_output=True, text=True, timeout=180)
    assert quiet.returncode == loud.returncode == 1, (quiet.stderr, loud.stderr)
    assert len(quiet.stderr.strip().splitlines()) == 1, quiet.stderr
    assert "Traceback" not in loud.stderr
    log = loud.stderr.split("fputrace: load log:\n", 1)[1]
    assert "Operation not permitted" in log and "bcc: Exception:" in log, loud.stderr
    assert loud.stderr.strip().splitlines()[-1] == quiet.stderr.strip(), "the same one line closes it"


def test_doctor_verbose_shows_the_refused_fentry_test_load(need_bcc, tmp_path):
    env = {**os.environ, "FPUTRACE_CACHE": str(tmp_path / "cache")}     # no verdict cached: a real test load
    res = subprocess.run([*fputrace_cmd(), "doctor", "--json", "-v"], capture_output=True, text=True,
                         timeout=180, env=env)
    rep = json.loads(res.stdout)
    if rep["checks"]["fentry"]["ok"]:
        pytest.skip("fentry attaches on this host: no refused load to show")
    assert "bpf: Failed to load program" in rep["checks"]["fentry"]["log"], rep["checks"]["fentry"]
    # (the first run cached its EPERM verdict for the boot: a second fresh cache loads again)
    table = subprocess.run([*fputrace_cmd(), "doctor", "-v"], capture_output=True, text=True, timeout=180,
                           env={**env, "FPUTRACE_CACHE": str(tmp_path / "cache2"), "COLUMNS": "200"}).stdout
    assert "log:" in table and "Failed to load program" in table


def test_dashboard_verbose_prints_the_load_log(need_bcc):
    """`fputrace -v` (the live dashboard) on a host that refuses the program: the log, then one line.
    script(1) gives it the terminal it insists on; setpriv takes root's capabilities away."""
    if not (shutil.which("setpriv") and shutil.which("script")):
        pytest.skip("setpriv and script (util-linux) are needed")
    cmd = " ".join(["setpriv", "--bounding-set=-all", "--inh-caps=-all", *fputrace_cmd(), "-v"])
    res = subprocess.run(["script", "-qec", cmd, "/dev/null"], capture_output=True, text=True, timeout=180)
    out = res.stdout.replace("\r", "")
    assert res.returncode == 1, out
    assert "fputrace: load log:" in out and "Operation not permitted" in out, out
    assert "Traceback" not in out
