"""The dashboard's renderers on hand-made model pictures: headless, no model, no kernel."""
from __future__ import annotations

import re

import pandas as pd
import pytest

from fputrace.model.snapshot import KERNEL, NONE, TASK, UNKNOWN, OwnerInterval
from fputrace.tui.app import parse_time_ns
from fputrace.tui.messages import SourceStatus
from fputrace.tui.widgets import fmt
from fputrace.tui.widgets.cpus import strip_cells
from fputrace.tui.widgets.header import render_header
from fputrace.tui.widgets.kfpu import render_callers, render_histogram
from fputrace.tui.widgets.policy import render_footnote, render_policies
from fputrace.tui.widgets.tasks import filter_and_sort

from .tui_helpers import META, S, hand_made_snapshot

pytestmark = pytest.mark.tui


def test_strip_cells_follow_the_intervals_and_never_invent_an_owner():
    strip = (OwnerInterval(0, 4 * S, TASK, 7), OwnerInterval(4 * S, 5 * S, KERNEL),
             OwnerInterval(5 * S, 6 * S, NONE))        # 6..10 s: no interval at all
    cells = strip_cells(strip, end_ns=10 * S, window_ns=10 * S, width=10)
    assert cells[:4] == [(TASK, 7)] * 4
    assert cells[4] == (KERNEL, 0)
    assert cells[5] == (NONE, 0)
    assert cells[6:] == [(UNKNOWN, 0)] * 4


def test_strip_cell_shows_the_owner_covering_most_of_it():
    # one cell of 1 s: task 1 for 0.8 s, task 2 for 0.2 s
    strip = (OwnerInterval(0, 8 * S // 10, TASK, 1), OwnerInterval(8 * S // 10, S, TASK, 2))
    assert strip_cells(strip, S, S, 1) == [(TASK, 1)]


def test_strip_of_many_intervals_is_sampled_not_looped():
    n = 200_000
    strip = tuple(OwnerInterval(i * 50_000, (i + 1) * 50_000, TASK, i % 3) for i in range(n))
    cells = strip_cells(strip, n * 50_000, n * 50_000, 120)
    assert len(cells) == 120 and all(owner == TASK for owner, _ in cells)


def test_header_makes_lost_events_impossible_to_miss():
    status = SourceStatus(live=True, paused=False, events_per_s=512_000.0)
    quiet = render_header(META, hand_made_snapshot(lost=0), status)
    loud = render_header(META, hand_made_snapshot(lost=4242), status)
    assert "lost 0" in quiet.plain and "LOST" not in quiet.plain
    assert "LOST 4,242" in loud.plain and "numbers cross a gap" in loud.plain
    badge = [span for span in loud.spans if loud.plain[span.start:span.end].strip().startswith("LOST")]
    assert badge and "red" in str(badge[0].style) and "bold" in str(badge[0].style)


def test_header_names_host_kernel_modes_xstate_rate_and_recording():
    status = SourceStatus(live=True, paused=True, events_per_s=512_000.0,
                          recording_path="/tmp/x.fpt", recorded_events=1500)
    text = render_header(META, hand_made_snapshot(), status).plain
    for needle in ("testhost", "6.18.0-test", "x87|SSE|AVX|PKRU", "832 B", "512k ev/s", "PAUSED",
                   "REC", "/tmp/x.fpt", "exact: switch_save,user_return_restore", "inferred: kfpu"):
        assert needle in text, needle


def test_header_of_a_replay_shows_position_and_speed():
    status = SourceStatus(live=False, paused=True, events_per_s=10.0, position_ns=75 * S,
                          duration_ns=90 * S, speed=2.0)
    text = render_header(META, hand_made_snapshot(), status).plain
    assert "REPLAY ❚❚" in text and "1:15.0/1:30.0 ×2" in text and "REC" not in text


def test_tasks_sort_and_filter():
    tasks = hand_made_snapshot().tasks
    assert filter_and_sort(tasks, "xrstor", "")["tid"].tolist() == [101, 202, 7]
    assert filter_and_sort(tasks, "kfpu_sections", "")["tid"].tolist() == [7, 101, 202]
    assert filter_and_sort(tasks, "comm", "")["comm"].tolist() == ["cc1", "firefox", "kworker/0:1"]
    assert filter_and_sort(tasks, "xrstor", "FIRE")["tid"].tolist() == [101]
    assert filter_and_sort(tasks, "xrstor", "202")["tid"].tolist() == [202]
    assert filter_and_sort(tasks, "xrstor", "nomatch").empty


def test_policy_panel_shows_both_policies_savings_and_self_check():
    from rich.console import Console
    con = Console(width=70, record=True)
    snap = hand_made_snapshot()
    con.print(render_policies(snap))
    con.print(render_footnote(snap))
    out = con.export_text()
    assert "eager" in out and "*deferred" in out            # * marks the recorded policy
    assert "2.6k" in out and "1.8k" in out and "850" in out  # XRSTOR eager, deferred, saved
    assert "33% fewer XRSTOR" in out and "self-check 99.8%" in out and "builtin-epyc" in out


def test_kfpu_callers_and_histogram():
    from rich.console import Console
    snap = hand_made_snapshot()
    con = Console(width=80, record=True)
    con.print(render_callers(snap.kfpu_callers, 80))
    con.print(render_histogram(snap.kfpu_hist, 40))
    out = con.export_text()
    assert out.index("sha256_avx2_update") < out.index("xor_avx_5")   # by total time
    assert "P99" in out and "7.0µs" in out
    narrow = Console(width=36, record=True)
    narrow.print(render_callers(snap.kfpu_callers, 36))
    assert "P99" not in narrow.export_text()                  # narrow: fewer columns, same rows
    assert "≥1.0µs" in out.replace(" ", "") and "500" in out
    empty = render_histogram(pd.DataFrame({"lo_ns": [], "count": []}), 40)
    assert "no kernel FPU sections" in empty.plain


@pytest.mark.parametrize("text,ns", [("12.5", 12_500_000_000), ("1:02", 62 * S), ("250ms", 250_000_000),
                                     ("3s", 3 * S), ("0", 0)])
def test_parse_time(text, ns):
    assert parse_time_ns(text) == ns


@pytest.mark.parametrize("bad", ["", "soon", "1:xx"])
def test_parse_time_rejects(bad):
    with pytest.raises(ValueError):
        parse_time_ns(bad)


def test_formatting():
    assert fmt.count(1234567) == "1.2M" and fmt.count(999) == "999" and fmt.count(0) == "0"
    assert fmt.duration_ns(1500) == "1.5µs" and fmt.duration_ns(2_000_000_000) == "2.0s"
    assert fmt.size_bytes(2048) == "2.0 KiB"
    assert fmt.task_style(5) == fmt.task_style(5)


def test_fputrace_own_tasks_are_marked_and_can_be_hidden():
    tasks = hand_made_snapshot().tasks.assign(fputrace_own=[False, True, False])
    from fputrace.tui.widgets.tasks import OWN_MARK, render_comm
    rows = {r.tid: render_comm(r).plain for r in tasks.itertuples(index=False)}
    assert rows == {101: "firefox", 202: f"{OWN_MARK}cc1", 7: "[kworker/0:1]"}
    assert filter_and_sort(tasks, "xrstor", "", hide_own=True)["tid"].tolist() == [101, 7]
    assert filter_and_sort(tasks, "xrstor", "")["tid"].tolist() == [101, 202, 7]    # shown
    # a source that cannot tell (no column) hides nothing
    assert len(filter_and_sort(hand_made_snapshot().tasks, "xrstor", "", hide_own=True)) == 3


def test_header_shows_probe_runs_the_kernel_skipped_beside_lost_events():
    status = SourceStatus(live=True, paused=False, events_per_s=1.0)
    meta = dict(META, recursion_misses={"sched_switch": 3, "sys_enter": 4})
    for lost, badge in ((0, "lost 0"), (42, "LOST 42")):
        text = render_header(meta, hand_made_snapshot(lost=lost), status).plain
        line = text.splitlines()[1]
        assert re.search(re.escape(badge) + r"\s+(numbers cross a gap\s+)?SKIPPED 7 probe runs", line), line


def test_components_sort_lists_amx_and_avx512_first_as_report_does():
    """`s` to LIVE orders the tasks table as `fputrace report --sort components` (issue 10): the
    largest live state first, then the most bytes moved, then tid; LIVE shows that state."""
    from fputrace.model import Model
    from fputrace.tui.widgets.tasks import largest_state, render_row
    from .scenario_builder import build
    from .tui_helpers import AMX_META, xstate_scenario
    model = Model(AMX_META)
    model.feed(build(xstate_scenario()))
    report = model.report().to_dict(sort="components")
    tasks = model.snapshot(10 * S, final=True).tasks
    shown = filter_and_sort(tasks, "components", "")
    assert shown["tid"].tolist() == [t["tid"] for t in report["per_task"]] == [150, 100, 200, 300, 400]
    assert filter_and_sort(tasks, "xsave", "")["tid"].tolist() == [400, 300, 200, 150, 100]
    for row in shown.itertuples(index=False):
        want = next(t for t in report["per_task"] if t["tid"] == row.tid)
        cells = [c.plain for c in render_row(row)]
        assert cells[5] == largest_state(want["components"]) == \
            {"0x3": "SSE", "0x7": "AVX", "0xe7": "AVX-512", "0x602e7": "AMX",
             "0x60007": "AMX"}[want["xfeatures_seen"]]
        assert cells[-1] == fmt.count(want["bytes_per_xsave"])
    assert {r.tid: r.bytes_per_xsave for r in shown.itertuples()} == \
        {100: 10696, 150: 9088, 200: 2432, 300: 832, 400: 576}


def test_tasks_table_refreshes_in_place_and_the_cursor_follows_its_task():
    """A refresh rewrites the cells that changed (rows keyed by position), adds and removes rows
    at the end, and keeps the cursor on the task it was on, wherever that task moved."""
    import asyncio
    from textual.app import App
    from fputrace.tui.widgets.tasks import TasksTable

    class One(App):
        def compose(self):
            yield TasksTable()

    def shown(table):
        return [[table.get_cell_at((r, c)).plain for c in (0, 1, 3)] for r in range(table.row_count)]

    async def run():
        tasks = hand_made_snapshot().tasks                       # by xrstor: 101, 202, 7
        app = One()
        async with app.run_test(size=(120, 20)) as pilot:
            table = app.query_one(TasksTable)
            table.show(tasks)
            await pilot.pause()
            assert [row[0] for row in shown(table)] == ["101", "202", "7"]
            table.move_cursor(row=2)                             # on task 7
            assert table.selected_tid == 7
            rewritten, added = [], []
            update_cell, add_row = table.update_cell, table.add_row
            table.update_cell = lambda *a, **k: (rewritten.append(a[:2]), update_cell(*a, **k))
            table.add_row = lambda *a, **k: (added.append(k.get("key")), add_row(*a, **k))
            # 7 restores most now, 202 has exited and gone, a new task 303 appears
            later = tasks[tasks["tid"] != 202].copy()
            later.loc[later["tid"] == 7, "xrstor"] = 10 ** 7
            new = later[later["tid"] == 101].assign(tid=303, tgid=303, comm="new", xrstor=1)
            table.show(pd.concat([later, new], ignore_index=True))
            await pilot.pause()
            rows = shown(table)
            assert [row[0] for row in rows] == ["7", "101", "303"]
            assert rows[0] == ["7", "[kworker/0:1]", fmt.count(10 ** 7)]
            assert rows[2][1] == "new"
            assert table.selected_tid == 7 and table.cursor_row == 0
            assert added == [] and ("0", "xrstor") in rewritten     # three rows before and after
            # unchanged cells are left alone: nothing is rewritten when nothing changed
            rewritten.clear()
            table.show(table._last)
            await pilot.pause()
            assert rewritten == [] and added == [] and shown(table) == rows
            table.show(tasks.iloc[:0])                           # no tasks: no rows
            await pilot.pause()
            assert table.row_count == 0 and table.selected_tid is None
    asyncio.run(run())
