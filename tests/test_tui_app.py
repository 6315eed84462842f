"""The dashboard driven by Textual's Pilot on a real recording (the bundled demo, made by
`fputrace record` on this kind of host) through the real model: every key and every view."""
from __future__ import annotations

import asyncio
import functools
import time
from pathlib import Path

import numpy as np
import pytest

from fputrace.commands.demo import BUSY_AT_NS
from fputrace.model import Model
from fputrace.trace import load
from fputrace.tui.activity import RecentActivity
from fputrace.tui.app import FputraceApp
from fputrace.tui.messages import SourceStatus
from fputrace.tui.sources import Source
from fputrace.tui.screens.dashboard import DashboardScreen
from fputrace.tui.screens.help import HelpScreen
from fputrace.tui.screens.prompt import PromptScreen
from fputrace.tui.screens.task_detail import TaskDetailScreen
from fputrace.tui.replay import open_replay
from fputrace.tui.widgets.tasks import TasksTable

from .tui_helpers import META, HandModel

pytestmark = [pytest.mark.tui, pytest.mark.timeout(600)]

DEMO = Path(__file__).resolve().parent.parent / "fputrace" / "data" / "demo.fpt"
S = 1_000_000_000
AT_NS = BUSY_AT_NS      # in the busy part of the demo (the recorder starts up first)


def sync(test):
    """Run an async test on a fresh event loop (no async pytest plugin needed)."""
    @functools.wraps(test)
    def wrapper(*args, **kwargs):
        return asyncio.run(test(*args, **kwargs))
    return wrapper


def replay_app(at_ns: int = AT_NS, playing: bool = False) -> FputraceApp:
    return FputraceApp(open_replay(str(DEMO), start_ns=at_ns, playing=playing))


async def until(pilot, cond, timeout_s: float = 120.0) -> None:
    """Wait for the app to reach ``cond()`` (the first picture may wait for the model's JIT)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not cond():
        assert loop.time() < deadline, "dashboard did not reach the expected state in time"
        await pilot.pause(0.05)


async def first_picture(pilot, app) -> None:
    # generous: after a change to the model its numba code recompiles (minutes on a busy machine)
    await until(pilot, lambda: app.pictures > 0, timeout_s=500)
    await pilot.pause()


def screen_text(app) -> str:
    """What the terminal shows, as plain text (from Textual's own SVG screenshot)."""
    import html
    import re
    svg = app.export_screenshot()
    return html.unescape(" ".join(re.findall(r">([^<>]*)</text>", svg))).replace("\xa0", " ")


def table_tids(app) -> list[int]:
    table = app.screen.query_one(TasksTable)
    return [int(table.get_cell_at((r, 0)).plain) for r in range(table.row_count)]   # PID shown


def demo_events():
    """The demo recording as one array in time order (it is small), and its meta."""
    tr = load(DEMO)
    return np.concatenate(list(tr.batches())), tr.meta


def model_at(at_ns: int) -> Model:
    """An independent model fed the same recording up to the same time: what the screen must show."""
    events, meta = demo_events()
    model = Model(meta, history=RecentActivity())
    model.feed(events[events["ts_ns"] <= events["ts_ns"][0] + at_ns])
    return model


@pytest.fixture(scope="module")
def expected():
    return model_at(AT_NS).snapshot(10 * S)


@sync
async def test_dashboard_shows_the_models_numbers(expected):
    app = replay_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await first_picture(pilot, app)
        snap = app.snapshot
        assert snap.events == expected.events > 0
        assert {p.name: p.xrstor for p in snap.policies} == \
            {p.name: p.xrstor for p in expected.policies}
        # the table lists every task, by XRSTOR (descending) first
        want = expected.tasks.sort_values(["xrstor", "tid"], ascending=[False, True])["tid"].tolist()
        assert table_tids(app) == want
        header = str(app.screen.query_one("#header").render())
        at = f"{AT_NS // S // 60}:{AT_NS // S % 60:02d}.0/"
        assert "REPLAY" in header and at in header and "lost 0" in header
        assert len(app.screen.query(".cpu-row")) == len(expected.cpus)


@sync
async def test_q_quits():
    app = replay_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await first_picture(pilot, app)
        await pilot.press("q")
        await until(pilot, lambda: not app.is_running, 10)
    assert app.source.stopping


@sync
async def test_p_and_space_pause_and_resume_the_replay_clock():
    app = replay_app(at_ns=1 * S)
    async with app.run_test(size=(80, 24)) as pilot:
        await first_picture(pilot, app)
        assert app.status.paused
        await pilot.press("p")
        await until(pilot, lambda: not app.status.paused)
        await until(pilot, lambda: app.status.position_ns > 1 * S)   # the clock runs
        await pilot.press("space")
        await until(pilot, lambda: app.status.paused)
        held = app.status.position_ns
        await pilot.pause(0.5)
        assert app.status.position_ns == held


@sync
async def test_arrows_step_one_second():
    app = replay_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await first_picture(pilot, app)
        await pilot.press("right")
        await until(pilot, lambda: app.status.position_ns == AT_NS + S)
        await pilot.press("left", "left")
        await until(pilot, lambda: app.status.position_ns == AT_NS - S)
        assert app.snapshot.events == model_at(AT_NS - S).snapshot(10 * S).events


@sync
async def test_plus_and_minus_change_speed():
    app = replay_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await first_picture(pilot, app)
        await pilot.press("plus")
        await until(pilot, lambda: app.status.speed == 2.0)
        await pilot.press("minus", "minus")
        await until(pilot, lambda: app.status.speed == 0.5)
        assert "×0.5" in str(app.screen.query_one("#header").render())


@sync
async def test_g_goes_to_a_time():
    app = replay_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await first_picture(pilot, app)
        await pilot.press("g")
        await until(pilot, lambda: isinstance(app.screen, PromptScreen))
        await pilot.press(*"2.5", "enter")
        await until(pilot, lambda: app.status.position_ns == int(2.5 * S))
        assert isinstance(app.screen, DashboardScreen)
        await pilot.press("g")
        await until(pilot, lambda: isinstance(app.screen, PromptScreen))
        await pilot.press(*"soon", "enter")                    # not a time: said, not applied
        await pilot.pause(0.3)
        assert app.status.position_ns == int(2.5 * S)


@sync
async def test_s_cycles_the_sort_column(expected):
    app = replay_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await first_picture(pilot, app)
        table = app.screen.query_one(TasksTable)
        await pilot.press("s")
        assert table.sort_key == "xsave"
        want = expected.tasks.sort_values(["xsave", "tid"], ascending=[False, True])["tid"].tolist()
        assert table_tids(app) == want
        keys = []
        for _ in range(5):
            await pilot.press("s")
            keys.append(table.sort_key)
        assert keys == ["avoidable_xrstor", "components", "kfpu_sections", "kfpu_ns", "tid"]
        assert table.sort_key == "tid"
        assert table_tids(app) == sorted(expected.tasks["tid"].tolist())
        assert "sort tid" in str(table.border_subtitle)


@sync
async def test_slash_filters_tasks_by_name(expected):
    app = replay_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await first_picture(pilot, app)
        await pilot.press("slash")
        await until(pilot, lambda: isinstance(app.screen, PromptScreen))
        await pilot.press(*"python", "enter")
        await until(pilot, lambda: isinstance(app.screen, DashboardScreen))
        tids = table_tids(app)
        want = set(expected.tasks[expected.tasks["comm"].str.contains("python")]["tid"])
        assert tids and set(tids) == want
        await pilot.press("slash")
        await until(pilot, lambda: isinstance(app.screen, PromptScreen))
        await pilot.press("ctrl+a", "ctrl+k", "enter")           # empty filter: all tasks again
        await until(pilot, lambda: isinstance(app.screen, DashboardScreen))
        assert len(table_tids(app)) == len(expected.tasks)


@sync
async def test_tab_moves_between_panels():
    app = replay_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await first_picture(pilot, app)
        seen = []
        for _ in range(5):
            await pilot.press("tab")
            focused = app.focused
            panel = next((n.id for n in [focused, *focused.ancestors] if getattr(n, "id", None) in
                          ("cpus", "policy-wide", "tasks", "kfpu")), None)
            seen.append(panel)
        assert {"cpus", "policy-wide", "tasks", "kfpu"} <= set(seen), seen


@sync
async def test_enter_opens_the_task_view_with_its_causes_and_timeline():
    app = replay_app()
    async with app.run_test(size=(160, 48)) as pilot:
        await first_picture(pilot, app)
        table = app.screen.query_one(TasksTable)
        table.focus()
        await pilot.press("down")
        tid = table.selected_tid
        assert tid == table_tids(app)[1]
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, TaskDetailScreen))
        screen = app.screen
        assert screen.tid == tid
        await until(pilot, lambda: screen._args is not None)
        detail, _ = screen._args
        want = model_at(AT_NS).task_detail(tid)
        assert detail.causes.reset_index(drop=True).equals(want.causes.reset_index(drop=True))
        causes = screen.query_one("#detail-causes")
        assert causes.row_count == len(want.causes) > 0
        assert screen.query_one("#detail-intervals").row_count == min(200, len(want.timeline))
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, DashboardScreen))
        assert app.source.detail_tid is None or app.source.detail_tid == tid  # unwatched async
        await until(pilot, lambda: app.source.detail_tid is None, 5)


@sync
async def test_question_mark_opens_help_and_escape_closes_it():
    app = replay_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await first_picture(pilot, app)
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen))
        text = screen_text(app)
        for needle in ("quit", "pause", "sort", "filter", "go to", "play", "step"):
            assert needle in text.lower(), needle
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, DashboardScreen))


@sync
async def test_r_does_nothing_in_a_replay(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    app = replay_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await first_picture(pilot, app)
        assert app.check_action("record", ()) is False
        await pilot.press("r")
        await pilot.pause(0.3)
    assert not list(tmp_path.iterdir())


class InstantSource(Source):
    """Posts its picture the moment the app starts it, before the screen may have its panels."""
    live = False

    def _run(self, post, is_cancelled) -> None:
        self._post_picture(post, HandModel(), SourceStatus(live=False, paused=True,
                                                           events_per_s=0.0))
        while not is_cancelled():
            time.sleep(0.01)


@sync
async def test_a_picture_before_the_panels_exist_is_drawn_when_they_do():
    """The source starts with the app; on a loaded machine its first picture came before the
    dashboard had composed its panels and the app died (NoMatches: CpuPanel). Five starts: each
    draws the picture (without the fix most of them crashed)."""
    for _ in range(5):
        app = FputraceApp(InstantSource(dict(META)))
        async with app.run_test(size=(160, 48)) as pilot:
            await until(pilot, lambda: app.drawn_pictures > 0, timeout_s=60)
            assert table_tids(app) == [101, 202, 7]
            assert app.is_running


class RecordedStream:
    """A live producer replaying the demo recording's events in batches, over and over (each lap
    shifted in time so the stream stays ordered), at ~50k events/s; no kernel needed."""

    def __init__(self, batch: int = 500) -> None:
        self.events, self.meta = demo_events()
        self.batch, self.closed = batch, False
        self.sent = 0
        self.lap_ns = int(self.events["ts_ns"][-1] - self.events["ts_ns"][0]) + 1_000_000

    def poll(self, timeout_s: float) -> list:
        import time
        lap, at = divmod(self.sent, len(self.events))
        out = self.events[at:at + self.batch].copy()
        out["ts_ns"] += lap * self.lap_ns
        self.sent += len(out)
        time.sleep(0.01)
        return [out]

    def close(self) -> None:
        self.closed = True


def live_app(tmp_path) -> tuple[FputraceApp, RecordedStream]:
    from fputrace.tui.live import LiveSource
    stream = RecordedStream()
    return FputraceApp(LiveSource(stream), record_dir=tmp_path), stream


@sync
async def test_live_p_freezes_the_picture_and_r_records_a_loadable_file(tmp_path):
    app, stream = live_app(tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await first_picture(pilot, app)
        assert app.status.live and not app.status.recording_path
        # r: start recording; the file gets what arrives from now on, named tasks first
        await pilot.press("r")
        await until(pilot, lambda: app.status.recording_path != "")
        path = Path(app.status.recording_path)
        assert path.parent == tmp_path and path.suffix == ".fpt"
        await until(pilot, lambda: app.status.recorded_events > 5_000)
        await pilot.press("r")
        await until(pilot, lambda: app.status.recording_path == "")
        # p: the picture stops changing while the model keeps eating
        await pilot.press("p")
        await until(pilot, lambda: app.status.paused)
        shown, fed = app.snapshot.events, app.source.fed_events
        await until(pilot, lambda: app.source.fed_events > fed)
        await pilot.pause(0.3)
        assert app.snapshot.events == shown
        await pilot.press("p")
        await until(pilot, lambda: not app.status.paused)
        assert "PAUSED" not in screen_text(app)
        await pilot.press("q")
    assert stream.closed                              # quitting closes the capture
    rec = load(path)
    assert rec.meta.get("closed") and rec.meta["host"] == app.source.meta["host"]
    assert len(rec.events) > 5_000 and {"python3", "fputrace"} <= set(rec.tasks["comm"])
