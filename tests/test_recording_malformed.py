"""Every kind of file that is not a readable recording: one clear line naming the file and what is
wrong (FileFormatError, which the CLI prints as one line with exit 1), never a traceback, never a
partial answer presented as whole."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import fputrace
from fputrace.errors import FileFormatError
from fputrace.events import EVENT_DTYPE
from fputrace.recording import RecordingWriter, open_recording
from fputrace.recording import format as fmt

from .test_recording import make_events


def good_recording(path, n=5000, batches=3):
    ev = make_events(n)
    with RecordingWriter(path, {"host": "x"}, background_flush=False) as w:
        for part in np.array_split(ev, batches):
            w.write(part)
            w.flush()
    return ev


def arrow_stream(path, meta: dict | None, fields=fmt.SCHEMA_FIELDS):
    schema = pa.schema(fields, metadata=None if meta is None else {b"fputrace": json.dumps(meta)})
    with pa.ipc.new_stream(str(path), schema) as w:
        w.write_batch(pa.RecordBatch.from_pylist([], schema=schema))


def error_of(path) -> str:
    with pytest.raises(FileFormatError) as info:
        fputrace.load(path)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(str(path)), msg
    return msg


def test_missing_file(tmp_path):
    assert "no such file" in error_of(tmp_path / "nope.fpt")


def test_directory(tmp_path):
    assert "is a directory" in error_of(tmp_path)


def test_empty_file(tmp_path):
    p = tmp_path / "e.fpt"
    p.write_bytes(b"")
    assert "empty file" in error_of(p)


def test_random_bytes(tmp_path):
    p = tmp_path / "r.fpt"
    p.write_bytes(np.random.default_rng(0).bytes(4096))
    assert "not an fputrace recording: unrecognised binary data" in error_of(p)


def test_random_bytes_after_a_stream_prefix(tmp_path):
    p = tmp_path / "r.fpt"
    p.write_bytes(b"\xff\xff\xff\xff" + np.random.default_rng(1).bytes(4096))
    msg = error_of(p)
    assert "corrupt" in msg or "truncated" in msg


@pytest.mark.parametrize("kind", ["parquet", "arrow-file", "csv", "elf", "perf.data", "gzip"])
def test_foreign_formats_are_named(tmp_path, kind):
    p = tmp_path / f"x.{kind}"
    table = pa.table({"ts_ns": [1, 2]})
    if kind == "parquet":
        pq.write_table(table, p)
        expect = "Parquet"
    elif kind == "arrow-file":
        with pa.ipc.new_file(str(p), table.schema) as w:
            w.write_table(table)
        expect = "Arrow IPC *file*"
    elif kind == "csv":
        p.write_text("ts_ns,cpu,tid,tgid,kind,a0,a1\n1,0,1,1,XSAVE,0,0\n")
        expect = "fputrace import"
    elif kind == "elf":
        shutil.copy("/bin/true", p)
        expect = "ELF"
    elif kind == "perf.data":
        p.write_bytes(b"PERFILE2" + bytes(200))
        expect = "perf script"
    else:
        import gzip
        p.write_bytes(gzip.compress(b"hello"))
        expect = "gzip"
    msg = error_of(p)
    assert "not an fputrace recording" in msg and expect in msg, msg


def test_arrow_stream_that_is_not_a_recording(tmp_path):
    p = tmp_path / "s.arrows"
    arrow_stream(p, None)
    assert "without an fputrace header" in error_of(p)


def test_future_format_version(tmp_path):
    p = tmp_path / "f.fpt"
    arrow_stream(p, {"format": "fputrace-recording", "format_version": 2, "fputrace_version": "9.0"})
    msg = error_of(p)
    assert "format version 2 is newer" in msg and "upgrade fputrace" in msg


def test_missing_required_meta(tmp_path):
    p = tmp_path / "m.fpt"
    arrow_stream(p, {"format": "fputrace-recording", "format_version": 1})
    assert "lacks required field(s): fputrace_version" in error_of(p)


def test_header_that_is_not_json(tmp_path):
    p = tmp_path / "j.fpt"
    schema = pa.schema(fmt.SCHEMA_FIELDS, metadata={b"fputrace": b"{not json"})
    with pa.ipc.new_stream(str(p), schema) as w:
        w.write_batch(pa.RecordBatch.from_pylist([], schema=schema))
    assert "not valid JSON" in error_of(p)


def test_wrong_columns_for_the_version(tmp_path):
    p = tmp_path / "c.fpt"
    arrow_stream(p, {"format": "fputrace-recording", "format_version": 1, "fputrace_version": "0.1"},
                 fields=[("ts_ns", pa.uint64())])
    assert "columns are not those of format version 1" in error_of(p)


def test_truncated_inside_the_header(tmp_path):
    p = tmp_path / "t.fpt"
    good_recording(p)
    data = p.read_bytes()
    for cut in (3, 8, 40, 200):
        p.write_bytes(data[:cut])
        assert "truncated before its header was complete" in error_of(p)


def test_truncated_mid_batch_recovers_the_complete_batches_and_says_so(tmp_path, capsys):
    p = tmp_path / "t.fpt"
    ev = good_recording(p, n=6000, batches=3)
    third = open_recording(p)._batch_msgs[3]           # [0] is the empty header batch
    p.write_bytes(p.read_bytes()[:third.end - 100])    # inside the last batch of events
    tr = fputrace.load(p)
    assert tr.truncated and "cut short" in tr.meta["truncated_reason"]
    assert "incomplete recording" in capsys.readouterr().err
    assert len(tr.events) == 4000
    assert np.array_equal(tr.events["ts_ns"].to_numpy(), ev["ts_ns"][:4000])


def test_corrupt_batch_in_the_middle_is_an_error_not_a_partial_answer(tmp_path):
    p = tmp_path / "c.fpt"
    good_recording(p, n=30000, batches=3)
    rec = open_recording(p)
    second = rec._batch_msgs[2]                        # [0] is the empty header batch
    data = bytearray(p.read_bytes())
    mid = (second.offset + second.end) // 2
    data[mid:mid + 64] = bytes(64)                     # wipe part of a compressed body
    p.write_bytes(bytes(data))
    with pytest.raises(FileFormatError, match=f"corrupt batch at byte {second.offset}"):
        fputrace.load(p).events


def test_unsorted_batches_are_sorted_by_load(tmp_path):
    """Documented choice: the writer sorts each batch; events older than flushed ones are kept,
    counted in meta late_events, and load() / Trace.batches() sort the whole trace."""
    p = tmp_path / "u.fpt"
    ev = make_events(3000)
    with RecordingWriter(p, {}, background_flush=False) as w:
        w.write(ev[2000:])
        w.flush()
        w.write(ev[:2000])
    tr = fputrace.load(p)
    assert tr.meta["late_events"] == 2000
    assert np.array_equal(tr.events["ts_ns"].to_numpy(), ev["ts_ns"])
    streamed = np.concatenate(list(tr.batches()))
    assert np.array_equal(streamed, ev)


def test_cli_import_reports_a_bad_output_path_in_one_line(tmp_path):
    from .conftest import run_fputrace
    src = tmp_path / "e.csv"
    src.write_text("ts_ns,cpu,tid,tgid,kind,a0,a1\n1,0,5,5,XSAVE,0x2,1\n")
    res = run_fputrace("import", str(src), "-o", str(tmp_path / "missing-dir" / "x.fpt"))
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "cannot create recording" in res.stderr
