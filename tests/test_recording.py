"""Recording files: exact round trips, the writer's guarantees (mode 0600, flush at least once per
second, meta updates), and reading what a killed recorder leaves behind."""
from __future__ import annotations

import os
import stat
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fputrace.errors import FileFormatError
from fputrace.events import EVENT_DTYPE, Kind
from fputrace.recording import RecordingWriter, open_recording


def make_events(n: int, seed: int = 0, start_ns: int = 10**12) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ev = np.zeros(n, EVENT_DTYPE)
    ev["ts_ns"] = start_ns + np.cumsum(rng.integers(0, 20_000, n)).astype(np.uint64)
    ev["cpu"] = rng.integers(0, 4, n)
    ev["tid"] = rng.integers(1, 500, n)
    ev["tgid"] = np.where(rng.random(n) < 0.5, ev["tid"], rng.integers(1, 500, n))
    ev["kind"] = rng.integers(1, 12, n)
    ev["flags"] = rng.integers(0, 2, n)
    ev["a0"] = rng.integers(0, 2**63, n, dtype=np.uint64) * np.uint64(2)
    ev["a1"] = rng.choice(np.array([0, 1, 0xffffffff81234560, 2**64 - 1], np.uint64), n)
    return ev


def read_back(path) -> np.ndarray:
    parts = list(open_recording(path).batches())
    return np.concatenate(parts) if parts else np.zeros(0, EVENT_DTYPE)


def test_round_trip_exact_and_meta(tmp_path):
    path = tmp_path / "r.fpt"
    ev = make_events(50_000)
    with RecordingWriter(path, {"clock": "CLOCK_MONOTONIC", "host": "h"}) as w:
        w.write(ev[:20_000])
        w.update_meta(lost_per_cpu={"0": 0, "1": 7})
        w.write(ev[20_000:])
        w.update_meta(end_ns=int(ev["ts_ns"][-1]))
    assert w.bytes_written == path.stat().st_size
    rec = open_recording(path)
    assert np.array_equal(read_back(path), ev)
    assert rec.num_events == len(ev)
    m = rec.meta
    assert (m["format"], m["format_version"], m["clock"], m["host"]) == ("fputrace-recording", 1, "CLOCK_MONOTONIC", "h")
    assert m["lost_per_cpu"] == {"0": 0, "1": 7} and m["end_ns"] == int(ev["ts_ns"][-1])
    assert m["closed"] is True and m["truncated"] is False and m["events"] == len(ev)


def test_file_mode_is_0600_even_over_an_existing_file(tmp_path):
    path = tmp_path / "r.fpt"
    path.write_text("old")
    path.chmod(0o644)
    old_umask = os.umask(0)
    try:
        RecordingWriter(path, {}).close()
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert open_recording(path).num_events == 0


def test_large_time_gaps_and_unsorted_batches(tmp_path):
    """Gaps beyond 2**32 ns start new batches; an unsorted batch is sorted (stable) on write."""
    ev = make_events(1000)
    ev["ts_ns"][500:] += np.uint64(3 * 2**32)          # a 12.9 s idle gap
    ev["ts_ns"][999] += np.uint64(2**40)
    shuffled = ev[np.random.default_rng(1).permutation(len(ev))]
    path = tmp_path / "r.fpt"
    with RecordingWriter(path, {}, background_flush=False) as w:
        w.write(shuffled)
    got = read_back(path)
    assert np.array_equal(got, ev[np.argsort(ev["ts_ns"], kind="stable")])


def test_events_older_than_flushed_ones_are_kept_and_counted(tmp_path):
    ev = make_events(100)
    path = tmp_path / "r.fpt"
    with RecordingWriter(path, {}, background_flush=False) as w:
        w.write(ev[50:])
        w.flush()
        w.write(ev[:50])                                    # late: before everything flushed
    rec = open_recording(path)
    assert rec.meta["late_events"] == 50
    assert sorted(read_back(path)["ts_ns"].tolist()) == ev["ts_ns"].tolist()


def test_background_flush_persists_within_a_second_without_further_writes(tmp_path):
    path = tmp_path / "r.fpt"
    ev = make_events(10)
    w = RecordingWriter(path, {}, flush_interval_s=0.2)
    try:
        w.write(ev)
        w.update_meta(lost_per_cpu={"0": 1})
        deadline = 50               # the meta may land one flush after the events: wait for both

        def persisted():
            r = open_recording(path, warn=False)
            return r.num_events == 10 and r.meta.get("lost_per_cpu") == {"0": 1}
        while deadline and not persisted():
            time.sleep(0.1)
            deadline -= 1
        rec = open_recording(path, warn=False)
        assert rec.num_events == 10, "events not flushed by the background thread"
        assert rec.meta["lost_per_cpu"] == {"0": 1}
        # readable while still being written, but never presented as whole
        assert rec.meta["truncated"] is True and "did not close" in rec.meta["truncated_reason"]
    finally:
        w.close()
    assert open_recording(path).meta["truncated"] is False


def test_meta_update_without_events_is_persisted(tmp_path):
    path = tmp_path / "r.fpt"
    with RecordingWriter(path, {"a": 1}, background_flush=False) as w:
        w.update_meta(a=2, symbols={"0xffffffff81000000": "aesni_enc"})
    assert open_recording(path).meta["a"] == 2
    assert open_recording(path).meta["symbols"] == {"0xffffffff81000000": "aesni_enc"}


def test_writer_rejects_wrong_dtype_and_use_after_close(tmp_path):
    w = RecordingWriter(tmp_path / "r.fpt", {})
    with pytest.raises(TypeError):
        w.write(np.zeros(3, np.uint64))
    w.close()
    with pytest.raises(ValueError):
        w.write(make_events(1))
    w.close()                                               # idempotent


def test_writer_cannot_create_gives_one_line_error(tmp_path):
    from fputrace.errors import FputraceError
    with pytest.raises(FputraceError, match="cannot create recording"):
        RecordingWriter(tmp_path / "no-such-dir" / "r.fpt", {})


@st.composite
def event_streams(draw):
    """A ts-sorted event stream with arbitrary field values, cut into arbitrary chunks."""
    n = draw(st.integers(0, 300))
    ev = np.zeros(n, EVENT_DTYPE)
    gaps = draw(st.lists(st.sampled_from([0, 1, 999, 2**31, 2**32 - 1, 2**32, 2**45]), min_size=n, max_size=n))
    start = draw(st.integers(0, 2**62))
    ev["ts_ns"] = (start + np.cumsum(np.array(gaps, dtype=object))).astype(np.uint64) if n else []
    u64 = st.integers(0, 2**64 - 1)
    ev["a0"] = draw(st.lists(u64, min_size=n, max_size=n))
    ev["a1"] = draw(st.lists(u64, min_size=n, max_size=n))
    ev["tid"] = draw(st.lists(st.integers(0, 2**32 - 1), min_size=n, max_size=n))
    ev["tgid"] = draw(st.lists(st.integers(0, 2**32 - 1), min_size=n, max_size=n))
    ev["cpu"] = draw(st.lists(st.integers(0, 2**16 - 1), min_size=n, max_size=n))
    ev["kind"] = draw(st.lists(st.integers(0, 255), min_size=n, max_size=n))
    ev["flags"] = draw(st.lists(st.integers(0, 255), min_size=n, max_size=n))
    cuts = sorted(draw(st.lists(st.integers(0, n), max_size=6)))
    flushes = draw(st.lists(st.booleans(), min_size=len(cuts) + 1, max_size=len(cuts) + 1))
    return ev, cuts, flushes


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(event_streams())
def test_property_any_stream_survives_write_and_read_exactly(tmp_path, stream):
    ev, cuts, flushes = stream
    path = tmp_path / "p.fpt"
    with RecordingWriter(path, {"k": "v"}, background_flush=False, max_batch_events=97) as w:
        for chunk, do_flush in zip(np.split(ev, cuts), flushes):
            w.write(chunk)
            if do_flush:
                w.flush()
    assert np.array_equal(read_back(path), ev)
    rec = open_recording(path)
    assert rec.num_events == len(ev) and rec.meta["k"] == "v" and not rec.meta["truncated"]


def test_size_per_event_on_a_realistic_stream_is_small(tmp_path):
    """Not a benchmark (see benchmarks/bench_file.py): a guard that the narrow encoding and zstd
    are really in use. Context switches over 300 tids on 2 CPUs, few xfeatures values and callers."""
    from benchmarks.bench_file import realistic_stream
    ev = realistic_stream(200_000, seed=3)
    path = tmp_path / "r.fpt"
    with RecordingWriter(path, {}, background_flush=False) as w:
        w.write(ev)
    assert path.stat().st_size / len(ev) <= 8.0
    assert np.array_equal(read_back(path), ev)


def test_a_file_cut_inside_its_last_batch_keeps_the_complete_ones_and_says_so(tmp_path, capsys):
    """Each cut inside the last message keeps all earlier batches and says 'truncated'."""
    ev = make_events(3000)
    path = tmp_path / "r.fpt"
    with RecordingWriter(path, {}, background_flush=False) as w:
        w.write(ev[:1000])
        w.flush()
        w.write(ev[1000:2000])
        w.flush()
        first_two_end = w.bytes_written
        w.write(ev[2000:])
    data = path.read_bytes()
    cut_path = tmp_path / "cut.fpt"
    last_end = len(data) - 8                                # before the end-of-stream marker
    offsets = sorted(set(range(first_two_end, last_end, max(1, (last_end - first_two_end) // 40))))
    for cut in offsets:
        cut_path.write_bytes(data[:cut])
        rec = open_recording(cut_path)
        got = read_back(cut_path)
        if cut == first_two_end:
            assert "did not close" in rec.meta["truncated_reason"]
        else:
            assert "cut short" in rec.meta["truncated_reason"], cut
        assert rec.meta["truncated"] is True
        assert np.array_equal(got, ev[:2000]), cut
    err = capsys.readouterr().err
    assert "incomplete recording" in err and str(cut_path) in err
    for cut in range(last_end, len(data) + 1):               # only the end marker cut: complete
        cut_path.write_bytes(data[:cut])
        assert open_recording(cut_path).meta["truncated"] is False
        assert np.array_equal(read_back(cut_path), ev)


def test_meta_with_numpy_values_is_stored_as_plain_json(tmp_path):
    path = tmp_path / "r.fpt"
    with RecordingWriter(path, {"nr_cpus": np.int64(2), "mask": np.uint64(0x207)}) as w:
        w.update_meta(lost_per_cpu={0: np.int64(3)}, cpus=np.arange(2), flags={"a"})
        with pytest.raises(TypeError, match="cannot be stored as JSON"):
            w.update_meta(bad=object())
    m = open_recording(path).meta
    assert (m["nr_cpus"], m["mask"], m["lost_per_cpu"], m["cpus"], m["flags"]) == (2, 0x207, {"0": 3}, [0, 1], ["a"])


def test_a_producer_error_inside_the_with_block_marks_the_file_incomplete(tmp_path, capsys):
    path = tmp_path / "r.fpt"
    with pytest.raises(RuntimeError):
        with RecordingWriter(path, {}) as w:
            w.write(make_events(10))
            raise RuntimeError("ring buffer gone")
    rec = open_recording(path)
    assert rec.num_events == 10 and rec.meta["truncated"] is True
    assert "stopped on an error (RuntimeError: ring buffer gone)" in rec.meta["truncated_reason"]
    assert "incomplete recording" in capsys.readouterr().err
    with pytest.raises(KeyboardInterrupt):                  # Ctrl-C is the normal way to stop
        with RecordingWriter(path, {}) as w:
            w.write(make_events(10))
            raise KeyboardInterrupt
    assert open_recording(path).meta["truncated"] is False
