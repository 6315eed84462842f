"""The dashboard application: keys, screens, and the one worker thread that runs the source.

Configuration comes in through ``__init__`` (a ready Source); nothing here reads ``sys.argv``.
"""
from __future__ import annotations

import time
from pathlib import Path

from textual import work
from textual.app import App
from textual.binding import Binding
from textual.worker import WorkerState, get_current_worker

from ..resources import dashboards_dir
from .messages import SnapshotReady, SourceFailed, SourceNotice
from .screens.dashboard import DashboardScreen
from .screens.help import HelpScreen
from .screens.prompt import PromptScreen
from .screens.task_detail import TaskDetailScreen
from .sources import NS_PER_S, Source
from .widgets.tasks import TasksTable

REPLAY_ONLY = {"play", "step", "speed", "goto"}
LIVE_ONLY = {"record"}
DASHBOARD_ONLY = {"sort", "filter", "record", "goto", "own"}


def parse_time_ns(text: str) -> int:
    """'12.5' (seconds), '1:02.5' (m:ss), '250ms', '3s' -> nanoseconds from the trace start."""
    s = text.strip().lower()
    if not s:
        raise ValueError("empty time")
    if ":" in s:
        m, sec = s.split(":", 1)
        return int((int(m) * 60 + float(sec)) * NS_PER_S)
    for suffix, mult in (("ms", 1e6), ("us", 1e3), ("ns", 1.0), ("s", 1e9), ("m", 60e9)):
        if s.endswith(suffix):
            return int(float(s[: -len(suffix)]) * mult)
    return int(float(s) * NS_PER_S)


class FputraceApp(App):
    CSS_PATH = str(dashboards_dir() / "fputrace.tcss")
    TITLE = "fputrace"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("p", "pause", "Pause"),
        Binding("space", "play", "Play", show=False),
        Binding("r", "record", "Rec"),
        Binding("s", "sort", "Sort"),
        Binding("slash", "filter", "Filter"),
        Binding("h", "own", "Own", show=False),
        Binding("left", "step(-1)", "-1s", priority=True, show=False),
        Binding("right", "step(1)", "+1s", priority=True, show=False),
        Binding("plus,equals_sign", "speed(1)", "Faster", show=False),
        Binding("minus", "speed(-1)", "Slower", show=False),
        Binding("g", "goto", "Go to"),
        Binding("question_mark", "help", "Help"),
    ]

    def __init__(self, source: Source, record_dir: str | Path = ".") -> None:
        super().__init__()
        self.source = source
        self.record_dir = Path(record_dir)
        self.snapshot = None
        self.status = None
        self.pictures = 0            # snapshots given to the screens (tests wait on this)
        self.drawn_pictures = 0      # ... and laid out and rendered since
        self._undrawn: SnapshotReady | None = None
        self.draw_s = 0.0            # UI thread CPU time spent drawing them (benchmarks)

    def get_default_screen(self) -> DashboardScreen:
        return DashboardScreen()

    def on_mount(self) -> None:
        self.sub_title = "live" if self.source.live else "replay"
        self.source.pacer.acknowledged = True      # the next picture waits until this one is drawn
        self.run_source()

    @work(thread=True, exit_on_error=False, name="source")
    def run_source(self) -> None:
        worker = get_current_worker()
        self.source.run(self.post_message, lambda: worker.is_cancelled or self.source.stopping)

    # --- pictures from the source ---------------------------------------------------------------
    async def on_snapshot_ready(self, msg: SnapshotReady) -> None:
        self.snapshot, self.status = msg.snapshot, msg.status
        self._undrawn = msg
        # the source starts with the app: its first picture can come before the dashboard has
        # its panels (then the dashboard draws it when mounted)
        if self.get_screen_dashboard().ready:
            await self.draw_picture()

    async def draw_picture(self) -> None:
        """Draw the newest picture from the source, if not drawn yet."""
        msg, self._undrawn = self._undrawn, None
        if msg is None:
            return
        t0 = time.thread_time()
        dash = self.get_screen_dashboard()
        await dash.show(self.source.meta, msg.snapshot, msg.status)
        if isinstance(self.screen, TaskDetailScreen) and msg.detail is not None \
                and msg.detail.tid == self.screen.tid:
            self.screen.show(msg.detail, msg.snapshot)
        self.pictures += 1

        def drawn() -> None:        # after layout and rendering: what the picture really cost
            cost = time.thread_time() - t0
            self.draw_s += cost
            self.drawn_pictures += 1
            self.source.picture_drawn(cost)
        self.call_after_refresh(drawn)

    def on_worker_state_changed(self, event) -> None:
        if event.state == WorkerState.ERROR:     # a bug or a broken source: say it, keep the UI up
            err = event.worker.error
            self.notify(f"data source stopped: {type(err).__name__}: {err}", severity="error",
                        timeout=60)

    def on_source_failed(self, msg: SourceFailed) -> None:
        self.notify(msg.error, severity="error", timeout=30)

    def on_source_notice(self, msg: SourceNotice) -> None:
        self.notify(msg.text, severity=msg.severity)  # type: ignore[arg-type]

    def get_screen_dashboard(self) -> DashboardScreen:
        for screen in self.screen_stack:
            if isinstance(screen, DashboardScreen):
                return screen
        raise LookupError("dashboard screen not installed")

    # --- keys -----------------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if isinstance(self.screen, PromptScreen) and action not in ("quit",):
            return False            # the Input gets its keys (arrows, space, letters)
        if action in REPLAY_ONLY and self.source.live:
            return False
        if action in LIVE_ONLY and not self.source.live:
            return False
        if action in DASHBOARD_ONLY and not isinstance(self.screen, DashboardScreen):
            return False
        return True

    def action_pause(self) -> None:
        self.source.command("pause")

    def action_play(self) -> None:
        self.source.command("play")

    def action_step(self, direction: int) -> None:
        self.source.command("step", direction)

    def action_speed(self, direction: int) -> None:
        self.source.command("speed", direction)

    def action_record(self) -> None:
        if self.status is not None and self.status.recording_path:
            self.source.command("record")
            return
        path = self.record_dir / time.strftime("fputrace-%Y%m%d-%H%M%S.fpt")
        self.source.command("record", str(path))

    def action_sort(self) -> None:
        table = self.screen.query_one(TasksTable)
        table.cycle_sort()
        table.border_subtitle = table.subtitle

    def action_own(self) -> None:
        table = self.screen.query_one(TasksTable)
        table.toggle_own()
        table.border_subtitle = table.subtitle

    def action_filter(self) -> None:
        table = self.screen.query_one(TasksTable)

        def apply(text: str | None) -> None:
            if text is not None:
                table.set_filter(text)
                table.border_subtitle = table.subtitle
        self.push_screen(PromptScreen("Filter tasks by name or pid (empty: show all)",
                                      value=table.filter_text), apply)

    def action_goto(self) -> None:
        def apply(text: str | None) -> None:
            if not text:
                return
            try:
                self.source.command("goto", parse_time_ns(text))
            except ValueError:
                self.notify(f"not a time: {text!r} (try 12.5 or 1:02)", severity="error")
        self.push_screen(PromptScreen("Go to time from the start of the trace (s, or m:ss)",
                                      placeholder="e.g. 12.5 or 1:02"), apply)

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.source.live))

    def on_data_table_row_selected(self, event) -> None:
        if isinstance(event.data_table, TasksTable):
            self.open_task(event.data_table.tid_at(event.cursor_row))

    def open_task(self, tid: int) -> None:
        self.source.command("watch", tid)
        screen = TaskDetailScreen(tid)
        self.push_screen(screen, lambda _: self.source.command("watch", None))

    async def action_quit(self) -> None:
        self.source.stopping = True
        self.exit()
