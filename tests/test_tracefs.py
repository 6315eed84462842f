"""A fresh machine without tracefs (issue 8.1): fputrace mounts it itself when root, says so in
``doctor``, and says exactly what is missing when it may not. Each test runs in a private mount
namespace (``unshare -m``) where tracefs (and debugfs) are unmounted first, so the host's own
mounts are untouched whatever happens."""
from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys

import pytest

from .conftest import fputrace_cmd

pytestmark = [pytest.mark.live]

# Unmount every tracefs/debugfs below /sys/kernel (stacked mounts too), and prove it.
UNMOUNT = r"""
set -e
for i in 1 2 3 4; do
  for m in /sys/kernel/debug/tracing /sys/kernel/tracing /sys/kernel/debug; do
    umount "$m" 2>/dev/null || true
  done
done
if grep -qE ' (tracefs|debugfs) ' /proc/self/mounts; then echo "still mounted:"; grep -E ' (tracefs|debugfs) ' /proc/self/mounts; exit 99; fi
test ! -e /sys/kernel/tracing/events
"""


@pytest.fixture(scope="module")
def need_unshare(need_root):
    if not shutil.which("unshare"):
        pytest.skip("unshare (util-linux) not installed: cannot make a private mount namespace")


def in_fresh_namespace(script: str, timeout: float = 180) -> subprocess.CompletedProcess:
    res = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", UNMOUNT + script],
                         capture_output=True, text=True, timeout=timeout)
    assert res.returncode != 99, f"could not unmount tracefs in the namespace: {res.stdout}"
    return res


def test_doctor_and_record_work_without_tracefs_and_say_they_mounted_it(need_bcc, need_unshare, tmp_path):
    fpt = shlex.join(fputrace_cmd())
    out = tmp_path / "fresh.fpt"
    res = in_fresh_namespace(f"""
{fpt} doctor --json > {tmp_path}/doctor.json
echo "doctor exit $?"
grep -E ' (tracefs|debugfs) ' /proc/self/mounts > {tmp_path}/mounts.txt || true
{fpt} record -q -o {out} --duration 1s -- sh -c 'sleep 0.3; /bin/true'
echo "record exit $?"
""")
    assert "doctor exit 0" in res.stdout, res.stdout + res.stderr
    assert "record exit 0" in res.stdout, res.stdout + res.stderr
    rep = json.loads((tmp_path / "doctor.json").read_text())
    assert rep["ok"] and rep["load"]["ok"] is True, rep["remedy"]
    assert rep["tracefs"] == {"path": "/sys/kernel/tracing",
                              "mounted_by_fputrace": ["tracefs at /sys/kernel/tracing"]}
    assert rep["checks"]["tracefs"]["ok"] and "fputrace mounted it" in rep["checks"]["tracefs"]["detail"]
    assert "/sys/kernel/tracing tracefs" in (tmp_path / "mounts.txt").read_text()
    import fputrace
    tr = fputrace.load(out)
    assert {"SWITCH", "XSAVE", "XRSTOR"} <= set(tr.events.kind.astype(str))
    assert tr.meta["tracefs"]["mounted_by_fputrace"] == [], \
        "doctor mounted it earlier in this namespace: record found it mounted"


def test_record_alone_mounts_tracefs(need_bcc, need_unshare, tmp_path):
    out = tmp_path / "alone.fpt"
    res = in_fresh_namespace(f"{shlex.join(fputrace_cmd())} record -q -o {out} --duration 0.5s")
    assert res.returncode == 0, res.stderr
    import fputrace
    meta = fputrace.load(out).meta
    assert meta["tracefs"] == {"path": "/sys/kernel/tracing",
                               "mounted_by_fputrace": ["tracefs at /sys/kernel/tracing"]}


def test_debugfs_fallback_where_sys_kernel_tracing_is_missing(need_root, need_unshare):
    """Kernels before 4.1 have no /sys/kernel/tracing: fputrace mounts debugfs and uses its
    tracing/ directory (which newer kernels automount as tracefs). The missing directory is
    simulated by pointing the module at a path that does not exist; the mounts are real."""
    code = ("from pathlib import Path; from fputrace.capture import tracefs as t; "
            "t.TRACING = Path('/nonexistent/tracing'); s = t.find(); "
            "print(s.path, '|', s.mounted, '|', s.detail)")
    res = in_fresh_namespace(f"{shlex.quote(sys.executable)} -c {shlex.quote(code)}")
    assert res.returncode == 0, res.stderr
    path, mounted, detail = (x.strip() for x in res.stdout.strip().split("|"))
    assert path == "/sys/kernel/debug/tracing", res.stdout
    assert mounted == "('debugfs at /sys/kernel/debug',)"
    assert "/nonexistent/tracing does not exist" in detail


def test_not_root_says_precisely_what_is_missing(need_root, need_unshare):
    if not shutil.which("setpriv"):
        pytest.skip("setpriv (util-linux) not installed: cannot drop to an unprivileged user")
    res = in_fresh_namespace(f"cd /tmp && setpriv --reuid=65534 --regid=65534 --clear-groups "
                             f"{shlex.join(fputrace_cmd())} doctor --no-load --json")
    assert res.returncode == 1 and "Traceback" not in res.stderr, res.stderr
    rep = json.loads(res.stdout)
    detail = rep["checks"]["tracefs"]["detail"]
    assert not rep["checks"]["tracefs"]["ok"]
    assert "tracefs is not mounted" in detail and "mounting it needs root" in detail, detail
    assert rep["tracefs"]["mounted_by_fputrace"] == []
