"""The lab harness itself on a real guest: exit status, output, files through the run dir, and the
two ways a guest can go wrong (kernel panic, hang) coming back as results, not as hangs."""
from __future__ import annotations

import os
import shutil

import pytest

from tests.vmlab import kernels, qemu

pytestmark = [pytest.mark.vmlab, pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def kernel():
    if os.geteuid() != 0:
        pytest.skip("needs root (kernel cache in /var/cache, dpkg -x)")
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86_64 not installed (Debian qemu-system-x86; run ./setup.sh)")
    try:
        return kernels.fetch("6.1")
    except kernels.FetchError as err:
        pytest.skip(f"kernel 6.1 could not be fetched from the Debian archive: {err}")


def test_exit_status_output_and_run_dir(kernel):
    res = qemu.run(kernel, "uname -r; echo from-guest > $VMLAB_RUNDIR/note; "
                           "test -e /lib/modules/$(uname -r)/modules.dep && test -e /sys/kernel/btf/vmlinux; "
                           "exit 7", timeout_s=300, images=[])
    assert res.returncode == 7, res.reason or res.output
    assert kernel.release in res.output
    assert (res.run_dir / "note").read_text() == "from-guest\n"


def test_guest_panic_is_a_result(kernel):
    res = qemu.run(kernel, "echo 1 > /proc/sys/kernel/sysrq; echo c > /proc/sysrq-trigger; sleep 60",
                   timeout_s=300, images=[])
    assert res.returncode is None and res.panicked and not res.timed_out, res.console[-500:]
    assert "panic" in res.reason
    oops = res.oops()        # what run_lab keeps of a panic before it boots once more
    assert oops["panic"] == "Kernel panic - not syncing: sysrq triggered crash", oops
    assert any(f.startswith("sysrq_handle_crash") for f in oops["frames"]), oops
    assert "Comm: bash" in oops["task"], oops
    assert res.wall_s < 250        # ended by panic=-1 + -no-reboot, not by the timeout


def test_hang_is_cut_by_the_timeout(kernel):
    res = qemu.run(kernel, "sleep 600", timeout_s=60, images=[])
    assert res.returncode is None and res.timed_out
    assert "timed out" in res.reason


def test_guest_stall_is_a_result(kernel):
    """A guest whose heartbeat stops (here: the command beats three times, then only sleeps; in
    the lab, a kernel spinning both vCPUs) is killed after stall_s, not held until the timeout."""
    res = qemu.run(kernel, "for i in 1 2 3; do touch $VMLAB_RUNDIR/heartbeat; sleep 4; done; sleep 600",
                   timeout_s=400, stall_s=20, images=[])
    assert res.stalled and not res.timed_out and res.returncode is None, (res.reason, res.console[-500:])
    assert "stalled" in res.reason and res.stalled_s >= 20, res.reason   # quiet > 20 s, rounded to 0.1 s
    assert res.wall_s < 300, res.wall_s
