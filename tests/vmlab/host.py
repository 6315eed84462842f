"""The lab on THIS host: realistic user workloads in tracepoint mode (the only mode the
development and CI kernels allow), each in its own window, cross-checked with bpftrace.

    python -m tests.vmlab.host            # run, analyse, store <cache>/results/host.json

Workloads (each prepared outside its window):
  cbuild   a parallel C build: Brotli's C library and tool from its sdist (fetched once with
           ``pip download`` into the cache), ``make -j<ncpu>``, one object per source file
  numpy    NumPy matrix products on OpenBLAS threads (the BLAS that NumPy's wheel ships)
  openssl  ``openssl speed -evp aes-256-gcm`` (AES-NI/VAES in user space, preempted by the rest)

bpftrace (tracepoints only: kprobes are forbidden here) counts per window and process what the
tracepoint mode records exactly: restores (x86_fpu_regs_activated) and context-switch saves
(x86_fpu_regs_deactivated right after that task's sched_switch). The windows and the analysis are
the guest lab's (guest/lab.py, analysis.py).
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

from . import kernels, qemu
from .guest import bpftrace_prog
from .guest.lab import mark, tail, wait_for

HOST_DIR = kernels.CACHE_DIR / "host"


def lab_results_dir() -> Path:
    from .lab import RESULTS_DIR
    return RESULTS_DIR
RESULT = lab_results_dir() / "host.json"
BROTLI_SDIST = "Brotli==1.1.0"
NUMPY_JOB = ("import numpy as np, time\n"
             "rng = np.random.default_rng(1)\n"
             "a = rng.standard_normal((1200, 1200)); b = rng.standard_normal((1200, 1200))\n"
             "for _ in range(8):\n    a = (a @ b) / 40.0\n"
             "print(float(abs(a).sum()))\n")
TRACEPOINTS = ("x86_fpu:x86_fpu_regs_activated", "x86_fpu:x86_fpu_regs_deactivated")


class Unavailable(RuntimeError):
    """A workload cannot be prepared here; the message says why."""


def brotli_sources(work: Path) -> Path:
    """Brotli's C sources (c/common, c/dec, c/enc, c/tools), unpacked from the Brotli sdist
    (downloaded once with pip, PyPI's ordinary client)."""
    src = work / "brotli-src"
    if (src / "c" / "enc").is_dir():
        return src
    dl = work / "sdist"
    dl.mkdir(parents=True, exist_ok=True)
    if not list(dl.glob("Brotli-*.tar.gz")):
        res = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:",
                              "--no-build-isolation", "-d", str(dl), BROTLI_SDIST], capture_output=True, text=True)
        if res.returncode != 0:
            raise Unavailable(f"pip download {BROTLI_SDIST} failed: {res.stderr.strip()[-300:]}")
    sdist = next(dl.glob("Brotli-*.tar.gz"))
    tmp = work / "unpack"
    shutil.rmtree(tmp, ignore_errors=True)
    with tarfile.open(sdist) as tf:
        members = [m for m in tf.getmembers() if (m.isfile() or m.isdir())
                   and not m.name.startswith("/") and ".." not in Path(m.name).parts]
        tf.extractall(tmp, members=members)     # plain files and folders inside tmp only
    c = next(tmp.glob("Brotli-*/c"), None)
    if c is None or not (c / "enc").is_dir():
        raise Unavailable(f"{sdist.name} holds no c/enc sources")
    shutil.rmtree(src, ignore_errors=True)
    src.mkdir(parents=True)
    shutil.copytree(c, src / "c")
    shutil.rmtree(tmp, ignore_errors=True)
    return src


def prepare_cbuild(work: Path) -> list[str]:
    """Brotli's library (31 translation units) and its command-line tool, one object per file,
    ``make -j<ncpu>``; cleaned first, so the window sees the whole build."""
    if shutil.which("make") is None or shutil.which("gcc") is None:
        raise Unavailable("make/gcc not installed (Debian make, gcc)")
    src = brotli_sources(work)
    lib = sorted(str(p.relative_to(src).with_suffix(".o")) for d in ("common", "dec", "enc")
                 for p in (src / "c" / d).glob("*.c"))
    (src / "Makefile").write_text(
        "CFLAGS = -O2 -Ic/include\n"
        f"OBJS = {' '.join(lib)}\n"
        "brotli: c/tools/brotli.o $(OBJS)\n\t$(CC) -o $@ $^ -lm\n"
        "%.o: %.c\n\t$(CC) $(CFLAGS) -c $< -o $@\n"
        "clean:\n\trm -f brotli c/tools/brotli.o $(OBJS)\n")
    subprocess.run(["make", "-s", "-C", str(src), "clean"], capture_output=True)
    return ["make", "-s", "-C", str(src), f"-j{os.cpu_count() or 2}", "brotli"]


def prepare_numpy(work: Path) -> list[str]:
    py = str(qemu.REPO_DIR / ".venv" / "bin" / "python")
    res = subprocess.run([py, "-c", "import numpy; print(numpy.__version__)"], capture_output=True, text=True)
    if res.returncode != 0:
        raise Unavailable("numpy is not importable in the venv (run ./setup.sh)")
    return ["env", f"OPENBLAS_NUM_THREADS={os.cpu_count() or 2}", py, "-c", NUMPY_JOB]


def prepare_openssl(work: Path) -> list[str]:
    if shutil.which("openssl") is None:
        raise Unavailable("openssl not installed (Debian openssl)")
    return ["openssl", "speed", "-seconds", "3", "-bytes", "16384", "-evp", "aes-256-gcm"]


WORKLOADS = {"cbuild": prepare_cbuild, "numpy": prepare_numpy, "openssl": prepare_openssl}


def run_host(log=print) -> dict:
    """Run every host workload under one tracepoint-mode recorder and bpftrace; analyse; store."""
    HOST_DIR.mkdir(parents=True, exist_ok=True)
    out = Path(qemu.new_run_dir()) / "out"
    out.mkdir(parents=True)
    result: dict = {"kernel": {"label": "host", "release": platform.release(), "accel": "none"},
                    "started_wall": time.time(), "run_dir": str(out.parent), "workloads": [], "prepared": {}}
    t_start = time.monotonic()
    plan = []
    for name, prepare in WORKLOADS.items():
        try:
            plan.append((name, prepare(HOST_DIR)))
            result["prepared"][name] = {"ready": True}
        except Unavailable as err:
            result["prepared"][name] = {"ready": False, "error": str(err)}
        log(f"[host] {name}: {result['prepared'][name]}")
    tps = [tp for tp in TRACEPOINTS if Path("/sys/kernel/tracing/events", *tp.split(":")).is_dir()]
    prog = bpftrace_prog.program({}, tps, switch_saves=True)
    (out / "bpftrace.bt").write_text(prog)
    bt_log = out / "bpftrace.out"
    bt = subprocess.Popen(["bpftrace", str(out / "bpftrace.bt")], stdout=open(bt_log, "w"),
                          stderr=subprocess.STDOUT, start_new_session=True)
    fpt = str(qemu.REPO_DIR / ".venv" / "bin" / "fputrace")
    rec_log = out / "record-tracepoint.log"
    rec = subprocess.Popen([fpt, "record", "--mode", "tracepoint", "-o", str(out / "tracepoint.fpt")],
                           stdout=open(rec_log, "w"), stderr=subprocess.STDOUT, start_new_session=True)
    try:
        why_bt = wait_for(bt_log, bpftrace_prog.READY, bt, 120)
        why_rec = wait_for(rec_log, "Tracing FPU", rec, 300)
        result["bpftrace"] = {"ready": not why_bt, "error": why_bt and f"{why_bt}: {tail(bt_log)}", "probes": {}}
        result["recorders"] = {"tracepoint": {"ready": not why_rec, "error": why_rec and f"{why_rec}: {tail(rec_log)}"}}
        if not why_bt and not why_rec:
            time.sleep(0.5)
            for k, (name, argv) in enumerate(plan, 1):
                mark(k)
                t0 = time.monotonic()
                res = subprocess.run(argv, capture_output=True, text=True)
                os.sync()
                time.sleep(0.3)
                mark(0)
                (out / f"workload-{name}.log").write_text(res.stdout + res.stderr)
                result["workloads"].append({"name": name, "argv": argv, "window": k, "returncode": res.returncode,
                                            "wall_s": round(time.monotonic() - t0, 2),
                                            "output_tail": (res.stdout + res.stderr).strip()[-300:]})
                log(f"[host] workload {name}: rc={res.returncode} {time.monotonic() - t0:.1f}s")
                time.sleep(0.2)
    finally:
        for proc in (rec, bt):
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    text = bt_log.read_text(errors="replace")
    result["bpftrace"].update(returncode=bt.returncode, counts=bpftrace_prog.parse(text),
                              windows=bpftrace_prog.windows(text), lost=bpftrace_prog.lost_lines(text))
    result["recorders"]["tracepoint"].update(returncode=rec.returncode, log=tail(rec_log, 6))
    guest_like = {"bpftrace": result["bpftrace"], "workloads": result["workloads"],
                  "recorders": result["recorders"]}
    from .lab import _jsonable, analyse
    result.update(analyse(out.parent, guest_like))
    result["kernel"]["guest_wall_s"] = round(time.monotonic() - t_start, 1)
    result["finished_wall"] = time.time()
    result = _jsonable(result)
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(result, indent=1))
    return result


def load_result() -> dict | None:
    return json.loads(RESULT.read_text()) if RESULT.exists() else None


if __name__ == "__main__":
    r = run_host()
    print(f"host: {len(r['workloads'])} workloads, rows={len(r.get('rows', []))} -> {RESULT}")
