"""Issue 10 on hand-made events: per-task components, bytes per save, shares, cycles charged per
component class from a per-set cost model, AMX/AVX-512 tasks first, and the bytes each policy's
avoidable restores of large state moved for nothing."""
from __future__ import annotations

import json

import pytest

from fputrace.model import Model
from fputrace.model.cost import load_cost_model
from tests.conftest import run_fputrace
from tests.scenario_builder import build
from tests.test_scenarios_model import PROBES

# An AVX-512 + AMX machine: XCR0 0x602e7, CPUID leaf 0xD sizes
XEON = {"xstate": {"xcr0": "0x602e7", "mask": "0x602e7", "compacted": True, "features": [
    {"bit": 0, "size_bytes": 160}, {"bit": 1, "size_bytes": 256}, {"bit": 2, "size_bytes": 256},
    {"bit": 5, "size_bytes": 64}, {"bit": 6, "size_bytes": 512}, {"bit": 7, "size_bytes": 1024},
    {"bit": 9, "size_bytes": 8}, {"bit": 17, "size_bytes": 64}, {"bit": 18, "size_bytes": 8192}]},
    "cpu_model": "Xeon X"}
AMX_BYTES = 576 + 256 + 64 + 512 + 1024 + 8 + 64 + 8192        # xf 0x602e7
SSE_BYTES = 576 + 8                                           # xf 0x203

# A (AMX tiles live) runs SPEC 5.3's example: under eager one restore is thrown away unused.
# B (SSE only) is switched out and back once.
EVENTS = """
    task A 100
    task B 200
    0 A KFPU_BEGIN caller=0xffffffff81a00010
    0 A XSAVE xf=0x602e7
    0 A KFPU_END
    0 A KFPU_BEGIN caller=0xffffffff81a00010
    0 A KFPU_END
    0 A USER_RETURN
    0 A XRSTOR xf=0x602e7
    1 B USER_RETURN
    1 B SWITCH idle blocked
    1 B XSAVE xf=0x203 cause=switch
    1 idle SWITCH B
    1 B USER_RETURN
    1 B XRSTOR xf=0x203
"""


@pytest.fixture
def per_set(tmp_path):
    table = {"sse": ("0x203", 584, 90, 144), "avx": ("0x207", 840, 100, 150),
             "avx512": ("0x2e7", 2440, 150, 200), "amx": ("0x602e7", AMX_BYTES, 400, 500)}
    entries = [{"set": s, "xfeatures": xf, "bytes": b, "xsave_cycles": c - 3, "xrstor_cycles": r - 3,
                "xsave_cycles_median": c, "xrstor_cycles_median": r, "instruction": "XSAVEC"}
               for s, (xf, b, c, r) in table.items()]
    path = tmp_path / "xeon.json"
    path.write_text(json.dumps({"xsave_cycles": 90, "xrstor_cycles": 144, "per_xfeatures": entries,
                                "details": {"cpu_model": "Xeon X"}}))
    return load_cost_model(path)


def _analyse(cost):
    m = Model(dict(PROBES, **XEON), policies=("eager", "deferred", "deferred-novalid"),
              cost_model=cost)
    m.feed(build(EVENTS))
    return m.report(), m.estimate()


def test_report_shows_components_bytes_per_save_and_shares(per_set):
    rep, _ = _analyse(per_set)
    t = rep.per_task.set_index("tid")
    a, b = t.loc[100], t.loc[200]
    assert (a.components, a.xstate_class, a.xfeatures_seen) == ("SSE+AVX+AVX-512+AMX", "amx", "0x602e7")
    assert (b.components, b.xstate_class) == ("SSE", "sse")
    assert a.bytes_per_xsave == AMX_BYTES and b.bytes_per_xsave == SSE_BYTES
    total = 2 * AMX_BYTES + 2 * SSE_BYTES
    assert a.bytes_share == pytest.approx(2 * AMX_BYTES / total)
    assert a.bytes_share + b.bytes_share == pytest.approx(1)
    assert a.cycles == 400 + 500 and b.cycles == 90 + 144              # each its class's set
    assert rep.totals["cycles"] == 900 + 234
    assert a.cycles_share == pytest.approx(900 / 1134)
    pc = rep.per_class.set_index("class")
    assert (pc.loc["amx", "xsave"], pc.loc["amx", "bytes"], pc.loc["amx", "cycles"]) == (1, 2 * AMX_BYTES, 900)
    assert pc.loc["amx", "charged_set"] == "amx 0x602e7" and pc.loc["amx", "match"] == "calibrated"
    # B has more events but A moved more: --sort bytes and components put A first
    assert list(rep.filtered(sort="xsave").tid)[:1] in ([100], [200])
    assert list(rep.filtered(sort="bytes").tid) == [100, 200]
    assert list(rep.filtered(sort="components").tid) == [100, 200]
    d = rep.to_dict(sort="components")
    assert d["per_task"][0]["components"] == "SSE+AVX+AVX-512+AMX" and d["per_class"][3]["class"] == "amx"
    text = rep.to_text(sort="components")
    assert "SSE+AVX+AVX512+AMX" in text and "by components" in text and "amx 0x602e7" in text


def test_estimate_charges_each_class_and_counts_large_state_thrown_away(per_set):
    _, est = _analyse(per_set)
    # eager: A 2 saves + 2 restores of AMX state (one restore avoidable), B 1 + 1 of SSE
    eager = est.policies.loc["eager"]
    assert (eager.xsave, eager.xrstor, eager.avoidable_xrstor) == (3, 3, 1)
    assert eager.cycles == 2 * 400 + 2 * 500 + 90 + 144
    assert est.policies.loc["deferred", "cycles"] == 400 + 500 + 90 + 144
    assert est.measured["cycles"] == 400 + 500 + 90 + 144
    pc = est.per_class.set_index(["side", "class"])
    assert pc.loc[("eager", "amx"), "xrstor"] == 2 and pc.loc[("eager", "amx"), "cycles"] == 1800
    big = est.large_state_tasks
    assert list(big.tid) == [100] and big.loc[0, "components"] == "SSE+AVX+AVX-512+AMX"
    assert big.loc[0, "avoidable_xrstor_eager"] == 1
    assert big.loc[0, "avoidable_bytes_eager"] == AMX_BYTES            # 10,696 bytes for nothing
    assert big.loc[0, "avoidable_bytes_deferred"] == 0
    d = est.to_dict()
    assert d["cost_charged"]["amx"]["set"] == "amx" and d["large_state_tasks"][0]["tid"] == 100
    assert any("nearest superset" in n and "amx->amx 0x602e7 (calibrated)" in n for n in est.notes)
    text = est.to_text()
    assert "tasks with AVX-512/AMX state" in text and f"1 ({AMX_BYTES:,} B)" in text


def test_a_cost_model_without_amx_charges_amx_events_a_stated_lower_bound(tmp_path, per_set):
    data = json.loads(open(per_set.name).read())
    data["per_xfeatures"] = [e for e in data["per_xfeatures"] if e["set"] in ("sse", "avx")]
    data["left_out"] = [{"set": "amx", "reason": "CPU has no AMX"}]
    path = tmp_path / "epyc.json"
    path.write_text(json.dumps(data))
    _, est = _analyse(load_cost_model(path))
    assert est.measured["cycles"] == 100 + 150 + 90 + 144            # AMX charged the avx set
    assert any("no calibrated set covers avx512, amx state (amx: CPU has no AMX)" in n
               for n in est.notes)


def test_report_sort_on_the_command_line(tmp_path):
    from fputrace.recording import RecordingWriter
    path = tmp_path / "x.fpt"
    w = RecordingWriter(path, dict(PROBES, **XEON))
    w.write(build(EVENTS))
    w.close()
    res = run_fputrace("report", str(path), "--sort", "components", "--format", "json")
    assert res.returncode == 0, res.stderr
    tasks = json.loads(res.stdout)["per_task"]
    assert [t["tid"] for t in tasks] == [100, 200] and tasks[0]["bytes_per_xsave"] == AMX_BYTES
    res = run_fputrace("report", str(path), "--sort", "size")
    assert res.returncode == 2 and "invalid choice" in res.stderr


def test_the_dashboard_snapshot_carries_bytes_and_components(per_set):
    m = Model(dict(PROBES, **XEON), cost_model=per_set)
    m.feed(build(EVENTS))
    t = m.snapshot().tasks.set_index("tid")
    assert t.loc[100, "bytes"] == 2 * AMX_BYTES and t.loc[200, "bytes"] == 2 * SSE_BYTES
    assert (t.loc[100, "components"], t.loc[100, "xstate_rank"]) == ("SSE+AVX+AVX-512+AMX", 3)
    assert (t.loc[200, "components"], t.loc[200, "xstate_rank"]) == ("SSE", 0)
