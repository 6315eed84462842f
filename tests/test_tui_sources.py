"""The dashboard's data path without a screen: live queue accounting and the replay clock."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from fputrace.events import Kind
from fputrace.tui.messages import SnapshotReady, SourceNotice
from fputrace.tui.sources import LiveSource, ReplaySource, SourceConfig, task_table_batch

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
    assert src.ledger.dropped_batches == 0
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


def test_a_full_queue_drops_instead_of_blocking_and_the_model_hears_of_it_as_lost():
    """A model that cannot keep up (10 ms per batch of 1000 at 1M ev/s) with a 4000-event queue:
    the capture thread must not wait; what it drops reaches the model as LOST events, exactly."""
    models = []
    producer = PacedProducer(rate=1_000_000, seconds=0.5, batch=1000)
    src = LiveSource(producer, model_factory=lambda: models.append(SlowModel()) or models[-1],
                     queue_events=4000)
    msgs = run_source(src, lambda m: producer.finished and src.batches.empty()
                      and not src.ledger.pending)
    assert src.max_queued_events <= 4000
    model = models[0]
    assert src.ledger.dropped_batches > 0
    assert src.captured_events == producer.sent                  # capture never stalled
    assert model.lost_seen == src.ledger.dropped_events           # every drop reported as LOST
    assert model.fed_events - model.lost_records == src.fed_events
    status = [m.status for m in msgs if isinstance(m, SnapshotReady)][-1]
    assert status.dropped_batches == src.ledger.dropped_batches


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
    return ReplaySource(ev, META, model_factory=CountingModel, config=SourceConfig(), **kw)


def test_replay_opens_paused_at_the_requested_time_and_steps():
    src = replay(playing=False, start_ns=10 * S)
    msgs = run_source(src, lambda m: len(m) >= 1)
    first = msgs[0]
    assert first.status.paused and first.status.position_ns == 10 * S
    assert first.status.duration_ns == 20 * S
    assert src._fed == 1001                                        # events at t <= 10 s
    src2 = replay(playing=False, start_ns=10 * S)
    src2.command("step", 1)
    src2.command("step", 1)
    src2.command("step", -1)
    msgs = run_source(src2, lambda m: any(x.status.position_ns == 11 * S for x in m[1:]))
    assert msgs[-1].status.position_ns == 11 * S and src2._fed == 1101


def test_replay_goto_backwards_rebuilds_the_model_from_the_start():
    CountingModel.instances = 0
    src = replay(playing=False, start_ns=15 * S)
    src.command("goto", 3 * S)
    msgs = run_source(src, lambda m: len(m) >= 2)
    assert msgs[-1].status.position_ns == 3 * S and src._fed == 301
    assert CountingModel.instances == 2


def test_replay_plays_at_speed_and_stops_at_the_end():
    src = replay(playing=True, speed=100.0)       # 20 s of trace in 0.2 s of wall time
    msgs = run_source(src, lambda m: any(isinstance(x, SourceNotice) for x in m))
    assert any(isinstance(x, SourceNotice) and "end of recording" in x.text for x in msgs)
    last = [x for x in msgs if isinstance(x, SnapshotReady)][-1]
    assert last.status.finished and src._fed == 2001


def test_replay_speed_steps_through_the_ladder():
    src = replay(playing=False, start_ns=0)
    for _ in range(3):
        src.command("speed", 1)
    src.command("speed", -1)
    msgs = run_source(src, lambda m: len(m) >= 2)
    assert src.speed == 5.0


def test_replay_sorts_batches_given_out_of_order():
    a = synthetic_events(10, t0_ns=10 * S, span_ns=S)
    b = synthetic_events(10, t0_ns=0, span_ns=S)
    src = ReplaySource.from_batches([a, b], META, model_factory=HandModel)
    assert np.all(np.diff(src.events["ts_ns"].astype(np.int64)) >= 0)
