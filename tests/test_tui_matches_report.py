"""One source of numbers (issue 8.5): what the dashboard shows in a real terminal (tmux) at the end
of a recording equals what `fputrace report --format json` and `fputrace estimate --format json`
say about the same file: the tasks table (and which tasks are fputrace's own), the policy panel
(each policy, the saved row, the percentage, the self-check), the kernel FPU callers, and the task
view's counts and avoidable restores per cause. Counts are kept below 1,000 so the screen shows
them whole; durations and bytes are compared as the screen formats them."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from fputrace.events import Kind
from fputrace.recording import RecordingWriter
from fputrace.trace import load
from fputrace.tui.widgets import fmt
from fputrace.tui.widgets.tasks import largest_state

from .conftest import fputrace_cmd, run_fputrace
from .scenario_builder import build
from .test_scenarios_model import EAGER
from .test_tui_e2e import Tmux
from .tui_helpers import AMX_META, xstate_scenario

pytestmark = [pytest.mark.tui, pytest.mark.slow, pytest.mark.timeout(300)]

DEMO = Path(__file__).resolve().parent.parent / "fputrace" / "data" / "demo.fpt"
COLS, ROWS = 200, 60
DROP_META = ("closed", "events", "truncated", "truncated_reason", "end_ns")


@pytest.fixture(scope="module", autouse=True)
def tmux_needed():
    if not shutil.which("tmux"):
        pytest.skip("tmux not installed (run ./setup.sh)")


def demo_window(path: Path, own_tgid: int) -> None:
    """The demo's AF_ALG sha256 stretch, from its 10th kernel FPU section to its 150th restore
    after that (with the task table from before), recorded as a file of its own; meta
    ``fputrace_tgid`` names the process whose tasks count as fputrace's."""
    tr = load(DEMO)
    ev = np.concatenate(list(tr.batches()))
    start = int(ev["ts_ns"][np.flatnonzero(ev["kind"] == Kind.KFPU_BEGIN)[10]])
    restores = np.flatnonzero((ev["kind"] == Kind.XRSTOR) & (ev["ts_ns"] >= start))
    end = int(ev["ts_ns"][restores[150]])
    names = np.isin(ev["kind"], [Kind.COMM, Kind.TASK, Kind.FORK]) & (ev["ts_ns"] < start)
    keep = names | ((ev["ts_ns"] >= start) & (ev["ts_ns"] <= end))
    meta = {k: v for k, v in tr.meta.items() if k not in DROP_META}
    with RecordingWriter(path, dict(meta, fputrace_tgid=own_tgid)) as w:
        w.write(ev[keep])


EAGER_ROUND = """
    0 A KFPU_BEGIN caller=0xffffffff81a00010
    0 A XSAVE
    0 A KFPU_END caller=0xffffffff81a000f0
    0 A XRSTOR
    0 A KFPU_BEGIN caller=0xffffffff81a00010
    0 A XSAVE
    0 A KFPU_END caller=0xffffffff81a000f0
    0 A XRSTOR
    0 A USER_RETURN
    1 B SWITCH C blocked
    1 B XSAVE
    1 C XRSTOR
    1 C SWITCH B blocked
    1 C XSAVE
    1 B XRSTOR
    1 B USER_RETURN
"""


def eager_trace(path: Path) -> None:
    """An eager-restore kernel whose returns to user mode are observed: A's restore after its
    first kernel FPU section is saved again by the second (avoidable, cause kfpu_end), and C's
    restore at switch-in is thrown away when C blocks again (avoidable, cause switch_in)."""
    meta = dict(EAGER, nr_cpus=2, host="hand-made",
                modes=dict(EAGER["modes"], user_return={"attach": "kprobe", "exact": True}))
    with RecordingWriter(path, meta) as w:
        w.write(build("task A 100\ntask B 200\ntask C 300\n" + EAGER_ROUND * 7))


def cli_json(*args: str) -> dict:
    res = run_fputrace(*args, "--format", "json")
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


class Screen:
    """`fputrace tui FILE` opened paused at the end, in a real terminal."""

    def __init__(self, path: Path, tag: str) -> None:
        cmd = " ".join(fputrace_cmd())
        self.term = Tmux(f"fputrace-match-{tag}-{os.getpid()}",
                         f"env -u COLUMNS -u LINES {cmd} tui {path} --paused --at 999:00",
                         path.parent / f"{tag}.status", cols=COLS, rows=ROWS)

    def wait(self, cond, what: str) -> str:
        return self.term.wait_for(cond, what, timeout_s=120)

    def at_end(self) -> str:
        def ended(t):
            m = re.search(r"REPLAY ❚❚\s+(\S+)/(\S+)", t)
            return m is not None and m.group(1) == m.group(2) and TASK_ROW.search(t) \
                and POLICY_ROW.search(t)
        self.wait(ended, "the replay paused at the end, its panels drawn")
        time.sleep(0.5)                 # (the panels of one picture are drawn one after another)
        return self.term.screen()


def flat(text: str) -> str:
    """The screen as one line: borders gone, runs of blanks one space (a footnote that wraps in
    its panel reads on across the lines)."""
    return re.sub(r"\s+", " ", text.replace("│", " "))


# PID, ◆ and COMM, XSAVE, XRSTOR, AVOID, LIVE, STATE, KFPU, KFPU t, B/SAVE
TASK_ROW = re.compile(r"│\s+(\d+)\s+(◆?)(\S+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\S+)\s+(\w+)\s+(\d+)\s+\S+"
                      r"\s+(\S+)\s")
POLICY_ROW = re.compile(r"[ *](eager|deferred-no…|deferred)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\S+)\s+(\S+)")
CALLER_ROW = re.compile(r"│([^│\s]+\+0x[0-9a-f]+)\s+(\d+)\s+(\S+)\s+(\S+)\s+(\S+)│")
CAUSE_ROW = re.compile(r"│ (XSAVE|XRSTOR)\s+(\w+)\s+(\d+)\s+(\d+)\s")


def tasks_on(text: str) -> dict[int, tuple]:
    """tid -> (own, comm, xsave, xrstor, avoidable, kfpu sections, state, live state, B/SAVE)."""
    return {int(m.group(1)): (m.group(2) == "◆", m.group(3), *map(int, m.group(4, 5, 6, 9)),
                              m.group(8), m.group(7), m.group(10)) for m in TASK_ROW.finditer(text)}


def task_on_screen(t: dict) -> tuple:
    """What the tasks table must show for a row of report's per_task."""
    return (bool(t["fputrace_own"]), t["comm"], t["xsave"], t["xrstor"], t["avoidable_xrstor"],
            t["kfpu_sections"], t["state"], largest_state(t["components"]),
            fmt.count(t["bytes_per_xsave"]) if t["xsave"] else "-")


def test_the_dashboard_shows_the_numbers_report_and_estimate_give(tmp_path):
    path = tmp_path / "window.fpt"
    demo_window(path, own_tgid=load(DEMO).meta["fputrace_tgid"])     # the recorder of the demo
    report, estimate = cli_json("report", str(path)), cli_json("estimate", str(path))
    assert 0 < report["totals"]["xrstor"] and estimate["policies"]["eager"]["xsave"] < 1000
    screen = Screen(path, "demo")
    try:
        text = screen.at_end()
        # tasks: every task of the report, with its counts, state and fputrace's own marked
        shown = tasks_on(text)
        want = {t["tid"]: task_on_screen(t) for t in report["per_task"]}
        assert shown == want
        assert any(own for own, *_ in shown.values()) and not all(own for own, *_ in shown.values())
        # policies: each row, the saved row, the percentage and the self-check
        rows = {m.group(1): m.groups()[1:] for m in POLICY_ROW.finditer(text)}
        for name, p in estimate["policies"].items():
            row = rows["deferred-no…" if name == "deferred-novalid" else name]
            assert row == (str(p["xsave"]), str(p["xrstor"]), str(p["avoidable_xrstor"]),
                           fmt.count(p["bytes"]) + "B", fmt.count(p["cycles"])), name
        d = estimate["difference"]
        assert re.search(rf"saved\s+{d['xsave']}\s+{d['xrstor']}\s+{re.escape(fmt.count(d['bytes']))}B"
                         rf"\s+{re.escape(fmt.count(d['cycles']))}\s", text)
        line = flat(text)
        assert f"deferred: {d['xrstor_fewer_pct']:.0f}% fewer XRSTOR" in line
        assert f"self-check {100 * estimate['self_check']:.1f}%" in line
        # kernel FPU callers, by the caller of kernel_fpu_begin
        callers = {m.group(1): m.groups()[1:] for m in CALLER_ROW.finditer(text)}
        assert callers == {c["caller"]: (str(c["sections"]), fmt.duration_ns(c["total_ns"]),
                                         fmt.duration_ns(c["max_ns"]), fmt.duration_ns(c["p99_ns"]))
                           for c in report["kfpu_callers"]}
        # h hides fputrace's own tasks, and says so; h again shows them
        own = {tid for tid, (is_own, *_) in shown.items() if is_own}
        screen.term.keys("h")
        hidden = screen.wait(lambda t: "hidden (h)" in t, "own tasks hidden")
        assert set(tasks_on(hidden)) == set(want) - own
        assert f"◆ {len(own)} of fputrace hidden (h)" in hidden
        screen.term.keys("h")
        screen.wait(lambda t: set(tasks_on(t)) == set(want), "own tasks back")
        # the task view of the busiest task: its timeline has the memory and kernel-fpu states
        screen.term.keys("Enter")
        view = screen.wait(lambda t: "Saves and restores by cause" in t and CAUSE_ROW.search(t),
                           "the task view")
        tid = int(re.search(r"tid (\d+)", view).group(1))
        task = next(t for t in report["per_task"] if t["tid"] == tid)
        assert task["kfpu_sections"] > 0
        causes = {(k.lower(), c): (int(n), int(a)) for k, c, n, a in CAUSE_ROW.findall(view)}
        assert causes == {(k, c): (task[f"{k}_{c}"], 0)
                          for k in ("xsave", "xrstor") for c in ("unknown", "switch", "kfpu",
                                                                "sync", "fork", "signal", "kvm",
                                                                "user_return", "switch_in",
                                                                "kfpu_end", "init")
                          if task.get(f"{k}_{c}")}
        assert "▓ kernel-fpu" in view and "░ memory" in view
    finally:
        screen.term.kill()


def test_the_task_view_shows_avoidable_restores_by_cause_as_the_report_counts_them(tmp_path):
    """Under an eager kernel restores are avoidable; the task views of all tasks add up, cause by
    cause, to the report's per-cause counts and avoidable restores, and each view's avoidable
    restores to its task's row."""
    path = tmp_path / "eager.fpt"
    eager_trace(path)
    report = cli_json("report", str(path))
    assert report["totals"]["avoidable_xrstor"] > 0
    per_task = {t["tid"]: t for t in report["per_task"]}
    assert all(t["xrstor"] < 1000 and t["xsave"] < 1000 for t in per_task.values())
    screen = Screen(path, "eager")
    try:
        rows = tasks_on(screen.at_end())
        assert set(rows) == set(per_task)
        seen: dict[tuple[str, str], list[int]] = {}
        for i in range(len(rows)):
            screen.term.keys("Enter")
            view = screen.wait(lambda t: "Saves and restores by cause" in t and "tid " in t,
                               f"the task view of row {i}")
            time.sleep(0.5)                       # the rows arrive with the first detail picture
            view = screen.term.screen()
            tid = int(re.search(r"tid (\d+)", view).group(1))
            causes = CAUSE_ROW.findall(view)
            avoidable = sum(int(a) for k, _, _, a in causes if k == "XRSTOR")
            assert avoidable == per_task[tid]["avoidable_xrstor"], tid
            for kind, cause, n, a in causes:
                total = seen.setdefault((kind, cause), [0, 0])
                total[0] += int(n)
                total[1] += int(a)
            screen.term.keys("Escape")
            screen.wait(lambda t: "PID" in t, "back on the dashboard")
            screen.term.keys("Down")
        assert seen == {(c["kind"], c["cause"]): [c["count"], c["avoidable"]]
                        for c in report["per_cause"] if c["count"]}
        assert any(a for _, a in seen.values())
    finally:
        screen.term.kill()


def test_the_components_sort_and_the_task_view_show_the_state_report_says_was_moved(tmp_path):
    """Issue 10 on screen: `s` to LIVE lists the tasks in `report --sort components` order (AMX,
    then AVX-512, AVX, SSE; then bytes), each with its largest live state and bytes per save; the
    task view of the first says what the report says about it: the components live at its saves,
    bytes per save, and its share of all bytes and cycles moved."""
    path = tmp_path / "xstate.fpt"
    with RecordingWriter(path, AMX_META) as w:
        w.write(build(xstate_scenario()))
    report = cli_json("report", str(path), "--sort", "components")
    order = [t["tid"] for t in report["per_task"]]
    assert order == [150, 100, 200, 300, 400]
    screen = Screen(path, "xstate")
    try:
        screen.at_end()
        for _ in range(3):                       # xrstor -> xsave -> avoidable -> components
            screen.term.keys("s")
        text = screen.wait(lambda t: "sort components" in t, "sorted by components")
        rows = tasks_on(text)
        assert list(rows) == order
        assert rows == {t["tid"]: task_on_screen(t) for t in report["per_task"]}
        first = report["per_task"][0]
        for _ in order:                          # the cursor kept its task (S, now the last row)
            screen.term.keys("Up")
        screen.term.keys("Enter")
        view = screen.wait(lambda t: f"tid {first['tid']}" in t and "B per save" in t,
                           "the task view of the first task")
        line = next(ln for ln in view.splitlines() if "state moved" in ln)
        assert re.search(rf"state moved {re.escape(first['components'])}\s+"
                         rf"{round(first['bytes_per_xsave']):,} B per save\s+"
                         rf"{100 * first['bytes_share']:.1f}% of all bytes\s+"
                         rf"{100 * first['cycles_share']:.1f}% of all cycles", line), line
    finally:
        screen.term.kill()
