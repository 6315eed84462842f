"""Capture pieces that need no kernel: reordering, TIF decision, options, plan, durations."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fputrace.capture import tif
from fputrace.capture.features import expected_tif_bit, kernel_version
from fputrace.capture.options import CaptureOptions
from fputrace.capture.reorder import Reorderer
from fputrace.commands.record import parse_duration
from fputrace.errors import UsageError
from fputrace.events import EVENT_DTYPE


def _batch(ts):
    b = np.zeros(len(ts), EVENT_DTYPE)
    b["ts_ns"] = ts
    b["a1"] = np.arange(len(ts))
    return b


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.integers(0, 10_000), max_size=40), max_size=12),
       st.integers(0, 3000))
def test_reorder_releases_sorted_and_conserves(chunks, hold):
    """Batches arrive with at most ``hold`` of disorder relative to the clock: output is sorted."""
    r = Reorderer(hold_ns=hold)
    now = 0
    out = []
    for chunk in chunks:
        chunk = [now + t % (hold + 1) - hold if now + t % (hold + 1) >= hold else now for t in chunk]
        r.push(_batch(sorted(chunk, reverse=True)))
        now += 500
        out.append(r.pop_ready(now))
    out.append(r.flush())
    allout = np.concatenate(out)
    assert len(allout) == sum(len(c) for c in chunks)
    assert (np.diff(allout["ts_ns"].astype(np.int64)) >= 0).all()
    assert r.late_events == 0


def test_reorder_keeps_buffer_order_for_equal_timestamps():
    r = Reorderer(hold_ns=0)
    r.push(_batch([5, 5, 5, 3]))
    got = r.flush()
    assert list(got["ts_ns"]) == [3, 5, 5, 5]
    assert list(got["a1"]) == [3, 0, 1, 2]     # the inferred BEGIN, XSAVE, END triple stays in order


def test_reorder_counts_events_later_than_the_hold():
    r = Reorderer(hold_ns=10)
    r.push(_batch([100]))
    assert len(r.pop_ready(200)) == 1
    r.push(_batch([50]))                        # 150 ns late: beyond the guarantee
    assert len(r.pop_ready(300)) == 1
    assert r.late_events == 1


def test_tif_bit_by_kernel_version():
    assert expected_tif_bit(kernel_version("6.18.44-fc")) == 19
    assert expected_tif_bit(kernel_version("6.17.0")) == 14
    assert expected_tif_bit(kernel_version("5.10.0-28-amd64")) == 14
    assert expected_tif_bit(kernel_version("4.19.0")) is None


def test_tif_decision_picks_the_bit_set_at_fpu_points_and_clear_at_sys_enter():
    bit19, other = 1 << 19, 1 << 3              # bit 3 set everywhere (like a tracing flag)
    c = {"and_deact": bit19 | other, "n_deact": 20, "and_act": bit19 | other, "n_act": 9,
         "or_enter": other | (1 << 1), "n_enter": 500}
    d = tif.decide(c, 19)
    assert d["bit"] == 19 and d["verified"] and d["candidates"] == [19]
    d = tif.decide(c, 14)                        # a kernel that moved the bit: trust the live answer
    assert d["bit"] == 19 and d["verified"]
    old = dict(c, and_deact=other)              # before 6.16: flag clear at the switch save
    d = tif.decide(old, 19, (6, 12))
    assert d["bit"] == 19 and d["verified"], "regs_deactivated must not be used before 6.16"
    none = dict(c, n_deact=0, n_act=0)
    d = tif.decide(none, 14)
    assert d["bit"] == 14 and not d["verified"]


@pytest.mark.parametrize("kw", [dict(mode="bogus"), dict(pid=1, comm="x"), dict(pid=0),
                                dict(comm="a" * 16), dict(comm='a"b'), dict(buffer_pages=3)])
def test_bad_options_are_usage_errors(kw):
    with pytest.raises(UsageError):
        CaptureOptions(**kw).validate()


def test_filters_become_cflags_not_text_edits():
    assert CaptureOptions(pid=42).filter_cflags() == ["-DFPT_FILTER_TGID=42"]
    assert CaptureOptions(comm="nginx").filter_cflags() == ['-DFPT_FILTER_COMM="nginx"']


@pytest.mark.parametrize("text,seconds", [("10s", 10), ("500ms", 0.5), ("2m", 120), ("3", 3), ("1.5h", 5400)])
def test_durations(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


def test_hot_programs_fall_back_to_perf_tracepoints_and_say_why(monkeypatch):
    """No BTF, or one offset the raw programs need missing: the classic perf tracepoint programs,
    with the reason (doctor, meta tracepoint_programs)."""
    from types import SimpleNamespace

    from fputrace.capture import hot
    from fputrace.capture.btf import Btf
    from fputrace.capture.features import Probe
    no_btf = SimpleNamespace(btf_types=None, btf=Probe(False, "no /sys/kernel/btf/vmlinux"))
    got = hot.plan_hot(no_btf, ["sched_switch"])
    assert (got.kind, got.reason, got.cflags) == ("perf_tracepoint", "no /sys/kernel/btf/vmlinux", [])
    try:
        types = Btf.load()
    except Exception as err:                     # noqa: BLE001  (no BTF on this host)
        pytest.skip(f"no kernel BTF to take offsets from: {err}")
    real_offset = types.offset
    monkeypatch.setattr(types, "offset", lambda s, m: None if m == "exit_state" else real_offset(s, m))
    feat = SimpleNamespace(btf_types=types, btf=Probe(True), tp_btf=Probe(True))
    got = hot.plan_hot(feat, ["sched_switch"])
    assert got.kind == "perf_tracepoint" and got.reason == "BTF lacks task_exit_state", got
    monkeypatch.setattr(types, "offset", real_offset)
    got = hot.plan_hot(feat, ["sched_switch", "x86_fpu_regs_activated"])
    assert got.kind == "tp_btf" and got.btf_programs == [
        ("fpt_btf__sched_switch", "sched_switch", types.typedef_id("btf_trace_sched_switch")),
        ("fpt_btf__x86_fpu_regs_activated", "x86_fpu_regs_activated",
         types.typedef_id("btf_trace_x86_fpu_regs_activated"))]
    assert f"-DFPT_OFF_TASK_PID={types.offset('task_struct', 'pid')}" in got.cflags
    feat.tp_btf = Probe(False, "EPERM: the kernel refuses tracing programs")
    got = hot.plan_hot(feat, ["sched_switch"])
    assert got.kind == "raw_tracepoint" and got.reason == "tp_btf refused: EPERM: the kernel refuses tracing programs"


def test_btf_offsets_agree_with_bpftool():
    """The BTF parser against bpftool's own dump of the same file (member bit offsets)."""
    import json
    import shutil
    import subprocess

    from fputrace.capture.btf import VMLINUX, Btf
    if not (VMLINUX.exists() and shutil.which("bpftool")):
        pytest.skip("needs /sys/kernel/btf/vmlinux and bpftool")
    dump = json.loads(subprocess.run(["bpftool", "-j", "btf", "dump", "file", str(VMLINUX)],
                                     capture_output=True, text=True, timeout=120).stdout)["types"]
    structs = {t["name"]: t for t in dump if t["kind"] == "STRUCT" and t.get("name") and t.get("members")}
    types = Btf.load()
    checked = 0
    for struct, member in (("task_struct", "pid"), ("task_struct", "tgid"), ("task_struct", "exit_state"),
                           ("task_struct", "__state"), ("fpu", "fpstate"), ("xstate_header", "xfeatures")):
        want = next((m["bits_offset"] for m in structs.get(struct, {}).get("members", []) if m["name"] == member), None)
        if want is not None:
            assert types.offset(struct, member) == want // 8, (struct, member)
            checked += 1
    assert checked >= 4, "bpftool's dump did not have the members compared"
    # a path through nested members: fpstate.regs (a union) .xsave .header .xfeatures
    fps = types.offset("fpstate", "regs")
    if fps is not None:
        regs = next(m for m in structs["fpstate"]["members"] if m["name"] == "regs")["bits_offset"] // 8
        hdr = next(m for m in structs["xregs_state"]["members"] if m["name"] == "header")["bits_offset"] // 8
        assert types.offset("fpstate", "regs.xsave.header.xfeatures") == regs + hdr


def test_every_probed_symbol_is_among_the_symbols_of_interest():
    """Planning looks symbols up in one cheap pass over /proc/kallsyms that keeps only these."""
    from fputrace.capture.features import Features
    from fputrace.capture.plan import PROBE_SYMBOLS
    wanted = {s for syms in PROBE_SYMBOLS.values() for s in syms}
    assert wanted <= Features.SYMBOLS_OF_INTEREST, wanted - Features.SYMBOLS_OF_INTEREST


def test_reorder_holds_back_what_a_buffer_may_still_hold():
    """pop_ready(now, before_ns): a ring that held more than one read takes may still hold events
    from just before the newest one taken: nothing at or after before_ns - slack is released."""
    from fputrace.capture.reorder import BUFFER_ORDER_SLACK_NS
    r = Reorderer(hold_ns=10)
    r.push(_batch([100, 5_000_000, 9_000_000]))
    got = r.pop_ready(now_ns=10**9, before_ns=5_000_000 + BUFFER_ORDER_SLACK_NS)
    assert list(got["ts_ns"]) == [100]
    r.push(_batch([4_000_000]))                 # still in the other ring at the first release
    got = r.pop_ready(now_ns=10**9)
    assert list(got["ts_ns"]) == [4_000_000, 5_000_000, 9_000_000]
    assert r.late_events == 0


def test_default_ring_size_is_capped_per_cpu_and_an_explicit_budget_is_not():
    from types import SimpleNamespace

    from fputrace.capture.options import DEFAULT_BUFFER_PAGES
    from fputrace.capture.ringbuf import DEFAULT_MAX_PAGES_PER_CPU, choose
    ok = SimpleNamespace(ok=True, reason="")
    for cpus in (1, 2, 3, 64):
        feat = SimpleNamespace(possible_cpus=cpus, ringbuf_percpu=ok, ringbuf=ok)
        t = choose(feat, "auto", DEFAULT_BUFFER_PAGES, explicit=False)
        assert t.kind == "ringbuf_percpu" and t.rings == cpus
        assert t.pages == min(DEFAULT_MAX_PAGES_PER_CPU, 1 << ((DEFAULT_BUFFER_PAGES // cpus).bit_length() - 1))
        assert t.pages * cpus <= DEFAULT_BUFFER_PAGES
    feat = SimpleNamespace(possible_cpus=2, ringbuf_percpu=ok, ringbuf=ok)
    assert choose(feat, "auto", 65536, explicit=True).pages == 32768
