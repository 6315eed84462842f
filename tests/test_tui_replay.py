"""Replay in bounded memory: a recording streamed batch by batch (by offset, from the index) gives
the model exactly what ``fputrace.load`` gives it, and every way of getting to a time (forward,
back through a checkpoint, back from the start) ends in the same model state."""
from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from fputrace.model import Model
from fputrace.recording import RecordingWriter, open_recording
from fputrace.trace import load
from fputrace.tui import replay
from fputrace.tui.activity import RecentActivity
from fputrace.tui.replay import EventCursor, FileBatches, ReplaySource, open_replay

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from bench_model_tracegen import TraceGen  # noqa: E402

pytestmark = pytest.mark.tui
S = 1_000_000_000


def write_recording(path, events: int, batch: int, late: bool = False) -> dict:
    """A generated trace written by the real writer in batches of ``batch`` events; ``late``:
    every fifth handover also carries events older than ones already on disk (late events)."""
    gen = TraceGen(cpus=4, tasks=48, seed=3, policy="deferred", mode="probe")
    meta = dict(gen.meta(), host="replay-test")
    chunks = list(gen.chunks(events, chunk=batch))
    with RecordingWriter(path, meta, max_batch_events=batch, background_flush=False) as w:
        held = None
        for i, c in enumerate(chunks):
            if late and i % 5 == 1 and len(c) > 10:
                held, c = c[:10].copy(), c[10:]          # hand these over after the next chunk
            w.write(c)
            w.flush()
            if held is not None and i % 5 == 2:
                w.write(held)
                w.flush()
                held = None
    return meta


def report_json(model: Model) -> dict:
    return json.loads(json.dumps(model.report().to_dict(), default=str))


def model_of(path, until_ns: int | None = None) -> Model:
    """The reference: ``fputrace.load``'s batches (whole-trace sort for late files), cut at a time."""
    tr = load(path)
    model = Model(tr.meta, history=RecentActivity())
    for b in tr.batches():
        model.feed(b if until_ns is None else b[b["ts_ns"] <= until_ns])
    return model


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    path = tmp_path_factory.mktemp("replay") / "gen.fpt"
    write_recording(path, 300_000, batch=20_000)
    return path


@pytest.fixture(scope="module")
def late_recording(tmp_path_factory):
    path = tmp_path_factory.mktemp("replay-late") / "late.fpt"
    write_recording(path, 120_000, batch=10_000, late=True)
    assert open_recording(path).meta.get("late_events"), "the writer should have counted them"
    return path


def test_a_batch_read_by_offset_is_the_batch_the_stream_gives(recording):
    rec = open_recording(recording)
    streamed = list(rec.batches())
    assert len(rec.index) == len(streamed) > 10
    for ref, want in zip(rec.index, streamed):
        got = rec.read_batch(ref)
        assert ref.first_ts_ns == int(want["ts_ns"][0]) and ref.events == len(want)
        assert np.array_equal(got, want)


@pytest.mark.parametrize("piece", [1 << 16, 3_000], ids=["whole-batches", "pieces"])
@pytest.mark.parametrize("which", ["recording", "late_recording"])
def test_the_cursor_hands_out_the_events_load_gives_in_the_same_order(which, piece, request,
                                                                       monkeypatch):
    monkeypatch.setattr(replay, "PIECE_EVENTS", piece)      # batches decoded a slice at a time
    path = request.getfixturevalue(which)
    want = np.concatenate(list(load(path).batches()))
    rec = open_recording(path)
    cursor = EventCursor(FileBatches(rec))
    largest = max(r.events for r in rec.index)
    got, held = [], 0
    ts = want["ts_ns"]
    for until in np.linspace(int(ts[0]) - 1, int(ts[-1]), 37).astype(np.int64).tolist() + \
            [int(ts[-1])]:
        while (chunk := cursor.next_chunk(until)) is not None:
            assert int(chunk["ts_ns"][-1]) <= until
            got.append(chunk)
            held = max(held, len(cursor.state.pending))
    assert np.array_equal(np.concatenate(got), want)
    assert held <= 2 * min(largest, piece)  # bounded by a piece or two, never the whole file


def run_replay(src, until, timeout_s=60.0):
    msgs, stop = [], threading.Event()
    t = threading.Thread(target=src.run, args=(msgs.append, stop.is_set), daemon=True)
    t.start()
    deadline = time.monotonic() + timeout_s
    while not until(msgs) and time.monotonic() < deadline:
        time.sleep(0.02)
    stop.set()
    t.join(30)
    assert not t.is_alive()
    return msgs


def at_rest(src, rel_ns):
    return lambda msgs: src.target_ns == src.position_ns == rel_ns and msgs


@pytest.mark.parametrize("which", ["recording", "late_recording"])
def test_going_back_through_a_checkpoint_or_from_the_start_ends_in_the_same_state(which, request,
                                                                                  monkeypatch):
    monkeypatch.setattr(replay, "PIECE_EVENTS", 3_000)      # checkpoints in the middle of batches
    path = request.getfixturevalue(which)
    src = open_replay(str(path), start_ns=None, playing=False, checkpoint_events=25_000)
    t0, end = src.t0_ns, src.duration_ns
    mid, early = end // 2, end // 5
    assert run_replay(src, at_rest(src, end))          # opens at the end, paused
    assert len(src.checkpoints) >= 3
    src.command("goto", mid)                           # back: restores the checkpoint before mid
    run_replay(src, at_rest(src, mid))
    assert src.restores == 1 and src.rebuilds == 1
    assert report_json(src.model) == report_json(model_of(path, t0 + mid))
    src.command("goto", early)
    src.command("goto", end)                           # forward past the checkpoints again
    run_replay(src, at_rest(src, end))
    assert report_json(src.model) == report_json(model_of(path))
    fresh = open_replay(str(path), start_ns=mid, playing=False, checkpoint_events=0)
    run_replay(fresh, at_rest(fresh, mid))             # no checkpoints: fed from the start
    assert fresh.restores == 0 and not fresh.checkpoints
    assert report_json(fresh.model) == report_json(src_model_at(path, mid))


def src_model_at(path, rel_ns):
    src = open_replay(str(path), start_ns=rel_ns, playing=False)
    run_replay(src, at_rest(src, rel_ns))
    return src.model


def test_checkpoints_stay_within_their_memory_budget(recording):
    """30 checkpoints wanted (one per 10k events), room for a few: they are thinned out, spaced
    further apart, and together never exceed the budget."""
    budget = 8_000_000                                 # a model of this trace is ~1.7 MB
    src = open_replay(str(recording), start_ns=None, playing=False, checkpoint_events=10_000,
                      checkpoint_bytes=budget)
    run_replay(src, at_rest(src, src.duration_ns))
    assert len(src.checkpoints) >= 2 and sum(c.nbytes for c in src.checkpoints) <= budget
    assert src.checkpoint_events > 10_000


def test_playing_faster_than_the_model_follows_plays_as_fast_as_it_can(recording):
    """At a speed the model cannot follow (here: one that takes 3 µs an event) the clock runs
    from where feeding got to: pictures keep coming and the position only moves forward."""
    class SlowModel(Model):
        def feed(self, batch):
            time.sleep(len(batch) * 3e-6)
            super().feed(batch)
    meta = open_recording(recording).meta
    src = ReplaySource(FileBatches(open_recording(recording)), meta, start_ns=0, playing=True,
                       speed=1e6, model_factory=lambda: SlowModel(meta))
    def at_end(msgs):
        return any(getattr(m, "status", None) and m.status.finished for m in msgs)
    msgs = run_replay(src, at_end)
    positions = [m.status.position_ns for m in msgs if hasattr(m, "status")]
    assert len(positions) >= 3                         # pictures on the way, not only at the end
    assert positions == sorted(positions) and positions[-1] == src.duration_ns
    assert src.fed_events == sum(r.events for r in open_recording(recording).index)


def test_a_model_copy_goes_its_own_way(recording):
    """Model.copy() (what a checkpoint holds): feeding the copy leaves the original untouched, and
    the copy fed the rest ends where a model fed everything does."""
    batches = list(load(recording).batches())
    half = len(batches) // 2
    original = Model(load(recording).meta, history=RecentActivity())
    for b in batches[:half]:
        original.feed(b)
    before = report_json(original)
    clone = original.copy()
    for b in batches[half:]:
        clone.feed(b)
    assert report_json(original) == before
    assert report_json(clone) == report_json(model_of(recording))
    assert clone.snapshot(10 * S).cpus == model_of(recording).snapshot(10 * S).cpus
