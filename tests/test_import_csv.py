"""``fputrace import`` of the documented CSV of normalised events."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fputrace
from fputrace.errors import FileFormatError
from fputrace.events import FLAG_INFERRED, KIND_NAMES, Kind
from fputrace.importers import import_file

from .conftest import run_fputrace

SCENARIO = """\
# the SPEC 5.3 worked example, roughly: A saves for kernel FPU use twice, then returns
ts_ns,cpu,tid,tgid,kind,a0,a1,comm,kthread,inferred

1000,0,101,100,KFPU_BEGIN,0,0xffffffff81234560,A,0,0
1100,0,101,100,xsave,0x207,2,A,0,1
1200,0,101,100,Kfpu_End,,0xffffffff81234560,A,0,0
1500,0,101,100,SWITCH,7,1,A,,0
1400,0,7,7,EXIT,0,0,kworker/0:1,1,0
1600,1,0,0,LOST,5,0,,,
1700,0,101,100,XRSTOR,18446744073709551615,1,A2,0,0
"""


def load_csv(tmp_path, text, name="s.csv", **kw):
    src = tmp_path / name
    src.write_text(text)
    out = tmp_path / "s.fpt"
    import_file(str(src), str(out), **kw)
    return fputrace.load(out)


def test_scenario_csv_round_trip(tmp_path):
    tr = load_csv(tmp_path, SCENARIO)
    ev = tr.events
    assert ev["ts_ns"].tolist() == [1000, 1100, 1200, 1400, 1500, 1600, 1700]   # sorted on import
    assert ev["kind"].tolist() == ["KFPU_BEGIN", "XSAVE", "KFPU_END", "EXIT", "SWITCH", "LOST", "XRSTOR"]
    assert ev["a0"].tolist()[1] == 0x207 and ev["a0"].tolist()[2] == 0       # hex, empty = 0
    assert int(ev["a0"].iloc[-1]) == 2**64 - 1
    assert ev["inferred"].tolist() == [False, True, False, False, False, False, False]
    tasks = tr.tasks.set_index("tid")
    assert tasks.loc[101, "comm"] == "A2" and tasks.loc[101, "tgid"] == 100     # last name wins
    assert bool(tasks.loc[7, "kthread"]) and not bool(tasks.loc[101, "kthread"])
    assert tr.meta["source"] == "csv" and tr.meta["lost_per_cpu"] == {"1": 5}
    assert tr.meta["nr_cpus"] == 2 and tr.meta["start_ns"] == 1000 and tr.meta["end_ns"] == 1700


def test_auto_detection_and_cli(tmp_path):
    src = tmp_path / "s.csv"
    src.write_text(SCENARIO)
    out = tmp_path / "o.fpt"
    res = run_fputrace("import", str(src), "-o", str(out))
    assert res.returncode == 0 and "(csv)" in res.stderr, res.stderr
    assert len(fputrace.load(out).events) == 7


def test_kernel_release_gives_recorded_policy(tmp_path):
    tr = load_csv(tmp_path, SCENARIO, kernel_release="4.19.0-27-amd64")
    assert tr.meta["recorded_policy"] == "eager"


@pytest.mark.parametrize("text,match", [
    ("", r"s.csv: empty: no CSV header"),
    ("ts_ns,cpu,tid,tgid,kind,a0\n", r"s.csv:1: CSV header lacks column\(s\) a1"),
    ("ts_ns,cpu,tid,tgid,kind,a0,a1,colour\n", r"s.csv:1: unknown CSV column\(s\) colour"),
    ("ts_ns,cpu,tid,tgid,kind,a0,a1\n", r"s.csv: no events after the CSV header"),
    ("ts_ns,cpu,tid,tgid,kind,a0,a1\n1,0,1,1,XSAVE,0,0\n2,0,1,1,XSAVES,0,0\n", r"s.csv:3: kind = 'XSAVES' is not one of"),
    ("ts_ns,cpu,tid,tgid,kind,a0,a1\n1,0,1,1,XSAVE,zz,0\n", r"s.csv:2: a0 = 'zz' is not an integer"),
    ("ts_ns,cpu,tid,tgid,kind,a0,a1\n-1,0,1,1,XSAVE,0,0\n", r"s.csv:2: ts_ns = '-1' is out of range"),
    ("ts_ns,cpu,tid,tgid,kind,a0,a1\n1,70000,1,1,XSAVE,0,0\n", r"s.csv:2: cpu = '70000' is out of range"),
    ("ts_ns,cpu,tid,tgid,kind,a0,a1\n1,0,1,1,XSAVE,0x10000000000000000,0\n", r"s.csv:2: a0 = .* is out of range"),
    ("ts_ns,cpu,tid,tgid,kind,a0,a1\n1,0,1,1,XSAVE,0\n", r"s.csv:2: 6 fields, the header has 7"),
    ("ts_ns,cpu,tid,tgid,kind,a0,a1,kthread\n1,0,1,1,XSAVE,0,0,yes\n", r"s.csv:2: kthread = 'yes' must be 0 or 1"),
])
def test_bad_csv_is_one_error_naming_file_and_line(tmp_path, text, match):
    with pytest.raises(FileFormatError, match=match):
        load_csv(tmp_path, text, fmt="csv")


def test_bad_csv_through_the_cli_is_one_line_exit_1(tmp_path):
    src = tmp_path / "b.csv"
    src.write_text("ts_ns,cpu,tid,tgid,kind,a0,a1\n1,0,1,1,NOPE,0,0\n")
    res = run_fputrace("import", str(src), "-o", str(tmp_path / "o.fpt"))
    assert res.returncode == 1 and res.stderr.count("\n") == 1
    assert "b.csv:2: kind = 'NOPE'" in res.stderr and "Traceback" not in res.stderr


FACT_KINDS = [k for k in Kind if k not in (Kind.COMM, Kind.TASK)]


@st.composite
def csv_rows(draw):
    n = draw(st.integers(1, 40))
    rows = []
    for _ in range(n):
        rows.append((draw(st.integers(0, 2**64 - 1)), draw(st.integers(0, 2**16 - 1)),
                     draw(st.integers(0, 2**32 - 1)), draw(st.integers(0, 2**32 - 1)),
                     draw(st.sampled_from(FACT_KINDS)), draw(st.integers(0, 2**64 - 1)),
                     draw(st.integers(0, 2**64 - 1)), draw(st.booleans())))
    return rows


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(csv_rows(), st.booleans())
def test_property_any_csv_imports_exactly_in_time_order(tmp_path, rows, hexa):
    fmt_int = (lambda v: hex(v)) if hexa else str
    text = "ts_ns,cpu,tid,tgid,kind,a0,a1,inferred\n" + "".join(
        f"{ts},{cpu},{tid},{tgid},{kind.name.lower()},{fmt_int(a0)},{fmt_int(a1)},{int(inf)}\n"
        for ts, cpu, tid, tgid, kind, a0, a1, inf in rows)
    tr = load_csv(tmp_path, text)
    want = sorted(rows, key=lambda r: r[0])          # stable, as documented
    got = np.concatenate(list(tr.batches()))
    assert [(int(e["ts_ns"]), int(e["cpu"]), int(e["tid"]), int(e["tgid"]), KIND_NAMES[int(e["kind"])],
             int(e["a0"]), int(e["a1"]), bool(e["flags"] & FLAG_INFERRED)) for e in got] == \
        [(ts, cpu, tid, tgid, kind.name, a0, a1, inf) for ts, cpu, tid, tgid, kind, a0, a1, inf in want]
