"""Snapshot and TaskDetail: what the dashboard draws, filled by the model from the same state."""
from __future__ import annotations

import sys
from pathlib import Path

from fputrace.model import Model
from fputrace.model.views import SNAPSHOT_TASK_COLUMNS
from fputrace.tui.activity import MAX_STRIP, RecentActivity
from tests.scenario_builder import build
from tests.test_scenarios_model import PROBES

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from bench_model_tracegen import TraceGen  # noqa: E402


def test_snapshot_of_the_spec_example():
    m = Model(dict(PROBES, nr_cpus=2), history=RecentActivity())
    m.feed(build("""
        task A 100
        @1000000 0 A KFPU_BEGIN
        0 A XSAVE
        0 A KFPU_END
        0 A KFPU_BEGIN
        0 A KFPU_END
        0 A USER_RETURN
        0 A XRSTOR
    """))
    s = m.snapshot(window_ns=5_000_000_000)
    assert s.events == 8 and s.lost_events == 0 and not s.gap_flagged
    assert [c.cpu for c in s.cpus] == [0, 1]
    cpu0 = s.cpus[0]
    assert (cpu0.owner, cpu0.tid, cpu0.comm) == ("TASK", 100, "A")
    assert [iv.owner for iv in cpu0.strip][-3:] == ["KERNEL", "NONE", "TASK"] or \
        [iv.owner for iv in cpu0.strip][-1] == "TASK"
    assert all(a.end_ns <= b.start_ns for a, b in zip(cpu0.strip, cpu0.strip[1:]))
    assert len(cpu0.xsave_per_s) == 5 and sum(cpu0.xsave_per_s) == 1 and sum(cpu0.xrstor_per_s) == 1
    assert list(s.tasks.columns) == SNAPSHOT_TASK_COLUMNS
    pol = {p.name: (p.xsave, p.xrstor, p.avoidable_xrstor) for p in s.policies}
    assert pol["eager"] == (2, 2, 1)
    assert s.recorded_policy == "deferred" and s.cost_model == "builtin-default"
    d = m.task_detail(100)
    assert (d.tid, d.comm) == (100, "A")
    assert set(zip(d.causes.kind, d.causes.cause)) == {("XSAVE", "kfpu"), ("XRSTOR", "user_return")}
    # where A's user state was (issue 8.5: memory and kernel-fpu were documented, never produced):
    # saved during each kernel FPU section, in memory between them and until the return's
    # restore, then in CPU 0's registers
    assert list(d.timeline.itertuples(index=False, name=None)) == [
        (1_000_000, 1_002_000, "kernel-fpu"), (1_002_000, 1_003_000, "memory"),
        (1_003_000, 1_004_000, "kernel-fpu"), (1_004_000, 1_006_000, "memory"),
        (1_006_000, 1_006_000, "regs:0")]


def test_snapshot_stays_small_on_a_long_stream():
    g = TraceGen(cpus=4, tasks=64, seed=3, exits=False)
    m = Model(g.meta(), history=RecentActivity())
    for b in g.chunks(300_000, 1 << 16):
        m.feed(b)
    s = m.snapshot()
    assert all(len(c.strip) <= MAX_STRIP + 1 for c in s.cpus)
    assert s.events == m.report().totals["events"]
