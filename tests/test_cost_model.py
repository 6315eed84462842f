"""Bytes per event from the xstate layout and xfeatures; cost-model files; the built-in default."""
from __future__ import annotations

import json

import pytest

from fputrace.model import BUILTIN_DEFAULT, Model
from fputrace.model.cost import CostModelError, event_bytes, load_cost_model, xstate_table
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
