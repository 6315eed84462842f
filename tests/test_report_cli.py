"""`fputrace report` and `fputrace estimate` as a user runs them: real files, real processes."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from fputrace.recording import RecordingWriter
from tests.conftest import run_fputrace
from tests.scenario_builder import build
from tests.test_scenarios_model import PROBES

DEMO = Path(__file__).resolve().parent.parent / "fputrace" / "data" / "demo.fpt"

SPEC_EXAMPLE = """
    task A 100
    task B 200 100
    0 A KFPU_BEGIN caller=0xffffffff81a00010
    0 A XSAVE
    0 A KFPU_END
    0 A KFPU_BEGIN caller=0xffffffff81a00010
    0 A KFPU_END
    0 A USER_RETURN
    0 A XRSTOR
    1 idle SWITCH B
    1 B USER_RETURN
    1 B XRSTOR
"""


@pytest.fixture
def spec_recording(tmp_path):
    path = tmp_path / "spec.fpt"
    meta = dict(PROBES, nr_cpus=2, symbols={"0xffffffff81a00010": "sha256_update+0x10"})
    with RecordingWriter(path, meta) as w:
        w.write(build(SPEC_EXAMPLE))
    return path


def run_json(*args):
    res = run_fputrace(*args)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_report_json_has_the_documented_keys(spec_recording):
    out = run_json("report", str(spec_recording), "--format", "json")
    t = out["totals"]
    assert (t["xsave"], t["xrstor"], t["avoidable_xrstor"], t["kfpu_sections"]) == (1, 2, 0, 2)
    rows = {r["tid"]: r for r in out["per_task"]}
    assert {k: rows[100][k] for k in ("comm", "xsave", "xrstor", "avoidable_xrstor",
                                      "kfpu_sections")} == {"comm": "A", "xsave": 1, "xrstor": 1,
                                                            "avoidable_xrstor": 0,
                                                            "kfpu_sections": 2}
    assert out["lost_events"] == 0 and out["truncated"] is False
    assert out["kfpu_callers"][0]["caller"] == "sha256_update+0x10"
    assert out["exactness"]["kfpu_sections"] == "exact"
    assert out["recorded_policy"] == "deferred"


def test_report_pid_top_and_csv(spec_recording):
    out = run_json("report", str(spec_recording), "--format", "json", "--pid", "200")
    assert [r["tid"] for r in out["per_task"]] == [200]
    out = run_json("report", str(spec_recording), "--format", "json", "--pid", "100")
    assert sorted(r["tid"] for r in out["per_task"]) == [100, 200]      # tgid 100 has both
    out = run_json("report", str(spec_recording), "--format", "json", "--top", "1")
    assert len(out["per_task"]) == 1
    res = run_fputrace("report", str(spec_recording), "--format", "csv")
    lines = res.stdout.strip().splitlines()
    assert lines[0].startswith("tid,generation,tgid,comm") and len(lines) == 3
    res = run_fputrace("report", str(spec_recording))
    assert res.returncode == 0 and "XSAVE 1" in res.stdout and "exactness" in res.stdout


def test_estimate_json_spec_example(spec_recording):
    out = run_json("estimate", str(spec_recording), "--format", "json")
    pol = out["policies"]
    # A: the SPEC 5.3 example; B: one restore on its first return under every policy.
    assert {k: pol["eager"][k] for k in ("xsave", "xrstor", "avoidable_xrstor")} == \
        {"xsave": 2, "xrstor": 3, "avoidable_xrstor": 1}
    assert {k: pol["deferred"][k] for k in ("xsave", "xrstor", "avoidable_xrstor")} == \
        {"xsave": 1, "xrstor": 2, "avoidable_xrstor": 0}
    assert pol["deferred"]["bytes"] == 3 * 840 and pol["eager"]["cycles"] > pol["deferred"]["cycles"]
    assert out["recorded_policy"] == "deferred" and out["self_check"] == 1.0
    assert out["cost_model"]


def test_estimate_with_a_cost_model_file(spec_recording, tmp_path):
    cm = tmp_path / "cm.json"
    cm.write_text(json.dumps({"xsave_cycles": 100, "xrstor_cycles": 200}))
    out = run_json("estimate", str(spec_recording), "--format", "json", "--policy", "deferred",
                   "--cost-model", str(cm))
    assert list(out["policies"]) == ["deferred"]
    assert out["policies"]["deferred"]["cycles"] == 1 * 100 + 2 * 200
    assert out["cost_model"] == str(cm)


@pytest.mark.parametrize("args, needle", [
    (["estimate", "{rec}", "--policy", "lazy"], "unknown policy 'lazy'"),
    (["estimate", "{rec}", "--cost-model", "{tmp}/missing.json"], "no such cost-model file"),
    (["estimate", "{rec}", "--cost-model", "{tmp}/bad.json"], "not a fputrace cost-model file"),
    (["report", "{tmp}/bad.json"], "not an fputrace recording"),
    (["report", "{tmp}/nothing.fpt"], "nothing.fpt"),
    (["report", "{rec}", "--top", "0"], "--top must be at least 1"),
])
def test_wrong_input_is_one_line(spec_recording, tmp_path, args, needle):
    (tmp_path / "bad.json").write_text("{not json")
    args = [a.format(rec=spec_recording, tmp=tmp_path) for a in args]
    res = run_fputrace(*args)
    assert res.returncode != 0
    assert needle in res.stderr and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr


def test_real_recording_report_and_estimate():
    """The bundled real recording (any mode): the report's totals are the
    XSAVE/XRSTOR events in the file (saves inferred from switch-outs are counted apart), and the deferred replay reproduces them (self-check)."""
    if not DEMO.exists():
        pytest.skip("fputrace/data/demo.fpt (the bundled real recording) is not in this tree")
    import numpy as np

    from fputrace.events import Kind
    from fputrace.recording import open_recording
    ev = open_recording(DEMO).read_all()
    out = run_json("report", str(DEMO), "--format", "json")
    t = out["totals"]
    assert t["xsave"] == int((ev["kind"] == Kind.XSAVE).sum())
    assert out["totals"]["xrstor"] == int((ev["kind"] == Kind.XRSTOR).sum())
    inferred = bool((ev["flags"] & 1).any())
    assert ("inferred" in out["exactness"]["kfpu_sections"]) == inferred
    est = run_json("estimate", str(DEMO), "--format", "json")
    assert est["self_check"] > 0.99
    assert np.isclose(est["policies"]["deferred"]["xrstor"], out["totals"]["xrstor"], rtol=0.01)


def test_fputrace_own_tasks_are_marked_in_a_real_recording():
    """The bundled demo was recorded by fputrace in a lab guest (meta fputrace_tgid): the report
    marks exactly the tasks of that process, in JSON (fputrace_own) and in text (OWN_MARK before
    the name, and a legend); a recording that does not say (the lab's, made before fputrace_tgid)
    marks none."""
    import re

    import fputrace
    from fputrace.model.tables import OWN_MARK
    if not DEMO.exists():
        pytest.skip("fputrace/data/demo.fpt (the bundled real recording) is not in this tree")
    own_tgid = fputrace.load(DEMO).meta["fputrace_tgid"]
    rows = run_json("report", str(DEMO), "--format", "json")["per_task"]
    own = {r["tid"] for r in rows if r["tgid"] == own_tgid}
    assert own, "the recorder's own threads did no FPU work in the demo?"
    assert {r["tid"] for r in rows if r["fputrace_own"] is True} == own
    assert all(r["fputrace_own"] is False for r in rows if r["tgid"] != own_tgid)
    res = run_fputrace("report", str(DEMO), "--top", str(len(rows)))
    assert res.returncode == 0, res.stderr
    first = res.stdout.split("per task: live state")[0]       # the first per-task table
    marked = {int(tid) for tid, tgid, mark in re.findall(r"│ +(\d+) │ +(\d+) │ (\S)", first)
              if mark == OWN_MARK}
    assert marked == own
    assert f"{OWN_MARK} fputrace's own tasks (tgid {own_tgid}," in res.stdout
    lab = Path(__file__).parent / "data" / "lab-6.12-kprobe.fpt"
    assert "fputrace_tgid" not in fputrace.load(lab).meta
    assert not any(r["fputrace_own"] for r in run_json("report", str(lab), "--format", "json")["per_task"])
    assert OWN_MARK not in run_fputrace("report", str(lab)).stdout
