"""``fputrace export --format csv|parquet``: exact CSV round trips, Parquet read back by DuckDB."""
from __future__ import annotations

import csv
import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fputrace
from fputrace.events import EVENT_DTYPE, Kind
from fputrace.export import parquet as parquet_export
from fputrace.export.csv import write_csv
from fputrace.export.parquet import write_parquet
from fputrace.importers import import_file
from fputrace.model import Model
from fputrace.recording import RecordingWriter

from .conftest import run_fputrace

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "fputrace" / "data" / "demo.fpt"
TASK_RECORDS = (Kind.COMM, Kind.TASK)

# Everything the import format can say: names changing at exec, a kernel thread, a fork child
# without a name of its own, equal timestamps, unsorted rows, a LOST gap, inferred events, a name
# that needs CSV quoting, and a name longer than the kernel's 15 bytes.
SCENARIO = """\
ts_ns,cpu,tid,tgid,kind,a0,a1,comm,kthread,inferred
1000,0,101,100,KFPU_BEGIN,0,0xffffffff81234560,bash,0,0
1100,0,101,100,XSAVE,0x207,2,bash,0,1
1200,0,101,100,KFPU_END,,0xffffffff81234560,bash,0,0
1300,0,101,100,FORK,102,102,bash,,0
1300,1,102,102,XRSTOR,0x207,0,,,0
1400,1,102,102,EXEC,0,0,"make, all",,0
1500,1,102,102,XSAVE,0x7,1,"make, all",,0
1500,0,101,100,SWITCH,7,1,bash,,0
1450,0,7,7,EXIT,0,0,kworker/0:1,1,0
1600,1,0,0,LOST,5,0,,,
1700,0,101,100,XRSTOR,0x207,1,a-name-longer-than-15,0,0
1800,0,101,100,USER_RETURN,0,0,a-name-longer-than-15,0,0
"""


def records(path) -> np.ndarray:
    parts = list(fputrace.load(path).batches())
    return np.concatenate(parts) if parts else np.zeros(0, EVENT_DTYPE)


def report_dict(batches, meta) -> dict:
    m = Model(meta)
    for b in batches:
        m.feed(b)
    return m.report().to_dict()


def round_trip(tmp_path, csv_text: str, name="in.csv"):
    """CSV -> import -> export -> import: the two recordings and the two exports."""
    src = tmp_path / name
    src.write_text(csv_text)
    first, second = tmp_path / "first.fpt", tmp_path / "second.fpt"
    import_file(str(src), str(first))
    out1, out2 = tmp_path / "first.csv", tmp_path / "second.csv"
    write_csv(fputrace.load(first), str(out1))
    import_file(str(out1), str(second))
    write_csv(fputrace.load(second), str(out2))
    return first, second, out1, out2


def same_records(a: np.ndarray, b: np.ndarray) -> bool:
    """The same events in the same order, and the same task-table records: each task's in the same
    order (records of different tasks at one nanosecond may swap: see fputrace/export/csv.py)."""
    ra, rb = np.isin(a["kind"], TASK_RECORDS), np.isin(b["kind"], TASK_RECORDS)
    if len(a) != len(b) or not (a[~ra] == b[~rb]).all():
        return False
    ka, kb = a[ra], b[rb]
    oa = np.lexsort((np.arange(len(ka)), ka["tid"]))
    ob = np.lexsort((np.arange(len(kb)), kb["tid"]))
    return bool((ka[oa] == kb[ob]).all())


def csv_rows(path) -> list[str]:
    return [line for line in Path(path).read_text().splitlines() if not line.startswith("#")]


def test_csv_round_trip_of_an_import_is_exact(tmp_path):
    first, second, out1, out2 = round_trip(tmp_path, SCENARIO)
    a, b = records(first), records(second)
    assert len(a) == len(b) and (a == b).all(), "import -> export -> import changed the records"
    assert same_records(a, b)
    assert (a["kind"] == Kind.COMM).sum() == 4      # bash, "make, all", kworker, the long name
    r1 = report_dict([a], fputrace.load(first).meta)
    r2 = report_dict([b], fputrace.load(second).meta)
    assert r1 == r2
    assert csv_rows(out1) == csv_rows(out2)          # and the export is a fixpoint
    lines = csv_rows(out1)
    assert lines[0] == "ts_ns,cpu,tid,tgid,kind,a0,a1,comm,kthread,inferred"   # unquoted header
    rows = list(csv.reader(lines[1:]))
    assert ["1400", "1", "102", "102", "EXEC", "0", "0", "make, all", "", "0"] in rows
    assert ["1300", "1", "102", "102", "XRSTOR", "519", "0", "", "", "0"] in rows  # unnamed child
    assert not any(r[4] in ("COMM", "TASK") for r in rows), "every record rides on a row"


def test_csv_command_line_and_report_equality(tmp_path):
    src = tmp_path / "s.csv"
    src.write_text(SCENARIO)
    assert run_fputrace("import", str(src), "-o", str(tmp_path / "a.fpt")).returncode == 0
    res = run_fputrace("export", str(tmp_path / "a.fpt"), "-o", str(tmp_path / "a.csv"))
    assert res.returncode == 0 and "rows (csv" in res.stderr, res.stderr
    assert run_fputrace("import", str(tmp_path / "a.csv"), "-o", str(tmp_path / "b.fpt")).returncode == 0
    reports = [json.loads(run_fputrace("report", str(tmp_path / f), "--format", "json").stdout)
               for f in ("a.fpt", "b.fpt")]
    for r in reports:
        r.pop("file")
    assert reports[0] == reports[1]
    piped = run_fputrace("export", str(tmp_path / "a.fpt"), "--format", "csv", "-o", "-")
    assert piped.returncode == 0 and piped.stdout == (tmp_path / "a.csv").read_text()


names = st.text(alphabet="ab ,\"é-", min_size=0, max_size=18)


@st.composite
def csv_scenarios(draw):
    kinds = ["SWITCH", "KFPU_BEGIN", "KFPU_END", "XSAVE", "XRSTOR", "USER_RETURN", "FORK", "EXEC",
             "EXIT", "LOST"]
    lines = ["ts_ns,cpu,tid,tgid,kind,a0,a1,comm,kthread,inferred"]
    for _ in range(draw(st.integers(1, 40))):
        tid = draw(st.sampled_from([1, 2, 3, 70]))
        kind = draw(st.sampled_from(kinds))
        a0 = draw(st.sampled_from([0, 0x207, 2**64 - 1] if kind in ("XSAVE", "XRSTOR")
                                  else [0, 1, 2, 3, 70]))
        a1 = draw(st.integers(0, 7))
        comm = draw(st.one_of(st.just(""), names))
        cell = '"' + comm.replace('"', '""') + '"' if comm else ""
        kthread = draw(st.sampled_from(["", "0", "1"]))
        lines.append(f"{draw(st.integers(0, 30)) * 10},{draw(st.integers(0, 2))},{tid},"
                     f"{draw(st.sampled_from([tid, 1]))},{kind},{a0},{a1},{cell},{kthread},"
                     f"{draw(st.sampled_from(['0', '1']))}")
    return "\n".join(lines) + "\n"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(csv_scenarios())
def test_csv_round_trip_is_exact_for_any_import(tmp_path, text):
    first, second, _, _ = round_trip(tmp_path, text)
    a, b = records(first), records(second)
    assert same_records(a, b)
    assert report_dict([a], fputrace.load(first).meta) == report_dict([b], fputrace.load(second).meta)


def test_csv_round_trip_of_a_real_recording_keeps_every_event_and_name(tmp_path):
    """The bundled real recording (fentry, stock 6.12 kernel): its /proc task table names hundreds
    of tasks that never appear in an event; they become explicit COMM/TASK rows."""
    if not DEMO.exists():
        pytest.skip("fputrace/data/demo.fpt (the bundled real recording) is not in this tree")
    tr = fputrace.load(DEMO)
    out = tmp_path / "demo.csv"
    write_csv(tr, str(out))
    import_file(str(out), str(tmp_path / "back.fpt"))
    back = fputrace.load(tmp_path / "back.fpt")
    pd.testing.assert_frame_equal(tr.events, back.events)
    pd.testing.assert_frame_equal(tr.tasks, back.tasks)
    a, b = records(DEMO), records(tmp_path / "back.fpt")
    assert np.isin(a["kind"], TASK_RECORDS).sum() == np.isin(b["kind"], TASK_RECORDS).sum()
    # the analysis of the rebuilt records, with the recording's own meta, is the original's
    assert report_dict([b], tr.meta) == report_dict(tr.batches(), tr.meta)
    meta_line = next(line for line in out.read_text().splitlines() if line.startswith("#meta "))
    assert json.loads(meta_line[len("#meta "):]) == json.loads(json.dumps(tr.meta, default=str))


@pytest.mark.parametrize("argv,code,text", [
    (["export", "MISSING.fpt", "-o", "x.csv"], 1, "MISSING.fpt: no such file"),
    (["export", "DEMO", "-o", "x.txt"], 2, "cannot tell the format from 'x.txt'"),
    (["export", "DEMO", "-o", "nodir/x.csv"], 2, "does not exist"),
    (["export", "DEMO", "--format", "parquet", "-o", "-"], 2, "cannot go to standard output"),
    (["export", "DEMO", "--format", "xml", "-o", "x.xml"], 2, "invalid choice"),
    (["export", "DEMO", "-o", "DEMO"], 2, "--format"),
])
def test_wrong_use_is_one_line(tmp_path, argv, code, text):
    if not DEMO.exists():
        pytest.skip("fputrace/data/demo.fpt (the bundled real recording) is not in this tree")
    argv = [str(DEMO) if a == "DEMO" else a for a in argv]
    res = run_fputrace(*argv, cwd=tmp_path)
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.returncode == code and len(lines) == 1 and text in lines[0], res.stderr
    assert not list(tmp_path.iterdir()), "a failed export left a file behind"


@pytest.mark.parametrize("fmt", ["csv", "parquet", "perfetto"])
def test_a_full_disk_leaves_no_file_and_says_so_in_one_line(tmp_path, fmt, need_root):
    """An export that cannot be finished (a real ENOSPC: a 64 KiB tmpfs) leaves neither the file
    nor its .partial behind, and says why in one line."""
    if not DEMO.exists():
        pytest.skip("fputrace/data/demo.fpt (the bundled real recording) is not in this tree")
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "fputrace-test", str(small)], check=True)
    try:
        res = run_fputrace("export", str(DEMO), "--format", fmt, "-o", str(small / f"x.{fmt}"))
        lines = [line for line in res.stderr.splitlines() if line.strip()]
        assert res.returncode == 1 and len(lines) == 1 and "No space left" in lines[0], res.stderr
        assert not list(small.iterdir()), "a failed export left a file behind"
    finally:
        subprocess.run(["umount", str(small)], check=True)


# ------------------------------------------------------------------------------- Parquet

def _copy_as_host(src: Path, dst: Path, host: str) -> Path:
    """The same recording as if made on another host (a second file for the fleet query)."""
    tr = fputrace.load(src)
    meta = {k: v for k, v in tr.meta.items()
            if k not in ("format", "format_version", "closed", "events", "truncated")}
    meta["host"] = host
    with RecordingWriter(dst, meta, background_flush=False) as w:
        for b in tr.batches():
            w.write(b)
    return dst


def readme_query() -> str:
    text = (ROOT / "README.md").read_text()
    m = re.search(r"<!-- duckdb-example -->\s*```sql\n(.*?)```", text, re.S)
    assert m, "README.md lost its DuckDB example (marker <!-- duckdb-example -->)"
    return m.group(1)


def test_parquet_read_by_duckdb_equals_the_report(tmp_path):
    duckdb = pytest.importorskip("duckdb", reason="duckdb is a test dependency: run ./setup.sh")
    if not DEMO.exists():
        pytest.skip("fputrace/data/demo.fpt (the bundled real recording) is not in this tree")
    fleet = tmp_path / "fleet"
    fleet.mkdir()
    hosts = {"db1": _copy_as_host(DEMO, tmp_path / "db1.fpt", "db1"),
             "web2": _copy_as_host(DEMO, tmp_path / "web2.fpt", "web2")}
    for host, rec in hosts.items():
        res = run_fputrace("export", str(rec), "-o", str(fleet / f"{host}.parquet"))
        assert res.returncode == 0, res.stderr
    tr = fputrace.load(DEMO)
    rep = tr.report()
    tot = rep.totals
    con = duckdb.connect()
    one = str(fleet / "db1.parquet")
    n_records = sum(int(np.isin(b["kind"], TASK_RECORDS).sum()) for b in tr.batches())
    assert con.execute(f"SELECT count(*) FROM '{one}'").fetchone()[0] == tot["events"] - n_records
    per_kind = dict(con.execute(f"SELECT kind, count(*) FROM '{one}' GROUP BY kind").fetchall())
    assert per_kind["XSAVE"] == tot["xsave"] and per_kind["XRSTOR"] == tot["xrstor"]
    assert per_kind["KFPU_END"] == tot["kfpu_sections"]
    assert per_kind == tr.events["kind"].value_counts()[lambda s: s > 0].to_dict()
    lost = con.execute(f"SELECT coalesce(sum(a0), 0) FROM '{one}' WHERE kind = 'LOST'").fetchone()[0]
    assert lost == tot["lost_events"]
    # the README's fleet query, as printed there, over both hosts' files
    query = readme_query().replace("fleet/", f"{fleet}/")
    got = con.execute(query).df()
    assert set(got.host) == {"db1", "web2"}
    for host, rows in got.groupby("host"):
        assert rows.xsave.sum() == tot["xsave"] and rows.xrstor.sum() == tot["xrstor"], host
        assert rows.kfpu_sections.sum() == tot["kfpu_sections"]
        assert rows["bytes"].sum() == tot["xsave_bytes"] + tot["xrstor_bytes"]
        assert round(rows.kfpu_ms.sum() * 1e6) == rep.per_task.kfpu_ns.sum()
    # per task instead of per name (a task renamed at exec is one row of the report)
    by_tid = con.execute(query.replace("host, comm,", "host, tid,")).df()
    mine = by_tid[by_tid.host == "db1"].set_index("tid").sort_index()
    theirs = rep.per_task.groupby("tid")[["xsave", "xrstor", "kfpu_sections", "kfpu_ns"]].sum()
    theirs = theirs[(theirs.T != 0).any()]
    assert mine.index.tolist() == theirs.index.tolist()
    assert mine.xsave.tolist() == theirs.xsave.tolist() and mine.xrstor.tolist() == theirs.xrstor.tolist()
    assert mine.kfpu_sections.tolist() == theirs.kfpu_sections.tolist()
    assert (mine.kfpu_ms.fillna(0) * 1e6).round().astype("int64").tolist() == theirs.kfpu_ns.tolist()


def test_parquet_columns_names_and_metadata(tmp_path):
    if not DEMO.exists():
        pytest.skip("fputrace/data/demo.fpt (the bundled real recording) is not in this tree")
    tr = fputrace.load(DEMO)
    out = tmp_path / "d.parquet"
    write_parquet(tr, str(out))
    f = pq.ParquetFile(out)
    kv = f.schema_arrow.metadata
    assert json.loads(kv[b"fputrace.meta"]) == json.loads(json.dumps(tr.meta, default=str))
    assert kv[b"fputrace.kernel_release"].decode() == tr.meta["kernel_release"]
    assert kv[b"fputrace.capture_mode"] == b"fentry"
    df = f.read().to_pandas()
    ev = tr.events
    for col in ("ts_ns", "cpu", "tid", "tgid", "a0", "a1", "inferred"):
        assert (df[col].to_numpy() == ev[col].to_numpy()).all(), col
    assert df["kind"].astype(str).tolist() == ev["kind"].astype(str).tolist()
    rep = tr.report()
    # causes, bytes and section lengths are the model's: the report's numbers, row by row summed
    got = df[df.kind.isin(["XSAVE", "XRSTOR"])].groupby(["kind", "cause"], observed=True).size()
    want = rep.per_cause.set_index(["kind", "cause"])["count"]
    assert got.to_dict() == want.to_dict()
    assert df[~df.kind.isin(["XSAVE", "XRSTOR"])].cause.isna().all()
    assert df[df.kind == "XSAVE"]["bytes"].sum() == rep.totals["xsave_bytes"]
    assert df[df.kind == "XRSTOR"]["bytes"].sum() == rep.totals["xrstor_bytes"]
    assert set(df.xstate_class.dropna()) <= {"sse", "avx", "avx512", "amx"}
    assert df.kfpu_ns.sum() == rep.per_task.kfpu_ns.sum()
    assert df[df.kind != "KFPU_END"].kfpu_ns.isna().all()
    gens = df.groupby(["tid", "generation"]).size().reset_index()[["tid", "generation"]]
    assert set(map(tuple, rep.per_task[["tid", "generation"]].to_numpy().tolist())) <= \
        set(map(tuple, gens.to_numpy().tolist()))
    kf = df[df.kind.isin(["KFPU_BEGIN", "KFPU_END"])]
    assert kf.caller.notna().all() and kf.caller.str.contains(r"\+0x").all()    # symbolised
    names = tr.tasks.set_index("tid").comm
    last = df.groupby("tid").comm.last()
    # a task's last row carries its last name (the task table keeps the newest name)
    assert all(last[t] == names[t] for t in last.index if names.get(t))


def test_parquet_streams_in_bounded_memory(tmp_path):
    """Arrow's peak allocation while exporting 4x as many batches stays what one row group needs
    (each export in its own process: the pool's peak cannot be reset)."""
    import subprocess
    import sys
    rng = np.random.default_rng(1)

    def recording(path, nbatches):
        with RecordingWriter(path, {"host": "h"}, background_flush=False, max_batch_events=1 << 16) as w:
            for i in range(nbatches):
                b = np.zeros(1 << 16, EVENT_DTYPE)
                b["ts_ns"] = np.arange(i << 16, (i + 1) << 16)
                b["kind"] = rng.choice([Kind.XSAVE, Kind.XRSTOR, Kind.SWITCH], len(b))
                b["tid"] = rng.integers(1, 500, len(b))
                b["a0"] = 0x207
                w.write(b)
        return path

    probe = ("import sys, pyarrow as pa, fputrace\n"
             "from fputrace.export import parquet as p\n"
             "p.ROW_GROUP_ROWS = 1 << 16\n"
             "p.write_parquet(fputrace.load(sys.argv[1]), sys.argv[2])\n"
             "print(pa.default_memory_pool().max_memory())\n")
    peaks = []
    for n in (4, 16):
        rec = recording(tmp_path / f"r{n}.fpt", n)
        out = tmp_path / f"r{n}.parquet"
        res = subprocess.run([sys.executable, "-c", probe, str(rec), str(out)], capture_output=True,
                             text=True, timeout=300)
        assert res.returncode == 0, res.stderr
        peaks.append(int(res.stdout.split()[-1]))
        meta = pq.ParquetFile(out).metadata
        assert meta.num_rows == n << 16 and meta.num_row_groups == n
    assert peaks[1] <= 1.3 * peaks[0], f"arrow peak grew with the file: {peaks}"
