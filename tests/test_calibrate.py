"""`fputrace calibrate` on this machine's CPU (real XSAVE, real compiler), and where it cannot run."""
from __future__ import annotations

import json
import os
import shutil

import pytest

from fputrace.calibrate import CalibrationError, build, cost_model_from
from fputrace.model.cost import load_cost_model
from tests.conftest import run_fputrace


def _has_xsave() -> bool:
    try:
        return " xsave " in f" {open('/proc/cpuinfo').read().replace(chr(10), ' ')} "
    except OSError:
        return False


@pytest.fixture
def cache_env(tmp_path):
    env = dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"),
               FPUTRACE_CACHE_DIR=str(tmp_path / "cache"))
    return env


@pytest.mark.skipif(not shutil.which("cc") and not shutil.which("gcc"),
                    reason="no C compiler (cc/gcc) to build the XSAVE micro-benchmark")
@pytest.mark.skipif(not _has_xsave(), reason="this CPU does not report the xsave flag")
def test_calibrate_writes_a_usable_cost_model(tmp_path):
    out = tmp_path / "cm.json"
    res = run_fputrace("calibrate", "-o", str(out), "--runs", "500")
    assert res.returncode == 0, res.stderr
    data = json.loads(out.read_text())
    ins = data["details"]["instructions"]
    for name in ("xsave", "xrstor"):
        assert 0 <= ins[name]["min_cycles"] <= ins[name]["median_cycles"] + 50
    # A restore of live AVX state is never free, and costs more than the timing fences around it.
    assert data["xrstor_cycles"] > 20 and data["xsave_cycles"] > 20
    assert data["family"].startswith("XSAVE")
    cm = load_cost_model(out)
    assert cm.name == str(out) and cm.cycles(1, 1) == data["xsave_cycles"] + data["xrstor_cycles"]
    assert "XRSTOR" in res.stdout and str(out) in res.stdout


def test_no_compiler_is_one_clear_line(tmp_path, cache_env):
    env = dict(cache_env, CC="/nonexistent/cc", HOME=str(tmp_path))
    env["PATH"] = str(tmp_path / "empty")           # no cc/gcc/clang anywhere
    res = run_fputrace("calibrate", "-o", str(tmp_path / "x.json"), env=env)
    assert res.returncode == 1
    assert "no C compiler found" in res.stderr and "builtin-default" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


def test_build_failure_is_reported(tmp_path, monkeypatch):
    fake = tmp_path / "fakecc"
    fake.write_text("#!/bin/sh\necho 'fakecc: error: cannot compile' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("CC", str(fake))
    with pytest.raises(CalibrationError, match="failed: fakecc: error: cannot compile"):
        build(tmp_path / "bin")


def test_cost_model_subtracts_overhead_and_picks_the_kernel_family():
    raw = {"runs": 100, "xcr0": 0x207, "xsave_area_bytes": 2440, "xsaves_supported": True,
           "features": [],
           "cycles": {"overhead": {"min": 40, "median": 70}, "xsave": {"min": 160, "median": 200},
                      "xsaveopt": {"min": 150, "median": 190}, "xsavec": {"min": 170, "median": 210},
                      "xrstor": {"min": 350, "median": 380}}}
    cm = cost_model_from(raw)
    assert cm["family"] == "XSAVES/XRSTORS"
    assert cm["xsave_cycles"] == 210 - 70 and cm["xrstor_cycles"] == 380 - 70
    assert cm["details"]["instructions"]["xsave"] == {"min_cycles": 120, "median_cycles": 130}
    raw["xsaves_supported"] = False
    assert cost_model_from(raw)["family"] == "XSAVEOPT/XRSTOR"
