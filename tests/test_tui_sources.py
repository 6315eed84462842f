"""The dashboard's data path without a screen: live backpressure and accounting, picture pacing,
and the replay clock."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from fputrace.events import Kind
from fputrace.tui.messages import SnapshotReady, SourceNotice
from fputrace.tui.live import LiveSource, task_table_batch
from fputrace.tui.replay import ReplaySource
from fputrace.tui.sources import PicturePacer, SourceConfig

from .tui_helpers import META, S, HandModel, PacedProducer, hand_made_snapshot, synthetic_events

pytestmark = pytest.mark.tui


def run_source(source, until, timeout_s=20.0):
    msgs, stop = [], threading.Event()
    t = threading.Thread(target=source.run, args=(msgs.append, stop.is_set), daemon=True)
    t.start()
    deadline = time.monotonic() + timeout_s
    while not until(msgs) and time.monotonic() < deadline:
        time.sleep(0.02)
    stop.set()
    t.join(10)
    assert not t.is_alive(), "source did not stop when cancelled"
    assert source.done.is_set()
    return msgs


def test_live_source_feeds_every_captured_event_and_closes_the_capture():
    models = []
    producer = PacedProducer(rate=200_000, seconds=1.0)
    src = LiveSource(producer, model_factory=lambda: models.append(HandModel()) or models[-1])
    run_source(src, lambda m: producer.finished and src.fed_events == producer.sent)
    assert producer.sent == 200_000
    assert src.captured_events == src.fed_events == models[0].fed_events == producer.sent
    assert producer.closed


def test_live_source_pictures_are_at_most_ten_per_second():
    producer = PacedProducer(rate=100_000, seconds=1.5, batch=500)
    src = LiveSource(producer, model_factory=HandModel)
    t0 = time.monotonic()
    msgs = run_source(src, lambda m: time.monotonic() - t0 > 1.5)
    pictures = [m for m in msgs if isinstance(m, SnapshotReady)]
    elapsed = time.monotonic() - t0
    assert 1 <= len(pictures) <= elapsed * 10 + 1, (len(pictures), elapsed)


class SlowModel(HandModel):
    def feed(self, batch):
        time.sleep(0.01)
        super().feed(batch)


class RingProducer:
    """A capture stand-in with a kernel ring of ``ring_events``: events arrive at ``rate`` on the
    wall clock whether or not anyone polls; what does not fit is lost and counted, and reaches
    the consumer as a LOST event per poll, as ``CaptureSession`` hands over the BPF side's counts."""

    def __init__(self, rate: float, seconds: float, ring_events: int, batch: int = 1000) -> None:
        self.meta = dict(META)
        self.rate, self.seconds, self.ring_events, self.batch = rate, seconds, ring_events, batch
        self.t0 = time.monotonic()
        self.arrived = self.delivered = self.lost = 0
        self.closed = False

    def poll(self, timeout_s: float) -> list:
        due = int(min(time.monotonic() - self.t0, self.seconds) * self.rate)
        new, self.arrived = due - self.arrived, due
        in_ring = min(new, self.ring_events)
        lost = new - in_ring
        out = [synthetic_events(n, t0_ns=self.delivered * 1000, span_ns=n * 1000)
               for n in [self.batch] * (in_ring // self.batch) + [in_ring % self.batch] if n]
        self.delivered += in_ring
        if lost:
            self.lost += lost
            rec = np.zeros(1, dtype=out[-1].dtype if out else synthetic_events(1).dtype)
            rec["kind"], rec["a0"], rec["ts_ns"] = Kind.LOST, lost, self.delivered * 1000
            out.append(rec)
        time.sleep(0.005)
        return out

    @property
    def finished(self) -> bool:
        return time.monotonic() - self.t0 >= self.seconds and self.arrived >= self.seconds * self.rate

    def close(self) -> None:
        self.closed = True


def test_a_slow_model_makes_the_capture_wait_and_losses_happen_only_in_the_ring():
    """A model that cannot keep up (10 ms per batch of 1000 at 400k ev/s) behind a 4000-event
    queue: the queue never overflows and nothing is dropped on the way; the capture thread waits,
    so the ring overflows, and exactly what the ring lost reaches the model as LOST events."""
    models = []
    producer = RingProducer(rate=400_000, seconds=1.0, ring_events=20_000)
    src = LiveSource(producer, model_factory=lambda: models.append(SlowModel()) or models[-1],
                     queue_events=4000)
    run_source(src, lambda m: producer.finished and src.batches.empty()
               and src.fed_events == src.captured_events)
    model = models[0]
    assert src.batches.peak_events <= 4000
    assert src.batches.wait_s > 0.1                      # the capture waited for the model
    assert producer.lost > 0                             # ... and the ring overflowed
    assert model.lost_seen == producer.lost              # every lost event reported, exactly
    assert model.fed_events - model.lost_records == producer.delivered == src.fed_events \
        - model.lost_records


def test_pictures_wait_for_the_ui_and_are_spaced_by_their_cost():
    pacer = PicturePacer(hz=10, share=0.25, max_stale_s=5.0)
    pacer.acknowledged = True
    assert pacer.due(100.0)
    pacer.taken(100.0, snapshot_s=0.05)
    assert not pacer.due(100.5)                          # the UI has not drawn it yet
    pacer.drawn(0.2)                                     # 0.25 s in all: one picture a second
    assert pacer.interval_s == pytest.approx(1.0)
    assert not pacer.due(100.9) and pacer.due(101.0)
    pacer.taken(101.0, snapshot_s=0.01)
    pacer.drawn(0.01)
    assert pacer.interval_s == pytest.approx(0.1)        # cheap again: 10 per second
    assert not pacer.due(101.2, behind=True)             # feeding a backlog comes first...
    assert pacer.due(106.0, behind=True)                 # ... but the screen is never 5 s old
    pacer.taken(106.0, snapshot_s=0.01)
    assert pacer.due(106.0 + 31.0)                       # an unanswered picture stops blocking


def test_a_busy_live_dashboard_refreshes_less_often_and_says_so():
    """Each picture of this model costs at least 0.1 s: at a 25% share the source spaces them
    0.4 s or more apart (not 0.1 s), and the status it sends carries the interval for the header
    (the one in force when the picture is taken: from the second picture on)."""
    class CostlyPictures(HandModel):
        def snapshot(self, window_ns):
            t0 = time.thread_time()
            while time.thread_time() - t0 < 0.1:       # CPU, not sleep: that is what is paced
                pass
            return super().snapshot(window_ns)
    producer = PacedProducer(rate=50_000, seconds=30.0, batch=500)
    src = LiveSource(producer, model_factory=CostlyPictures)
    pictures, stop = [], threading.Event()          # (time posted, picture)

    def post(msg):
        if isinstance(msg, SnapshotReady):
            pictures.append((time.monotonic(), msg))
    worker = threading.Thread(target=src.run, args=(post, stop.is_set), daemon=True)
    worker.start()
    deadline = time.monotonic() + 30
    while len(pictures) < 4 and time.monotonic() < deadline:
        time.sleep(0.02)
    stop.set()
    worker.join(10)
    at = [t for t, _ in pictures]
    assert len(at) >= 4
    assert min(b - a for a, b in zip(at, at[1:])) >= 0.4
    assert all(m.status.refresh_s >= 0.4 for _, m in pictures[1:])
    assert src.fed_events + src.unfed_at_exit == src.captured_events > 0


def test_recording_started_late_names_the_running_tasks(tmp_path):
    tasks = hand_made_snapshot().tasks
    batch = task_table_batch(tasks)
    assert (batch["kind"] == Kind.COMM).sum() == len(tasks) == (batch["kind"] == Kind.TASK).sum()
    from fputrace.events import args_to_comm
    comm = batch[batch["kind"] == Kind.COMM]
    assert [args_to_comm(r["a0"], r["a1"]) for r in comm] == tasks["comm"].tolist()
    kth = batch[(batch["kind"] == Kind.TASK) & (batch["tid"] == 7)]
    assert int(kth["a0"][0]) & 1


def test_live_record_command_writes_a_recording(tmp_path):
    from fputrace.recording import open_recording
    producer = PacedProducer(rate=50_000, seconds=1.0, batch=1000)
    src = LiveSource(producer, model_factory=HandModel)
    path = tmp_path / "rec.fpt"
    src.command("record", str(path))
    msgs = run_source(src, lambda m: producer.finished and src.fed_events == producer.sent)
    rec = open_recording(path, warn=False)
    events = rec.read_all()
    assert rec.meta.get("closed") and rec.meta.get("host") == "testhost"
    fpu = events[events["kind"] == Kind.XSAVE]
    assert len(fpu) == producer.sent
    assert (events["kind"] == Kind.COMM).sum() == 3            # the task table came first
    assert any(isinstance(m, SourceNotice) and "recording to" in m.text for m in msgs)


# ---- replay clock ------------------------------------------------------------------------------

class CountingModel(HandModel):
    instances = 0

    def __init__(self):
        super().__init__()
        CountingModel.instances += 1


def replay(**kw):
    ev = synthetic_events(2001, t0_ns=5 * S, span_ns=20 * S)      # one event per 10 ms
    return ReplaySource.from_batches([ev], META, model_factory=CountingModel, config=SourceConfig(),
                                     **kw)


def test_replay_opens_paused_at_the_requested_time_and_steps():
    src = replay(playing=False, start_ns=10 * S)
    msgs = run_source(src, lambda m: len(m) >= 1)
    first = msgs[0]
    assert first.status.paused and first.status.position_ns == 10 * S
    assert first.status.duration_ns == 20 * S
    assert src.fed_events == 1001                                        # events at t <= 10 s
    src2 = replay(playing=False, start_ns=10 * S)
    src2.command("step", 1)
    src2.command("step", 1)
    src2.command("step", -1)
    msgs = run_source(src2, lambda m: any(x.status.position_ns == 11 * S for x in m[1:]))
    assert msgs[-1].status.position_ns == 11 * S and src2.fed_events == 1101


def test_replay_goto_backwards_rebuilds_the_model_from_the_start():
    CountingModel.instances = 0
    src = replay(playing=False, start_ns=15 * S)
    src.command("goto", 3 * S)
    msgs = run_source(src, lambda m: len(m) >= 2)
    assert msgs[-1].status.position_ns == 3 * S and src.fed_events == 301
    assert CountingModel.instances == 2


def test_replay_plays_at_speed_and_stops_at_the_end():
    src = replay(playing=True, speed=100.0)       # 20 s of trace in 0.2 s of wall time
    msgs = run_source(src, lambda m: any(isinstance(x, SourceNotice) for x in m))
    assert any(isinstance(x, SourceNotice) and "end of recording" in x.text for x in msgs)
    last = [x for x in msgs if isinstance(x, SnapshotReady)][-1]
    assert last.status.finished and src.fed_events == 2001


def test_replay_speed_steps_through_the_ladder():
    src = replay(playing=False, start_ns=0)
    for _ in range(3):
        src.command("speed", 1)
    src.command("speed", -1)
    msgs = run_source(src, lambda m: len(m) >= 2)
    assert src.speed == 5.0


def test_replay_feeds_batches_given_out_of_order_in_time_order():
    a = synthetic_events(10, t0_ns=10 * S, span_ns=S)
    b = synthetic_events(10, t0_ns=0, span_ns=S)
    fed = []

    class Recorder(HandModel):
        def feed(self, batch):
            fed.append(batch["ts_ns"].copy())
            super().feed(batch)
    src = ReplaySource.from_batches([a, b], META, model_factory=Recorder, playing=False)
    run_source(src, lambda m: len(m) >= 1)
    ts = np.concatenate(fed)
    assert len(ts) == 20 and np.all(np.diff(ts.astype(np.int64)) >= 0)


class FillingRing(PacedProducer):
    """A capture whose kernel ring reports a fill level (SessionProducer.ring_fill)."""
    fill = 0.0

    def ring_fill(self) -> float:
        return self.fill


def test_a_filling_kernel_ring_holds_pictures_back():
    """The capture thread that reads the ring is starved of CPU when its ring fills: the dashboard
    then draws only the stale-screen minimum (one picture every 5 s), and again as often as it can
    once the ring has room, losing nothing on its side meanwhile."""
    producer = FillingRing(rate=100_000, seconds=6.0, batch=500)
    src = LiveSource(producer, model_factory=HandModel)
    producer.fill = 0.5
    t0 = time.monotonic()
    msgs = run_source(src, lambda m: time.monotonic() - t0 > 3.0, timeout_s=30)
    pictures = [m for m in msgs if isinstance(m, SnapshotReady)]
    assert src.behind
    assert 1 <= len(pictures) <= 2, len(pictures)          # the first, then none for 5 s
    producer.fill = 0.01
    assert not src.behind
    assert src.captured_events == src.fed_events


class NiceProducer(PacedProducer):
    """Notes the nice value of the thread that polls it (the capture thread)."""
    poll_nice = None

    def poll(self, timeout_s):
        import os
        self.poll_nice = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        return super().poll(timeout_s)


def test_the_capture_and_model_threads_run_ahead_of_the_ui():
    """As root (the live dashboard always is) the consumers get CONSUMER_NICE, the thread that
    started the source (the UI) keeps its own, and the GIL hand-over is short while it runs."""
    import os
    import sys
    from fputrace.tui import live
    if os.geteuid() != 0:
        pytest.skip("a negative nice needs root (the live dashboard runs as root)")
    seen = {}

    class NiceModel(HandModel):
        def feed(self, batch):
            seen["model_nice"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
            seen["switch_interval"] = sys.getswitchinterval()
            super().feed(batch)
    before = sys.getswitchinterval()
    ui_nice = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    producer = NiceProducer(rate=100_000, seconds=0.5)
    src = LiveSource(producer, model_factory=NiceModel)
    run_source(src, lambda m: producer.finished and src.fed_events == producer.sent)
    assert producer.poll_nice == live.CONSUMER_NICE == src.consumer_nice < 0
    assert seen == {"model_nice": live.CONSUMER_NICE, "switch_interval": live.SWITCH_INTERVAL_S}
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == ui_nice
    assert sys.getswitchinterval() == before             # given back when the source stops
