"""`fputrace calibrate` on this machine's CPU (real XSAVE, real compiler, real AMX permission where
the CPU has AMX), and where it cannot run: no compiler, a CPU without a feature."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from fputrace.calibrate import CalibrationError, build, cost_model_from
from fputrace.capture.xstate import cpuid
from fputrace.model.cost import XSTATE_CLASSES, load_cost_model
from tests.conftest import run_fputrace

GROUPS = dict(XSTATE_CLASSES)                                  # classes (amx: tile data)
CAL_GROUPS = {"avx": 0x4, "avx512": 0xE0, "amx": 0x60000}      # what the benchmark enables per set


def _cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


FLAGS = _cpu_flags()
HAVE_CC = bool(shutil.which("cc") or shutil.which("gcc"))
need_cc = pytest.mark.skipif(not HAVE_CC, reason="no C compiler (cc/gcc) to build the XSAVE benchmark")
need_xsave = pytest.mark.skipif("xsave" not in FLAGS, reason="this CPU does not report the xsave flag")
# what the CPU has, by /proc/cpuinfo (the kernel's reading of CPUID), for each set beyond sse
CPU_HAS = {"avx": "avx" in FLAGS, "avx512": "avx512f" in FLAGS, "amx": "amx_tile" in FLAGS}


SMALLEST_FIRST = ("sse", "avx", "avx512", "amx")
OS_LACKS = "the OS has not enabled the {} state: XCR0 "         # xsave_bench.c's XCR0 reason


def _left_out_as_lacking(name: str, reason: str) -> bool:
    """A set /proc/cpuinfo lacks is left out by the benchmark's CPUID check, or, where the kernel
    cleared the flag but CPUID still has the feature (clearcpuid=, AMX without XFD: Linux's
    cpuid-deps.c and fpu/xstate.c then also keep its bits out of XCR0), by the XCR0 check."""
    return reason.startswith("CPU has no") or reason.startswith(OS_LACKS.format(name))


def _left_out_as_refused(reason: str) -> bool:
    """AMX listed in /proc/cpuinfo but not measured: the OS did not enable tile state (Linux
    before 5.16 lists amx_tile and leaves XCR0 bits 17-18 clear) or the kernel refused it."""
    return reason.startswith(OS_LACKS.format("amx")) or "arch_prctl" in reason or "kernel" in reason


def _next_below(entries: dict, name: str) -> dict:
    """The largest measured set smaller than ``name``: sets are cumulative over what this host
    has, so AMX without AVX-512 (cpuid-deps.c: AMX_TILE needs only XFD) sits on the avx set."""
    return entries[[s for s in SMALLEST_FIRST[:SMALLEST_FIRST.index(name)] if s in entries][-1]]


def _size(bit: int) -> int:
    """CPUID leaf 0xD size of a component, read here independently of the benchmark."""
    return {0: 0, 1: 0}.get(bit, cpuid(0xD, bit)[0])


def _calibrate(tmp_path, *extra, env=None) -> tuple[dict, str]:
    out = tmp_path / "cm.json"
    res = run_fputrace("calibrate", "-o", str(out), *extra, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    return json.loads(out.read_text()), res.stdout


@pytest.fixture
def cache_env(tmp_path):
    return dict(os.environ, XDG_CACHE_HOME=str(tmp_path / "cache"),
                FPUTRACE_CACHE_DIR=str(tmp_path / "cache"))


@need_cc
@need_xsave
def test_calibrate_measures_each_component_set_this_cpu_has(tmp_path, cache_env):
    data, stdout = _calibrate(tmp_path, "--runs", "2000", env=cache_env)
    entries = {e["set"]: e for e in data["per_xfeatures"]}
    left_out = {lo["set"]: lo["reason"] for lo in data["left_out"]}
    assert "sse" in entries
    for name, has in CPU_HAS.items():
        if has and name != "amx":
            assert name in entries, left_out.get(name)
        elif not has:
            assert name not in entries
            assert _left_out_as_lacking(name, left_out[name]), left_out[name]
    if CPU_HAS["amx"] and "amx" not in entries:     # an OS or kernel may refuse: then it says why
        assert _left_out_as_refused(left_out["amx"]), left_out["amx"]
    prev_bytes, live = 0, 0
    for e in data["per_xfeatures"]:                 # smallest set first, each a superset
        xf = int(e["xfeatures"], 16)
        live |= GROUPS[e["set"]]
        need = live & ~1
        assert xf & need == need, e                 # the saves really held the set
        if data["details"]["xinuse_checked"]:
            assert int(e["xinuse"], 16) & need == need, e
        assert e["bytes"] == 576 + sum(_size(b) for b in range(2, 64) if xf >> b & 1)
        assert e["bytes"] > prev_bytes
        prev_bytes = e["bytes"]
        for k in ("xsave_cycles", "xrstor_cycles"):
            assert 0 < e[k] <= e[k + "_median"], e   # min <= median, both after the overhead
        # a restore of live state costs more than the timing fences around it
        assert e["xrstor_cycles_median"] > 20 and e["xsave_cycles_median"] > 20
        assert set(e["instructions"]) >= {"xsave", "xsavec", "xrstor_compacted", "xrstor_standard"}
    assert data["family"] == "XSAVES/XRSTORS" if "xsaves" in FLAGS else data["family"].startswith("XSAVE")
    assert "stands in for XSAVES" in data["instruction"] or "xsaves" not in FLAGS
    cm = load_cost_model(tmp_path / "cm.json")
    assert [e.set for e in cm.per_xfeatures] == list(entries)
    for cls in ("sse", "avx", "avx512", "amx"):      # what an estimate charges each class
        e, how = cm.set_for_class(cls)
        assert (e.set, how) == (cls, "calibrated") if cls in entries else how == "below"
        assert cm.class_cycles(cls) == (e.xsave_cycles_median, e.xrstor_cycles_median)
    for name in left_out:
        assert f"{name:7s} left out: {left_out[name]}" in stdout


@need_cc
@pytest.mark.skipif(not CPU_HAS["amx"], reason="this CPU has no AMX (no amx_tile in /proc/cpuinfo): "
                    "the AMX-dirty set cannot be measured")
def test_amx_dirty_saves_cost_more_than_sse_only_ones(tmp_path, cache_env):
    data, _ = _calibrate(tmp_path, "--runs", "4000", env=cache_env)
    entries = {e["set"]: e for e in data["per_xfeatures"]}
    if "amx" not in entries:
        pytest.skip(f"the kernel did not grant AMX: {dict((lo['set'], lo['reason']) for lo in data['left_out'])['amx']}")
    amx, sse = entries["amx"], entries["sse"]
    assert int(amx["xfeatures"], 16) & 0x60000 == 0x60000
    assert amx["bytes"] - _next_below(entries, "amx")["bytes"] == _size(17) + _size(18)
    assert amx["xsave_cycles_median"] > sse["xsave_cycles_median"]
    assert amx["xrstor_cycles_median"] > sse["xrstor_cycles_median"]


@need_cc
@need_xsave
def test_a_cpu_without_a_feature_leaves_its_set_out_with_the_reason(tmp_path, cache_env):
    """FPUTRACE_CALIBRATE_HIDE makes the benchmark read those CPUID bits as 0 (documented in
    `fputrace calibrate --help`); the default run reads the real CPU (test above)."""
    env = dict(cache_env, FPUTRACE_CALIBRATE_HIDE="avx,amx")
    data, stdout = _calibrate(tmp_path, "--runs", "200", env=env)
    left_out = {lo["set"]: lo["reason"] for lo in data["left_out"]}
    assert left_out["avx"] == "CPU has no AVX (CPUID.1:ECX[28] = 0: hidden by FPUTRACE_CALIBRATE_HIDE)"
    assert left_out["amx"].startswith("CPU has no AMX (CPUID.(EAX=7,ECX=0):EDX[24] AMX-TILE = 0")
    sets = [e["set"] for e in data["per_xfeatures"]]
    assert "avx" not in sets and "amx" not in sets and sets[0] == "sse"
    assert not int(data["per_xfeatures"][0]["xfeatures"], 16) & 0x4      # SSE only: no YMM state
    # estimates with this file say what covers the missing classes
    cm = load_cost_model(tmp_path / "cm.json")
    notes = " ".join(cm.notes({}))
    assert "no calibrated set covers" in notes and "amx" in notes and "hidden by" in notes


@need_cc
@need_xsave
@pytest.mark.skipif(all(CPU_HAS.values()), reason="this CPU has AVX, AVX-512 and AMX: no set to assume")
def test_past_the_cpuid_check_the_os_gives_its_own_reason(tmp_path, cache_env):
    """FPUTRACE_CALIBRATE_ASSUME skips a set's CPUID check: on a CPU without it, XCR0 (what the
    kernel enabled) must then leave it out, with the bits it lacks; nothing is executed."""
    missing = [name for name, has in CPU_HAS.items() if not has]
    env = dict(cache_env, FPUTRACE_CALIBRATE_ASSUME=",".join(missing))
    data, _ = _calibrate(tmp_path, "--runs", "100", env=env)
    left_out = {lo["set"]: lo["reason"] for lo in data["left_out"]}
    xcr0 = int(data["details"]["xcr0"], 16)
    for name in missing:
        lacks = CAL_GROUPS[name] & ~xcr0
        assert left_out[name] == (f"the OS has not enabled the {name} state: XCR0 0x{xcr0:x} "
                                  f"lacks 0x{lacks:x}"), left_out[name]


@need_cc
@need_xsave
def test_sets_restricts_what_is_measured(tmp_path, cache_env):
    data, _ = _calibrate(tmp_path, "--sets", "sse", "--runs", "100", env=cache_env)
    assert [e["set"] for e in data["per_xfeatures"]] == ["sse"]
    assert {lo["set"]: lo["reason"] for lo in data["left_out"]}["avx"] == "not requested (--sets sse)"


def test_bad_sets_and_hide_values_are_one_line(tmp_path, cache_env):
    res = run_fputrace("calibrate", "-o", str(tmp_path / "x.json"), "--sets", "sse,zmm", env=cache_env)
    assert res.returncode == 2 and "unknown set zmm" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
    if HAVE_CC:
        env = dict(cache_env, FPUTRACE_CALIBRATE_HIDE="sse")
        res = run_fputrace("calibrate", "-o", str(tmp_path / "x.json"), "--runs", "100", env=env)
        assert res.returncode == 1 and "cannot apply to sse" in res.stderr
        assert len(res.stderr.strip().splitlines()) == 1


def test_no_compiler_is_one_clear_line(tmp_path, cache_env):
    env = dict(cache_env, HOME=str(tmp_path))
    env.pop("CC", None)
    env["PATH"] = str(tmp_path / "empty")           # no cc/gcc/clang anywhere
    res = run_fputrace("calibrate", "-o", str(tmp_path / "x.json"), env=env)
    assert res.returncode == 1
    assert res.stderr.strip() == ("fputrace: no C compiler found (no cc/gcc/clang in PATH; set CC, "
                                  "or apt-get install gcc); estimates keep using the builtin-default "
                                  "cost model")
    env["CC"] = "/nonexistent/cc"
    res = run_fputrace("calibrate", "-o", str(tmp_path / "x.json"), env=env)
    assert res.returncode == 1 and "CC=/nonexistent/cc is not a program" in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and not (tmp_path / "x.json").exists()


def test_unwritable_places_are_one_line(tmp_path, cache_env):
    res = run_fputrace("calibrate", "-o", "/proc/nope/cm.json", env=cache_env)
    assert res.returncode == 1 and len(res.stderr.strip().splitlines()) == 1
    assert "cannot write the cost model to /proc/nope/cm.json" in res.stderr
    env = dict(cache_env, FPUTRACE_CACHE_DIR="/proc/nope")
    res = run_fputrace("calibrate", "-o", str(tmp_path / "cm.json"), env=env)
    assert res.returncode == 1 and len(res.stderr.strip().splitlines()) == 1
    assert "cannot build the XSAVE benchmark in /proc/nope/bin" in res.stderr or \
        "no C compiler" in res.stderr


def test_build_failure_is_reported(tmp_path, monkeypatch):
    fake = tmp_path / "fakecc"
    fake.write_text("#!/bin/sh\necho 'fakecc: error: cannot compile' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("CC", str(fake))
    with pytest.raises(CalibrationError, match="failed: fakecc: error: cannot compile"):
        build(tmp_path / "bin")


@need_cc
def test_a_compiler_without_amx_builds_the_rest(tmp_path, monkeypatch):
    """A compiler that fails on the AMX part (as one without -mamx-tile support would) gets a
    second build without it; the AMX set is then left out with the compiler's words."""
    real = shutil.which("cc") or shutil.which("gcc")
    fake = tmp_path / "oldcc"
    fake.write_text("#!/bin/sh\ncase \"$*\" in *XB_NO_AMX*) exec %s \"$@\";; esac\n"
                    "echo 'oldcc: error: unknown target amx-tile' >&2\nexit 1\n" % real)
    fake.chmod(0o755)
    monkeypatch.setenv("CC", str(fake))
    exe, note = build(tmp_path / "bin")
    assert exe.name.endswith("-noamx")
    assert note == f"{fake} cannot build the AMX part (oldcc: error: unknown target amx-tile)"
    assert build(tmp_path / "bin") == (exe, note)            # cached, note kept


def _raw(**over) -> dict:
    """Benchmark output of an imagined AVX-512 + AMX CPU (XCR0 0x602e7), in ticks per region of 8."""
    def cyc(save, rstor):
        return {"overhead": {"min": 40, "median": 64}, "xsave": {"min": 8 * save + 64, "median": 8 * save + 80},
                "xsaveopt": {"min": 8 * save + 64, "median": 8 * save + 80},
                "xsavec": {"min": 8 * save + 64, "median": 8 * save + 72},
                "xrstor_compacted": {"min": 8 * rstor + 64, "median": 8 * rstor + 96},
                "xrstor_standard": {"min": 8 * rstor + 64, "median": 8 * rstor + 96}}
    sets = [
        {"name": "sse", "live": 0x3, "rfbm": 0x202e7, "xinuse_all_runs": 0x203, "xinuse_any_run": 0x203,
         "xstate_bv_all_runs": 0x203, "xstate_bv_any_run": 0x203, "cycles": cyc(90, 144)},
        {"name": "avx", "live": 0x7, "rfbm": 0x202e7, "xinuse_all_runs": 0x207, "xinuse_any_run": 0x207,
         "xstate_bv_all_runs": 0x207, "xstate_bv_any_run": 0x207, "cycles": cyc(100, 150)},
        {"name": "avx512", "live": 0xe7, "rfbm": 0x202e7, "xinuse_all_runs": 0x2e7, "xinuse_any_run": 0x2e7,
         "xstate_bv_all_runs": 0x2e7, "xstate_bv_any_run": 0x2e7, "cycles": cyc(150, 200)},
        {"name": "amx", "live": 0x600e7, "rfbm": 0x602e7, "xinuse_all_runs": 0x602e7,
         "xinuse_any_run": 0x602e7, "xstate_bv_all_runs": 0x602e7, "xstate_bv_any_run": 0x602e7,
         "cycles": cyc(400, 500)},
    ]
    feats = [{"bit": 0, "size_bytes": 160}, {"bit": 1, "size_bytes": 256}, {"bit": 2, "size_bytes": 256},
             {"bit": 5, "size_bytes": 64}, {"bit": 6, "size_bytes": 512}, {"bit": 7, "size_bytes": 1024},
             {"bit": 9, "size_bytes": 8}, {"bit": 17, "size_bytes": 64}, {"bit": 18, "size_bytes": 8192}]
    raw = {"runs": 1000, "rounds": 8, "per_region": 8, "xcr0": 0x602e7, "xsave_area_bytes": 11008,
           "xsavec_area_bytes": 10752, "features": feats, "sets": sets,
           "cpu": {"avx": 1, "avx512f": 1, "amx_tile": 1, "xsaveopt": 1, "xsavec": 1, "xsaves": 1,
                   "xgetbv1": 1}}
    raw.update(over)
    return raw


def test_cost_model_file_from_ticks():
    cm = cost_model_from(_raw())
    assert cm["family"] == "XSAVES/XRSTORS" and "XSAVEC stands in for XSAVES" in cm["instruction"]
    e = {x["set"]: x for x in cm["per_xfeatures"]}
    assert [x["set"] for x in cm["per_xfeatures"]] == ["sse", "avx", "avx512", "amx"]
    # ticks per region minus the empty region's median (64), over 8 instructions
    assert (e["sse"]["xsave_cycles"], e["sse"]["xsave_cycles_median"]) == (90.0, 91.0)
    assert (e["sse"]["xrstor_cycles"], e["sse"]["xrstor_cycles_median"]) == (144.0, 148.0)
    assert e["sse"]["instruction"] == "XSAVEC / XRSTOR (compacted) for the kernel's XSAVES/XRSTORS"
    assert (e["amx"]["xfeatures"], e["amx"]["bytes"]) == ("0x602e7", 576 + 256 + 64 + 512 + 1024 + 8 + 64 + 8192)
    assert (e["sse"]["xfeatures"], e["sse"]["bytes"]) == ("0x203", 584)
    assert e["avx512"]["components"] == ["x87", "sse", "avx", "avx512_opmask", "avx512_zmm_hi256",
                                         "avx512_hi16_zmm", "pkru"]
    assert cm["xsave_cycles"] == 91.0 and cm["left_out"] == []
    raw = _raw(cpu=dict(_raw()["cpu"], xsaves=0))
    cm = cost_model_from(raw)
    assert cm["family"] == "XSAVEOPT/XRSTOR"
    assert cm["per_xfeatures"][0]["instruction"] == "XSAVEOPT / XRSTOR (standard) for the kernel's XSAVEOPT/XRSTOR"


def test_an_amx_host_without_avx512_is_checked_against_the_sets_it_has():
    """Linux enables AMX without AVX-512 (cpuid-deps.c: AMX_TILE depends on XFD only; with
    clearcpuid=avx512f, fpu/xstate.c drops XCR0 bits 5-7 and keeps 17-18): the benchmark then
    measures amx on top of avx, the live tests' checks must take the tile bytes over that set,
    and the reasons the sets are left out are the XCR0 ones (checked on the benchmark's words)."""
    raw = _raw(xcr0=0x60207, features=[f for f in _raw()["features"] if f["bit"] not in (5, 6, 7)])
    raw["sets"][2] = {"name": "avx512", "reason": "the OS has not enabled the avx512 state: "
                      "XCR0 0x60207 lacks 0xe0"}
    raw["sets"][3].update(live=0x60007, xinuse_all_runs=0x60207, xinuse_any_run=0x60207,
                          xstate_bv_all_runs=0x60207, xstate_bv_any_run=0x60207)
    cm = cost_model_from(raw)
    entries = {e["set"]: e for e in cm["per_xfeatures"]}
    left_out = {lo["set"]: lo["reason"] for lo in cm["left_out"]}
    assert list(entries) == ["sse", "avx", "amx"]
    amx = entries["amx"]
    assert (amx["xfeatures"], amx["bytes"]) == ("0x60207", 576 + 256 + 8 + 64 + 8192)
    assert entries["amx"]["bytes"] - _next_below(entries, "amx")["bytes"] == 64 + 8192
    assert _next_below(_raw_entries(), "amx")["set"] == "avx512"
    assert _left_out_as_lacking("avx512", left_out["avx512"])
    assert not _left_out_as_lacking("avx", left_out["avx512"])
    # Linux < 5.16 on an AMX CPU: amx_tile in /proc/cpuinfo, no tile state in XCR0
    assert _left_out_as_refused("the OS has not enabled the amx state: XCR0 0x2e7 lacks 0x60000")
    assert not _left_out_as_refused("the set did not stay live: XINUSE read 0x2e7 in some run, "
                                    "without 0x60000")


def _raw_entries() -> dict:
    return {e["set"]: e for e in cost_model_from(_raw())["per_xfeatures"]}


def test_sets_that_were_not_live_are_left_out():
    raw = _raw()
    raw["sets"][2]["xinuse_all_runs"] = 0x207       # AVX-512 state went back to init in some run
    raw["sets"][1]["xinuse_any_run"] = 0x60207      # tiles live while measuring the AVX set
    raw["sets"][3] = {"name": "amx", "reason": "the kernel refused AMX: arch_prctl(ARCH_REQ_XCOMP_PERM, "
                      "XFEATURE_XTILEDATA=18) failed: Operation not permitted (errno 1)"}
    cm = cost_model_from(raw)
    assert [x["set"] for x in cm["per_xfeatures"]] == ["sse"]
    why = {lo["set"]: lo["reason"] for lo in cm["left_out"]}
    assert why["avx512"] == "the set did not stay live: XINUSE read 0x207 in some run, without 0xe0"
    assert why["avx"] == "state of a larger set was live beside it (0x40000)"
    assert "errno 1" in why["amx"]
    raw["sets"] = [{"name": "sse", "reason": "x"}]
    with pytest.raises(CalibrationError, match="no component set could be measured: sse: x"):
        cost_model_from(raw)
