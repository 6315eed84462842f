"""Bytes per event from the xstate layout and xfeatures; cost-model files; the built-in default."""
from __future__ import annotations

import json

import pytest

from fputrace.model import BUILTIN_DEFAULT, Model
from fputrace.model.cost import (CostModelError, class_rank, components_label, event_bytes,
                                 load_cost_model, xstate_class,
                                 xstate_table)
from tests.scenario_builder import build

AVX512_META = {"xstate": {"xcr0": "0x2e7", "compacted": True, "total_bytes": 2696, "features": [
    {"bit": 0, "name": "x87", "size_bytes": 160, "offset": 0},
    {"bit": 1, "name": "sse", "size_bytes": 256, "offset": 160},
    {"bit": 2, "name": "avx", "size_bytes": 256, "offset": 576},
    {"bit": 5, "name": "opmask", "size_bytes": 64, "offset": 832},
    {"bit": 6, "name": "zmm_hi256", "size_bytes": 512, "offset": 896},
    {"bit": 7, "name": "hi16_zmm", "size_bytes": 1024, "offset": 1408},
    {"bit": 9, "name": "pkru", "size_bytes": 8, "offset": 2432}]}}


def test_bytes_skip_init_components():
    sizes, mask, note = xstate_table(AVX512_META)
    assert mask == 0x2e7 and "from the recording" in note
    assert event_bytes(0x3, sizes, mask) == 576                      # x87+SSE: legacy + header
    assert event_bytes(0x7, sizes, mask) == 576 + 256                # + AVX upper halves
    assert event_bytes(0xe7, sizes, mask) == 576 + 256 + 64 + 512 + 1024
    assert event_bytes(0, sizes, mask) == 576 + 256 + 64 + 512 + 1024 + 8   # unknown: all enabled


def test_model_bytes_follow_event_xfeatures_then_the_tasks_last_known():
    """XSAVE with xfeatures AVX (832 B), then XRSTOR with xfeatures 0 (unknown): the task's last
    known value (AVX) is used, not the full AVX-512 set."""
    m = Model(dict(AVX512_META, recorded_policy="deferred"))
    m.feed(build("""
        task A 100
        0 A USER_RETURN
        0 A KFPU_BEGIN
        0 A XSAVE xf=0x7
        0 A KFPU_END
        0 A USER_RETURN
        0 A XRSTOR xf=0
    """))
    t = m.report().totals
    assert (t["xsave_bytes"], t["xrstor_bytes"]) == (832, 832)
    est = m.estimate()
    assert est.policies.loc["deferred", "bytes"] == 2 * 832


def test_missing_layout_assumes_the_default_and_says_so():
    m = Model({})
    assert "assumed XCR0 0x207" in m.xstate_note


def test_cost_model_files(tmp_path):
    assert BUILTIN_DEFAULT.name == "builtin-default"
    assert (BUILTIN_DEFAULT.xsave_cycles, BUILTIN_DEFAULT.xrstor_cycles) == (135.0, 300.0)
    good = tmp_path / "cm.json"
    good.write_text(json.dumps({"xsave_cycles": 120, "xrstor_cycles": 310, "family": "XSAVES/XRSTORS"}))
    cm = load_cost_model(good)
    assert cm.name == str(good) and cm.cycles(2, 1) == 550
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"xsave": 1}))
    with pytest.raises(CostModelError, match="not a fputrace cost-model file"):
        load_cost_model(bad)
    with pytest.raises(CostModelError, match="no such cost-model file"):
        load_cost_model(tmp_path / "nope.json")


def test_estimate_names_its_cost_model(tmp_path):
    m = Model({"recorded_policy": "deferred"}, cost_model=BUILTIN_DEFAULT)
    m.feed(build("task A 1\n0 A USER_RETURN\n0 A XRSTOR"))
    est = m.estimate()
    assert est.cost_model_name == "builtin-default" and est.to_dict()["cost_model"] == "builtin-default"


def _per_set_file(tmp_path, sets=("sse", "avx", "avx512", "amx"), left_out=()):
    table = {"sse": ("0x203", 584, 91, 148), "avx": ("0x207", 840, 100, 150),
             "avx512": ("0x2e7", 2440, 150, 200), "amx": ("0x602e7", 10696, 400, 500)}
    entries = [{"set": s, "xfeatures": table[s][0], "bytes": table[s][1],
                "xsave_cycles": table[s][2] - 5, "xrstor_cycles": table[s][3] - 5,
                "xsave_cycles_median": table[s][2], "xrstor_cycles_median": table[s][3],
                "instruction": "XSAVEC / XRSTOR (compacted) for the kernel's XSAVES/XRSTORS"}
               for s in reversed(sets)]                   # order in the file does not matter
    path = tmp_path / "per-set.json"
    path.write_text(json.dumps({"xsave_cycles": 91, "xrstor_cycles": 148, "per_xfeatures": entries,
                                "left_out": list(left_out), "details": {"cpu_model": "Xeon X"}}))
    return load_cost_model(path)


def test_each_class_is_charged_its_nearest_calibrated_superset(tmp_path):
    cm = _per_set_file(tmp_path)
    assert [e.set for e in cm.per_xfeatures] == ["sse", "avx", "avx512", "amx"]
    assert xstate_class(0x3) == "sse" and xstate_class(0x207) == "avx"
    assert xstate_class(0x227) == "avx512" and xstate_class(0x40003) == "amx"
    assert components_label(0x602e7) == "SSE+AVX+AVX-512+AMX" and components_label(0x803) == "SSE"
    assert components_label(0x800) == "SSE" and components_label(0) == "-"
    assert [class_rank(x) for x in (0x3, 0x7, 0x27, 0x40000)] == [0, 1, 2, 3]
    assert cm.class_cycles("sse") == (91, 148) and cm.class_cycles("amx") == (400, 500)
    # an event with only the opmask live is charged the whole AVX-512 set
    assert cm.set_for(0x23)[0].set == "avx512" and cm.set_for(0x23)[1] == "calibrated"
    assert cm.set_for(0x1)[0].set == "sse"                  # x87 alone
    # AVX-512 not calibrated: its events take the next larger set; AMX not: the largest, below
    cm = _per_set_file(tmp_path, ("sse", "avx", "amx"))
    assert cm.set_for_class("avx512")[0].set == "amx" and cm.set_for_class("avx512")[1] == "superset"
    cm = _per_set_file(tmp_path, ("sse", "avx"), left_out=[{"set": "amx", "reason": "CPU has no AMX"}])
    e, how = cm.set_for_class("amx")
    assert (e.set, how) == ("avx", "below")
    notes = " ".join(cm.notes({"cpu_model": "Xeon X"}))
    assert "sse->sse 0x203 (calibrated), avx->avx 0x207 (calibrated), avx512->avx 0x207 (below)" in notes
    assert "no calibrated set covers avx512, amx state (amx: CPU has no AMX)" in notes
    assert "lower bound" in notes and "measured on" not in notes
    assert "measured on Xeon X, recording made on EPYC" in " ".join(cm.notes({"cpu_model": "EPYC"}))
    # counts per class (sse, avx, avx512, amx): amx and avx512 charged the avx set here
    assert cm.charge([1, 0, 2, 3], [0, 1, 0, 1]) == 91 + 5 * 100 + 150 + 150
    assert list(cm.charge([[1, 0, 0, 0], [0, 0, 0, 1]], [[0] * 4, [0] * 4])) == [91, 100]
    charges = cm.class_charges()
    assert charges["amx"] == {"set": "avx", "xfeatures": "0x207", "match": "below",
                              "xsave_cycles": 100.0, "xrstor_cycles": 150.0}
    d = cm.to_dict()
    assert d["per_xfeatures"][0]["xfeatures"] == "0x203" and d["left_out"][0]["set"] == "amx"


def test_the_builtin_default_says_it_is_not_this_cpus(tmp_path):
    notes = BUILTIN_DEFAULT.notes({"cpu_model": "anything"})
    assert len(notes) == 1 and notes[0].startswith("cost model builtin-default is not this CPU's")
    assert "fputrace calibrate" in notes[0] and "one figure for every component set" in notes[0]
    assert BUILTIN_DEFAULT.set_for(0x602e7) == (None, "flat")
    assert BUILTIN_DEFAULT.class_cycles("amx") == (135.0, 300.0)
    m = Model({"recorded_policy": "deferred"}, cost_model=BUILTIN_DEFAULT)
    m.feed(build("task A 1\n0 A USER_RETURN\n0 A XRSTOR"))
    est = m.estimate()
    assert any(n.startswith("cost model builtin-default is not this CPU's") for n in est.notes)
    assert not any("all enabled components dirty" in n for n in est.notes)
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"xsave_cycles": 120, "xrstor_cycles": 310}))
    assert "one figure for every component set" in load_cost_model(old).notes()[0]
