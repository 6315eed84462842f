"""The `?` screen: every key, for live and for replay."""
from __future__ import annotations

from rich.table import Table
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

KEYS_COMMON = (
    ("q", "quit (a recording in progress is closed cleanly)"),
    ("p", "pause/resume (live: freezes the picture, capture goes on; replay: the clock)"),
    ("s", "sort the tasks table by the next column (LIVE: AVX-512/AMX tasks first)"),
    ("/", "filter tasks by name or pid (empty filter: all)"),
    ("h", "hide/show fputrace's own tasks (marked ◆)"),
    ("Tab / Shift+Tab", "next / previous panel"),
    ("↑ ↓ PgUp PgDn", "move in the focused table"),
    ("Enter", "open the task under the cursor (its timeline and causes)"),
    ("Esc", "back from a task view or this help"),
    ("?", "this help"),
)
KEYS_LIVE = (("r", "start/stop recording to a file (fputrace-<time>.fpt in the current dir)"),)
KEYS_REPLAY = (
    ("space", "play/pause"),
    ("← →", "step one second back/forward"),
    ("+ -", "faster/slower replay"),
    ("g", "go to a time (seconds from the start, or m:ss)"),
)
LEGEND = ("CPU strips: █ a task's user state (one colour per task), ▓ kernel SIMD (kernel_fpu_begin),"
          " · nothing valid, ? unknown (trace start, lost events). AVOID: restores thrown away"
          " before the task ran user code (SPEC 5.3). LIVE: the largest state live at the task's saves"
          " (SSE, AVX, AVX-512, AMX); B/SAVE: bytes per save. A red LOST badge: events were dropped, and"
          " numbers crossing the gap are flagged.")


class HelpScreen(ModalScreen[None]):
    BINDINGS = [("escape", "close", "Back"), ("question_mark", "close", "Back"),
                ("q", "close", "Back")]

    def __init__(self, live: bool) -> None:
        super().__init__()
        self.live = live

    def compose(self) -> ComposeResult:
        table = Table(box=None, show_header=False, padding=(0, 2))
        table.add_column(style="bold cyan", no_wrap=True)
        table.add_column()
        for key, what in KEYS_COMMON + (KEYS_LIVE if self.live else KEYS_REPLAY):
            table.add_row(key, what)
        with VerticalScroll(id="help-box") as box:
            box.border_title = "fputrace keys (" + ("live" if self.live else "replay") + ")"
            box.border_subtitle = "Esc to close"
            yield Static(table)
            yield Static(LEGEND, id="help-legend")

    def action_close(self) -> None:
        self.dismiss(None)
