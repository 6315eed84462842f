"""``fputrace exporter`` as a user and as Prometheus meet it: wrong use, a live scrape of a known
workload, SIGTERM, and a real Prometheus server running every query of the Grafana dashboard."""
from __future__ import annotations

import json
import math
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from .conftest import bpf_prog_ids, fputrace_cmd, run_fputrace

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "fputrace" / "data" / "demo.fpt"
DASHBOARD = ROOT / "dashboards" / "fputrace-grafana.json"

# Two processes pinned to one CPU exchange N one-byte messages: each is switched out with live FPU
# state at least once per message (see tests/test_capture_live.py). Run through a link named
# fpt-pingpong, so that the exec gives both that name (a later prctl rename is not traced).
PINGPONG = r"""
import os, sys
n, cpu = int(sys.argv[1]), int(sys.argv[2])
os.sched_setaffinity(0, {cpu})
a_r, a_w = os.pipe(); b_r, b_w = os.pipe()
x = 1.0
pid = os.fork()
if pid == 0:
    for _ in range(n):
        os.read(a_r, 1); x *= 1.000001; os.write(b_w, b"y")
    os._exit(0)
for _ in range(n):
    os.write(a_w, b"x"); x *= 1.000001; os.read(b_r, 1)
os.waitpid(pid, 0)
"""


def pingpong(tmp_path, n: int) -> None:
    script = tmp_path / "pingpong.py"
    script.write_text(PINGPONG)
    link = tmp_path / "fpt-pingpong"
    if not link.exists():
        link.symlink_to(os.path.realpath(sys.executable))
    cpu = sorted(os.sched_getaffinity(0))[-1]
    subprocess.run([str(link), str(script), str(n), str(cpu)], check=True, timeout=120)


class Exporter:
    """A real ``fputrace exporter`` process on a free loopback port."""

    def __init__(self, *args: str):
        self.proc = subprocess.Popen([*fputrace_cmd(), "exporter", "--listen", "127.0.0.1:0", *args],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self.wait_for(r"http://127\.0\.0\.1:(\d+)/metrics", 120):
            self.stop()
            raise AssertionError(f"the exporter did not start serving: {''.join(self.lines)}")
        self.port = int(re.search(r"127\.0\.0\.1:(\d+)/metrics", "".join(self.lines)).group(1))

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line)

    def wait_for(self, pattern: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if re.search(pattern, "".join(self.lines)):
                return True
            if self.proc.poll() is not None and not self._reader.is_alive():
                return False
            time.sleep(0.1)
        return False

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def scrape(self) -> dict[str, dict[tuple, float]]:
        text = urllib.request.urlopen(f"http://{self.target}/metrics", timeout=30).read().decode()
        out: dict[str, dict[tuple, float]] = {}
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
        return out

    def stop(self, sig=signal.SIGTERM, timeout=60) -> tuple[int, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(timeout=10)
        return self.proc.returncode, "".join(self.lines)


def _value(samples: dict[tuple, float], **labels) -> float:
    return sum(v for k, v in samples.items() if all(dict(k).get(a) == b for a, b in labels.items()))


# ------------------------------------------------------------------ wrong use

@pytest.mark.parametrize("listen", ["127.0.0.1", "127.0.0.1:http", "127.0.0.1:70000", "[zz::1]:9477",
                                    "a b:9477", ""])
def test_bad_listen_value_is_one_line_exit_2(listen):
    res = run_fputrace("exporter", "--listen", listen, "--replay", str(DEMO))
    lines = [x for x in res.stderr.splitlines() if x.strip()]
    assert res.returncode == 2 and len(lines) == 1 and "--listen" in lines[0], res.stderr


def test_port_in_use_is_one_line_exit_1():
    if not DEMO.exists():
        pytest.skip("fputrace/data/demo.fpt (the bundled real recording) is not in this tree")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        res = run_fputrace("exporter", "--listen", f"127.0.0.1:{port}", "--replay", str(DEMO))
    lines = [x for x in res.stderr.splitlines() if x.strip()]
    assert res.returncode == 1 and len(lines) == 1, res.stderr
    assert f"cannot listen on 127.0.0.1:{port}: the port is in use" in lines[0]


def test_speed_without_replay_and_a_bad_recording_are_one_line():
    res = run_fputrace("exporter", "--speed", "2")
    assert res.returncode == 2 and "--speed plays a recording" in res.stderr and res.stderr.count("\n") == 1
    res = run_fputrace("exporter", "--replay", "/etc/hostname", "--listen", "127.0.0.1:0")
    assert res.returncode == 1 and "not an fputrace recording" in res.stderr and res.stderr.count("\n") == 1


def test_live_start_without_root_is_one_line_exit_1():
    if os.geteuid() != 0:
        res = run_fputrace("exporter", "--listen", "127.0.0.1:0")
    else:
        try:
            pwd.getpwnam("nobody")
        except KeyError:
            pytest.skip("no user 'nobody' to run the exporter without root")
        probe = subprocess.run(["su", "nobody", "-s", "/bin/sh", "-c", f"test -r {sys.executable}"])
        if probe.returncode != 0:
            pytest.skip("the venv is not readable by 'nobody' (a private home directory)")
        env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
        env["HOME"] = "/nonexistent"
        res = subprocess.run(["su", "nobody", "-s", "/bin/sh", "-c",
                              f"cd / && {sys.executable} -m fputrace exporter --listen 127.0.0.1:0"],
                             capture_output=True, text=True, timeout=300, env=env)
    lines = [x for x in res.stderr.splitlines() if x.strip()]
    assert res.returncode == 1 and len(lines) == 1 and "root" in lines[0], res.stderr
    assert "Traceback" not in res.stderr


# ------------------------------------------------------------------ replay, served

def test_replay_is_served_parsed_and_stops_on_sigterm():
    if not DEMO.exists():
        pytest.skip("fputrace/data/demo.fpt (the bundled real recording) is not in this tree")
    import fputrace
    rep = fputrace.load(DEMO).report()
    exp = Exporter("--replay", str(DEMO), "--top-comms", "2")
    try:
        m = exp.scrape()
        assert _value(m["fputrace_xsave_total"]) == rep.totals["xsave"]
        assert len({dict(k)["comm"] for k in m["fputrace_xsave_total"]}) == 3      # 2 + other
        assert exp.scrape()["fputrace_xsave_total"] == m["fputrace_xsave_total"]   # totals: stable
        assert "process_cpu_seconds_total" in m                                      # its own cost
    finally:
        code, err = exp.stop()
    assert code == 0 and "Traceback" not in err, err


# ------------------------------------------------------------------ live


def _loaded_prog_ids() -> set[int]:
    out = subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True, text=True, check=True)
    return {p["id"] for p in json.loads(out.stdout or "[]")}


@pytest.mark.live
@pytest.mark.slow
def test_live_scrape_finds_a_known_workloads_saves_and_sigterm_detaches(need_bcc, tmp_path):
    if not shutil.which("bpftool"):
        pytest.skip("bpftool not installed (Debian bpftool); ./setup.sh installs it")
    n = 3000
    exp = Exporter("--mode", "tracepoint")
    try:
        ours = bpf_prog_ids(exp.proc.pid)
        assert ours and ours <= _loaded_prog_ids(), "the exporter holds no BPF programs"
        exp.scrape()                                    # the names busy before the workload
        pingpong(tmp_path, n)
        time.sleep(0.5)                                 # the reorder watermark (~100 ms)
        m = exp.scrape()
        saves = _value(m["fputrace_xsave_total"], comm="fpt-pingpong", cause="switch")
        restores = _value(m["fputrace_xrstor_total"], comm="fpt-pingpong")
        # two processes, each switched out with live state at least once per message
        assert 2 * n <= saves <= 2 * (1.15 * n + 100), saves
        assert 2 * n <= restores <= 2 * (1.15 * n + 100), restores
        info = dict(next(iter(m["fputrace_info"])))
        assert info["mode"] == "tracepoint" and info["source"] == "live"
        assert info["kernel_release"] == os.uname().release
        assert _value(m["fputrace_events_total"]) > 4 * n
        assert set(dict(k)["cpu"] for k in m["fputrace_lost_events_total"]) == \
            {str(c) for c in range(os.cpu_count())}
    finally:
        code, err = exp.stop()
    assert code == 0 and "Traceback" not in err, err
    deadline = time.monotonic() + 10               # freed after an RCU grace period
    while ours & _loaded_prog_ids() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not (ours & _loaded_prog_ids()), "BPF programs still loaded after SIGTERM"


# ------------------------------------------------------------------ a real Prometheus

def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title, PromQL) for every query of every panel of the Grafana dashboard."""
    dash = json.loads(DASHBOARD.read_text())
    out = []
    for p in dash["panels"]:
        for t in p.get("targets", []):
            out.append((p["title"], t["expr"]))
    return out


def _prom_get(base: str, path: str, **params):
    url = f"{base}{path}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.live
@pytest.mark.slow
def test_every_dashboard_query_returns_data_from_a_real_prometheus(need_bcc, tmp_path):
    """Debian's prometheus (installed by setup.sh), on 127.0.0.1 with a temporary config and TSDB,
    scrapes two exporters every second: this host live (tracepoint mode) and the bundled stock-6.12
    fentry recording played at 4x its pace (kernel-FPU callers and section lengths, which the
    tracepoint mode cannot time). Every panel's query, over the test's time range, must return at
    least one series with a finite value, as Grafana would draw it."""
    prom = shutil.which("prometheus")
    if not prom:
        pytest.skip("prometheus not installed (Debian prometheus); ./setup.sh installs it")
    if not DEMO.exists():
        pytest.skip("fputrace/data/demo.fpt (the bundled real recording) is not in this tree")
    live = Exporter("--mode", "tracepoint")
    replay = Exporter("--replay", str(DEMO), "--speed", "4")
    port = _free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n  - job_name: fputrace\n    static_configs:\n"
        f"      - targets: ['{live.target}', '{replay.target}']\n")
    server = subprocess.Popen([prom, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                               f"--web.listen-address=127.0.0.1:{port}"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    start = time.time()
    try:
        deadline = time.monotonic() + 60
        while True:                                   # until both targets are scraped
            try:
                up = _prom_get(base, "/api/v1/query", query="up")["data"]["result"]
                if len(up) == 2 and all(r["value"][1] == "1" for r in up):
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline and server.poll() is None, "prometheus did not come up"
            time.sleep(0.5)
        # the replay's kernel FPU traffic runs from ~20 s to ~38 s of the recording (5 s to 9.5 s at
        # 4x), the replay ends at ~10 s: several 1 s scrapes of every histogram bucket's increase
        pingpong(tmp_path, 2000)
        assert replay.wait_for("replayed to its end", 90), "".join(replay.lines)
        time.sleep(4)                                  # a few more scrapes of the final state
        end = time.time()
        empty = []
        for title, expr in dashboard_queries():
            q = expr.replace("$__rate_interval", "4s").replace("$instance", ".*")
            res = _prom_get(base, "/api/v1/query_range", query=q, start=start, end=end, step=1)
            assert res["status"] == "success", (title, q, res)
            values = [float(v) for r in res["data"]["result"] for _, v in r["values"]]
            if not any(math.isfinite(v) for v in values):
                empty.append(f"{title}: {q}")
        assert not empty, "dashboard queries without data:\n" + "\n".join(empty)
        # and the data are the workloads': the live host's pingpong, the replay's callers
        inst = _prom_get(base, "/api/v1/query", query="fputrace_info")["data"]["result"]
        assert {r["metric"]["source"] for r in inst} == {"live", "replay"}
        callers = _prom_get(base, "/api/v1/query", query="fputrace_kfpu_sections_total")["data"]["result"]
        assert any("sha256" in r["metric"]["caller"] for r in callers)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        for exp in (live, replay):
            code, err = exp.stop()
            assert code == 0, err
