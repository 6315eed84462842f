"""``fputrace stat``: intervals that add up to the report, perf-stat-style lines, live counts of a
known workload, wrong use; and the bcc-style histogram in ``fputrace report``."""
from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path

import pytest

import fputrace
from fputrace.export.log2hist import log2_hist

from .conftest import run_fputrace
from .test_exporter import PINGPONG

DEMO = Path(__file__).resolve().parent.parent / "fputrace" / "data" / "demo.fpt"
LINE = re.compile(r"^\s+(\d+\.\d{9})\s+([\d,.]+)\s+(ms)?\s+(.+)$")


@pytest.fixture(scope="module")
def demo():
    if not DEMO.exists():
        pytest.skip("fputrace/data/demo.fpt (the bundled real recording) is not in this tree")
    tr = fputrace.load(DEMO)
    return tr, tr.report()


def test_replay_intervals_add_up_to_the_report(demo):
    tr, rep = demo
    res = run_fputrace("stat", "--replay", str(DEMO), "-I", "5000", "--json", "--top", "2")
    assert res.returncode == 0, res.stderr
    rows = [json.loads(line) for line in res.stdout.splitlines()]
    stamps = [b["ts_ns"] for b in tr.batches() if len(b)]
    first, last = int(stamps[0][0]), int(stamps[-1][-1])
    # one row per 5 s boundary reached by a record, and the last (partial) one
    assert len(rows) == (last - first) // 5_000_000_000 + 1
    assert all(abs(r["interval_s"] - 5) < 1e-9 for r in rows[:-1]) and rows[-1]["interval_s"] <= 5
    for key in ("xsave", "xrstor", "avoidable_xrstor", "kfpu_sections", "xsave_bytes", "xrstor_bytes",
                "lost_events", "events"):
        assert sum(r[key] for r in rows) == rep.totals[key], key
    assert sum(r["kfpu_ns"] for r in rows) == rep.per_task.kfpu_ns.sum()
    busy = max(rows, key=lambda r: r["xsave"])
    assert len(busy["top_tasks"]) == 2
    assert busy["top_tasks"][0]["xsave"] >= busy["top_tasks"][1]["xsave"]
    # the busiest task of the busiest interval: its increase, as the report's per-task row shows
    # for the whole recording, can only be smaller or equal
    t = busy["top_tasks"][0]
    whole = rep.per_task[(rep.per_task.tid == t["tid"])].xsave.sum()
    assert 0 < t["xsave"] <= whole


def test_replay_text_lines_are_perf_stat_style(demo):
    _, rep = demo
    res = run_fputrace("stat", "--replay", str(DEMO), "-I", "10000", "--count", "3")   # of its 40 s
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0].startswith("#") and "counts" in lines[0]
    parsed = [LINE.match(x) for x in lines[1:]]
    assert all(parsed), [x for x, m in zip(lines[1:], parsed) if not m]
    times = sorted({float(m.group(1)) for m in parsed})
    assert times == [10.0, 20.0, 30.0], "--count 3: three intervals, at 10 s steps of trace time"
    xsave = [int(m.group(2).replace(",", "")) for m in parsed if m.group(4) == "XSAVE"]
    assert len(xsave) == 3 and sum(xsave) <= rep.totals["xsave"]


def test_summary_without_interval_is_the_report(demo):
    _, rep = demo
    res = run_fputrace("stat", "--replay", str(DEMO), "--json")
    assert res.returncode == 0, res.stderr
    (one,) = [json.loads(x) for x in res.stdout.splitlines()]
    for key in ("xsave", "xrstor", "kfpu_sections", "lost_events"):
        assert one[key] == rep.totals[key]
    assert one["kfpu_hist"] == [{k: int(v) for k, v in r.items()} for r in
                                rep.kfpu_hist.to_dict(orient="records")]
    text = run_fputrace("stat", "--replay", str(DEMO)).stdout
    assert f"{rep.totals['xsave']:,}      XSAVE" in text
    assert "\n".join(log2_hist(rep.kfpu_hist)) in text


@pytest.mark.parametrize("argv,text", [
    (["-I", "5"], "at least 10 ms"),
    (["-I", "x"], "not a number of milliseconds"),
    (["--count", "3"], "--count counts intervals"),
    (["--count", "0", "-I", "100"], "at least 1"),
    (["--replay", "DEMO", "--", "true"], "--replay reads a recording"),
    (["oops"], "put the command to run after '--'"),
])
def test_wrong_use_is_one_line_exit_2(argv, text):
    argv = [str(DEMO) if a == "DEMO" else a for a in argv]
    res = run_fputrace("stat", *argv)
    lines = [x for x in res.stderr.splitlines() if x.strip()]
    assert res.returncode == 2 and len(lines) == 1 and text in lines[0], res.stderr


def test_report_text_has_a_bcc_style_log2_histogram(demo):
    _, rep = demo
    out = run_fputrace("report", str(DEMO), "--top", "3").stdout
    hist = log2_hist(rep.kfpu_hist)
    assert hist[0].split() == ["nsecs", ":", "count", "distribution"]
    assert "\n".join(hist) in out
    rows = [re.match(r"\s*(\d+) -> (\d+)\s+: (\d+)\s+\|(\**)\s*\|$", x) for x in hist[1:]]
    assert all(rows)
    counts = {int(m.group(1)): int(m.group(3)) for m in rows}
    want = dict(zip(rep.kfpu_hist.lo_ns.tolist(), rep.kfpu_hist["count"].tolist()))
    assert {k: v for k, v in counts.items() if v} == want
    peak = max(want.values())
    assert all(len(m.group(4)) == int(m.group(3)) * 40 // peak for m in rows)


def test_log2_hist_fills_gaps_between_buckets():
    import pandas as pd
    lines = log2_hist(pd.DataFrame({"lo_ns": [1024, 8192], "hi_ns": [2048, 16384], "count": [4, 1]}))
    assert [x.split(":")[0].split() for x in lines[1:]] == [["1024", "->", "2047"], ["2048", "->", "4095"],
                                                            ["4096", "->", "8191"], ["8192", "->", "16383"]]
    assert lines[1].endswith("|" + "*" * 40 + "|") and lines[4].endswith("|" + "*" * 10 + " " * 30 + "|")
    assert log2_hist(pd.DataFrame({"lo_ns": [], "hi_ns": [], "count": []})) == []


@pytest.mark.live
@pytest.mark.slow
def test_live_stat_counts_a_known_workload(need_bcc, tmp_path):
    """``fputrace stat --json -- CMD`` around the pipe ping-pong of tests/test_exporter.py: both
    processes are among the busiest tasks listed (--top 20: other work on a shared host may be
    busier), each with at least one switch save per message."""
    n = 3000
    script = tmp_path / "pingpong.py"
    script.write_text(PINGPONG)
    link = tmp_path / "fpt-pingpong"
    link.symlink_to(os.path.realpath(sys.executable))
    cpu = sorted(os.sched_getaffinity(0))[-1]
    res = run_fputrace("stat", "--json", "--top", "20", "--mode", "tracepoint", "--",
                       str(link), str(script), str(n), str(cpu), timeout=180)
    assert res.returncode == 0, res.stderr
    assert "Tracing FPU save/restore (mode: tracepoint)" in res.stderr
    (one,) = [json.loads(x) for x in res.stdout.splitlines()]
    mine = [t for t in one["top_tasks"] if t["comm"] == "fpt-pingpong"]
    assert len(mine) == 2, one["top_tasks"]
    for t in mine:
        assert n <= t["xsave"] <= 1.15 * n + 100 and n <= t["xrstor"] <= 1.15 * n + 100, t
    assert one["xsave"] >= 2 * n and one["lost_events"] == 0


@pytest.mark.live
def test_live_intervals_and_exit_status_of_the_command(need_bcc):
    res = run_fputrace("stat", "-I", "200", "--json", "--mode", "tracepoint", "--", "sh", "-c",
                       "sleep 1; exit 3", timeout=120)
    assert res.returncode == 3, res.stderr                      # the command's own status
    rows = [json.loads(x) for x in res.stdout.splitlines()]
    assert len(rows) >= 4, rows                                  # ~1 s in 200 ms steps
    assert all(0 < r["interval_s"] <= 0.5 for r in rows[:-1])
    assert all(b["time_s"] > a["time_s"] for a, b in zip(rows, rows[1:]))
    res = run_fputrace("stat", "-I", "100", "--count", "2", "--mode", "tracepoint", timeout=120)
    assert res.returncode == 0, res.stderr
    times = {float(m.group(1)) for m in map(LINE.match, res.stdout.splitlines()[1:]) if m}
    assert len(times) == 2
