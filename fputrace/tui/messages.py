"""Every message that crosses from the data sources (worker threads) into the dashboard.

Small dataclasses. The ones that arrive at a steady rate (a new snapshot, a new task detail, source
status) override ``can_replace`` so that Textual merges them in its queue instead of letting a busy
UI fall behind: only the newest picture matters.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from textual.message import Message

from ..model.snapshot import Snapshot, TaskDetail


@dataclass
class SourceStatus:
    """What the source knows about itself (not analysis: the model's numbers are in Snapshot)."""
    live: bool
    paused: bool                   # display frozen (live) / replay clock stopped (replay)
    events_per_s: float            # ingest rate: wall clock (live) or trace clock (replay)
    recording_path: str = ""       # live: file being written by `r`, "" when not recording
    recorded_events: int = 0
    backlog_events: int = 0        # live: events waiting for the model (the kernel ring holds more)
    position_ns: int = 0           # replay: trace time shown, relative to the trace start
    duration_ns: int = 0           # replay: trace length
    speed: float = 1.0             # replay speed factor
    finished: bool = False         # replay reached the end of the file
    trace_start_ns: int = 0        # timestamp of the first event (strips are blank before it)
    target_ns: int = 0             # replay: where a seek is going (== position_ns when there)
    refresh_s: float = 0.1         # current spacing of pictures (grows with their cost under load)


@dataclass
class SnapshotReady(Message):
    """A new picture from the model (at most ~10 per second)."""
    snapshot: Snapshot
    status: SourceStatus
    detail: TaskDetail | None = field(default=None)

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, SnapshotReady)


@dataclass
class SourceFailed(Message):
    """The source stopped with an error the user must see (one line)."""
    error: str


@dataclass
class SourceNotice(Message):
    """A one-off event worth a toast (recording started/stopped, replay finished)."""
    text: str
    severity: str = "information"
