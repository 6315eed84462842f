"""What the model's outputs say beyond the counts of test_scenarios_model: the task detail
(avoidable restores per cause, where the task's state was), the policy difference and the
self-check as the dashboard draws them, the kernel FPU callers table, fputrace's own tasks,
recordings opened through fputrace.load (issue 8.5), and the xstate classes (issue 10)."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import fputrace
from fputrace.model import Model
from fputrace.tui.activity import RecentActivity
from fputrace.recording import RecordingWriter
from fputrace.tui.widgets.policy import render_footnote, render_policies
from tests.scenario_builder import build
from tests.test_cost_model import AVX512_META
from tests.test_scenarios_model import EAGER, PROBES

SPEC_EXAMPLE = """
    task A 100
    @1000000 0 A KFPU_BEGIN caller=0xffffffff81a00010
    0 A XSAVE
    0 A KFPU_END caller=0xffffffff81a000f0
    0 A KFPU_BEGIN caller=0xffffffff81a00010
    0 A KFPU_END caller=0xffffffff81a000f0
    0 A USER_RETURN
    0 A XRSTOR
"""


def fed(text: str, meta: dict = PROBES, **kw) -> Model:
    kw.setdefault("history", RecentActivity())       # the dashboard's sink (timelines)
    m = Model(meta, **kw)
    m.feed(build(text))
    return m


def test_task_detail_counts_avoidable_restores_by_cause():
    """An eager kernel whose returns to user mode are observed: the restore at the first
    kernel_fpu_end is saved again by the second kernel_fpu_begin before any user instruction:
    one avoidable XRSTOR, of cause kfpu_end. The task view showed 0 (views.py set it to 0)."""
    meta = dict(EAGER, modes=dict(EAGER["modes"], user_return={"attach": "kprobe", "exact": True}))
    m = fed("""
        task A 100
        0 A KFPU_BEGIN
        0 A XSAVE
        0 A KFPU_END
        0 A XRSTOR
        0 A KFPU_BEGIN
        0 A XSAVE
        0 A KFPU_END
        0 A XRSTOR
        0 A USER_RETURN
    """, meta)
    d = m.task_detail(100)
    by = {(r.kind, r.cause): (r.count, r.avoidable) for r in d.causes.itertuples()}
    assert by == {("XSAVE", "kfpu"): (2, 0), ("XRSTOR", "kfpu_end"): (2, 1)}
    rep = m.report()
    assert rep.to_dict()["per_task"][0]["avoidable_xrstor"] == int(d.causes.avoidable.sum()) == 1
    assert {(r["kind"], r["cause"]): r["avoidable"] for r in rep.to_dict()["per_cause"]} == {
        ("XSAVE", "kfpu"): 0, ("XRSTOR", "kfpu_end"): 1}


def test_an_exiting_task_preempted_on_its_way_out_stays_one_task():
    """After sched_process_exit a task can be preempted (its FPU state still there: saved) and run
    again; its last switch is the one with prev_state EXIT_ZOMBIE. It stays one task (the first
    switch-out after EXIT made a new, never-ending generation of it) and retires."""
    meta = dict(PROBES, modes=dict(PROBES["modes"],
                                   switch={"attach": "tracepoint:sched:sched_switch", "exact": True}))
    m = fed("""
        task A 100
        task B 200
        0 A USER_RETURN
        0 A XRSTOR
        0 A EXIT
        0 A SWITCH B preempted
        0 A XSAVE
        0 B USER_RETURN
        0 B XRSTOR
        0 B SWITCH A preempted
        0 B XSAVE
        0 A SWITCH B zombie
        0 B USER_RETURN
        0 B XRSTOR
    """, meta)
    d = m.task_detail(100)
    assert {(r.kind, r.cause): r.count for r in d.causes.itertuples()} == {
        ("XSAVE", "switch"): 1, ("XRSTOR", "user_return"): 1}
    rows = m.view().task_counts()
    assert sorted(rows["generation"][rows["tid"] == 100].tolist()) == [0]
    assert m.stats()["retired_tasks"] == 1 and m.estimate().self_check == 1.0


def test_task_timeline_has_memory_and_kernel_fpu_states():
    """A restores on CPU 1, blocks (saved), B runs, A comes back on CPU 0 and uses the kernel FPU:
    regs:1, then memory while B holds the registers, regs:0 after its restore, kernel-fpu during
    its section, memory after it (still alive, nothing restored)."""
    m = fed("""
        task A 100
        task B 200
        @1000 1 A USER_RETURN
        @2000 1 A XRSTOR
        @3000 1 A SWITCH B blocked
        @3100 1 A XSAVE
        @4000 1 B USER_RETURN
        @4100 1 B XRSTOR
        @5000 0 idle SWITCH A
        @5100 0 A USER_RETURN
        @5200 0 A XRSTOR
        @6000 0 A KFPU_BEGIN
        @6100 0 A XSAVE
        @7000 0 A KFPU_END
        @9000 1 B USER_RETURN
    """, dict(PROBES, nr_cpus=2))
    tl = list(m.task_detail(100).timeline.itertuples(index=False, name=None))
    assert tl == [(2000, 4100, "regs:1"), (4100, 5200, "memory"), (5200, 6000, "regs:0"),
                  (6000, 7000, "kernel-fpu"), (7000, 9000, "memory")]


def test_policy_difference_and_self_check_come_from_the_model():
    """The policy panel draws the model's eager-minus-deferred numbers; a trace whose recorded
    policy is unknown has no self-check (None, shown as 'unknown', never nan%)."""
    m = fed(SPEC_EXAMPLE)
    s = m.snapshot()
    assert (s.difference.xsave, s.difference.xrstor) == (1, 1)      # (2, 2) - (1, 1)
    assert s.xrstor_fewer_pct == 50.0 and s.self_check == 1.0
    est = m.estimate().to_dict()
    assert est["difference"]["xrstor"] == 1 and est["difference"]["xrstor_fewer_pct"] == 50.0
    text = render_footnote(s).plain
    assert "50% fewer XRSTOR" in text and "self-check 100.0%" in text
    assert "saved" in "".join(str(c) for c in render_policies(s).columns[0]._cells)
    unknown = fed(SPEC_EXAMPLE, {"modes": PROBES["modes"]}).snapshot()
    assert unknown.recorded_policy == "unknown" and unknown.self_check is None
    text = render_footnote(unknown).plain
    assert "self-check unknown" in text and "nan" not in text


def test_kernel_fpu_callers_are_the_begin_callers():
    """Sections are keyed by the caller of kernel_fpu_begin; kernel_fpu_end's caller (another
    address in the same function) is no row (it was, with 0 sections)."""
    rep = fed(SPEC_EXAMPLE).report()
    rows = rep.to_dict()["kfpu_callers"]
    assert [(r["address"], r["sections"]) for r in rows] == [("0xffffffff81a00010", 2)]


def test_fputrace_own_tasks_are_marked():
    meta = dict(PROBES, fputrace_tgid=100)
    text = """
        task A 100
        task T 101 100
        task B 200
        0 A USER_RETURN
        0 A XRSTOR
        0 A SWITCH T preempted
        0 A XSAVE
        0 T USER_RETURN
        0 T XRSTOR
        0 T SWITCH B preempted
        0 T XSAVE
        0 B USER_RETURN
        0 B XRSTOR
    """
    own = {r["tid"]: r["fputrace_own"] for r in fed(text, meta).report().to_dict()["per_task"]}
    assert own == {100: True, 101: True, 200: False}
    snap = fed(text, meta).snapshot()
    assert dict(zip(snap.tasks.tid, snap.tasks.fputrace_own)) == own
    assert not any(r["fputrace_own"] for r in fed(text).report().to_dict()["per_task"])


def _late_recording(path, text: str, cut: int) -> None:
    """A recording whose second part was written (and flushed) before its first part, as a
    producer that delivers late does: meta late_events, batches out of time order."""
    ev = build(text)
    with RecordingWriter(path, dict(PROBES), background_flush=False) as w:
        w.write(ev[cut:])
        w.flush()
        w.write(ev[:cut])


def test_report_and_estimate_open_recordings_through_fputrace_load(tmp_path):
    """`fputrace report`/`estimate` re-sort a recording with late events as fputrace.load does;
    they read the raw batch order before (one way to open a recording)."""
    path = tmp_path / "late.fpt"
    _late_recording(path, SPEC_EXAMPLE, 4)
    assert fputrace.load(path).meta.get("late_events") == 4
    want = fed(SPEC_EXAMPLE)
    for cmd, expect in (("report", want.report().to_dict()), ("estimate", want.estimate().to_dict())):
        res = subprocess.run([sys.executable, "-m", "fputrace", cmd, str(path), "--format", "json"],
                             capture_output=True, text=True)
        assert res.returncode == 0, res.stderr
        got = json.loads(res.stdout)
        assert got["totals" if cmd == "report" else "policies"] == \
            expect["totals" if cmd == "report" else "policies"]


AVX = """
    task V 300
    task S 400
    0 V USER_RETURN
    0 V KFPU_BEGIN
    0 V XSAVE xf=0xe7
    0 V KFPU_END
    0 V USER_RETURN
    0 V XRSTOR xf=0xe7
    0 V SWITCH S preempted
    0 V XSAVE xf=0x7
    0 S USER_RETURN
    0 S XRSTOR xf=0x3
"""


def test_xstate_classes_per_task_and_policy():
    """V saves AVX-512 state (0xe7: 576+256+64+512+1024 = 2432 B) in a kernel FPU section and
    restores it, then saves AVX state (832 B) at its switch-out; S restores SSE state (576 B).
    The engine counts each class measured and in every replay (the accessors issue 10 builds on)."""
    m = fed(AVX, dict(AVX512_META, **PROBES))
    rep = m.report().to_dict()
    v = next(r for r in rep["per_task"] if r["tid"] == 300)
    assert (v["xfeatures_seen"], v["components"], v["xstate_class"]) == (
        "0xe7", "SSE+AVX+AVX-512", "avx512")
    assert v["bytes_per_xsave"] == (2432 + 832) / 2
    per_class = {r["class"]: (r["xsave"], r["xrstor"], r["bytes"]) for r in rep["per_class"]}
    assert per_class == {"sse": (0, 1, 576), "avx": (1, 0, 832), "avx512": (1, 1, 2 * 2432),
                         "amx": (0, 0, 0)}
    assert rep["totals"]["xfeatures_seen"] == "0xe7"
    view = m.view()
    totals = view.class_totals()
    measured = totals[totals.side == "measured"].set_index("class")
    deferred = totals[totals.side == "deferred"].set_index("class")
    assert measured.loc["avx512", "xsave_bytes"] == measured.loc["avx512", "xrstor_bytes"] == 2432
    # the deferred replay reproduces the measured traffic class by class
    cols = ["xsave", "xrstor", "xsave_bytes", "xrstor_bytes"]
    assert (measured[cols] == deferred[cols]).all().all()
    xs = view.task_xstate()
    mine = xs[xs.tid == 300].iloc[0]
    assert (mine.xsave_bytes_avx512, mine.xsave_bytes_avx, mine.xrstor_bytes_avx512) == (2432, 832, 2432)


def test_avoidable_bytes_per_policy():
    """The SPEC 5.3 example with AVX-512 state live: eager's avoidable restore moves 2432 B."""
    text = SPEC_EXAMPLE.replace("0 A XSAVE", "0 A XSAVE xf=0xe7")
    m = fed(text, dict(AVX512_META, **PROBES))
    est = m.estimate().to_dict()
    assert (est["policies"]["eager"]["avoidable_xrstor"],
            est["policies"]["eager"]["avoidable_bytes"]) == (1, 2432)
    assert est["policies"]["deferred"]["avoidable_bytes"] == 0
    per_task = m.view().policy_task_columns()
    eager = per_task.take(np.asarray(per_task["policy"], object) == "eager")
    assert (eager["tid"].tolist(), eager["avoidable_bytes"].tolist()) == ([100], [2432])


@pytest.mark.parametrize("top", [None, 3])
def test_memory_follows_tasks_alive_not_tasks_seen(top):
    """A fork storm: thousands of short-lived tasks. The model's live table stays at the tasks
    alive, with top=N it keeps N rows of exited tasks; totals stay exact either way."""
    sys.path.insert(0, "benchmarks")
    from bench_model_tracegen import TraceGen
    g = TraceGen(cpus=4, tasks=64, seed=5, exits=True, churn=True)
    chunks = list(g.chunks(400_000, 1 << 14))
    full, bounded = Model(g.meta()), Model(g.meta(), top=top)
    peak = 0
    for b in chunks:
        full.feed(b)
        bounded.feed(b)
        peak = max(peak, bounded.stats()["live_tasks"])
    seen = full.report().totals["tasks"]
    assert seen > 5000 and peak < 64 + 16 + 200          # at most the alive ones (+ a chunk's)
    st = bounded.stats()
    assert st["retired_tasks"] > 5000
    if top is not None:
        assert st["kept_rows"] <= top + 4096             # compacted to top N as it goes
    a, b = full.report(), bounded.report()
    assert a.totals == b.totals
    want = a.to_dict()["per_task"][:top] if top else a.to_dict()["per_task"]
    assert b.to_dict()["per_task"] == want
    assert full.estimate().to_dict() == bounded.estimate().to_dict()


@pytest.mark.parametrize("args", [["report"], ["report", "--format", "json"],
                                  ["report", "--format", "csv", "--sort", "bytes"], ["estimate"]])
def test_report_and_estimate_need_no_pandas(args):
    """pandas costs ~0.4 s to import; the CLI's report and estimate (text, JSON, CSV) build their
    tables without it, so a fresh `fputrace report` answers within a second (issue 13)."""
    demo = fputrace.__file__.replace("__init__.py", "data/demo.fpt")
    code = ("import sys, io, contextlib\n"
            f"sys.argv = ['fputrace', *{args!r}, {demo!r}]\n"
            "from fputrace.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
            "    rc = main()\n"
            "assert rc in (0, None) and len(out.getvalue()) > 100, out.getvalue()\n"
            "print('pandas' in sys.modules, 'numba' in sys.modules)\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["False", "False"]


def test_a_task_table_names_tasks_before_any_event():
    """Model(tasks=...) (a recording's task table: tid, tgid, comm, kthread) names tasks and marks
    kernel threads before their first event; events then count as usual."""
    import pandas as pd
    table = pd.DataFrame({"tid": [100, 7], "tgid": [100, 7], "comm": ["sixteen-chars-ab", "kw"],
                          "kthread": [False, True]})
    m = Model(PROBES, tasks=table)
    m.feed(build("""
        0 100 USER_RETURN
        0 100 XRSTOR
        0 100 SWITCH 7 preempted
        0 100 XSAVE
        0 7 KFPU_BEGIN
        0 7 KFPU_END
    """))
    rows = {r["tid"]: r for r in m.report().to_dict()["per_task"]}
    assert (rows[100]["comm"], rows[100]["kthread"], rows[100]["xsave"]) == ("sixteen-chars-ab", False, 1)
    assert (rows[7]["comm"], rows[7]["kthread"], rows[7]["kfpu_sections"], rows[7]["xsave"]) == (
        "kw", True, 1, 0)
