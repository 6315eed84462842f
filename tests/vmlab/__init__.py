"""Stock-kernel lab: boot Debian kernels under QEMU with the host root shared read-only and run
commands in them as root (fentry and kprobes work there; the development host forbids both).

Modules:
  kernels    which kernels, fetched from Debian's packages into a cache outside the repository
  initramfs  the tiny busybox initramfs that mounts the host root and switches into it
  qemu       boot one kernel, run one command, return output + exit status (hard timeout)
  harness    the command line: ``python -m tests.vmlab.harness --kernel 6.1 -- CMD``
  guest/     programs that run INSIDE the guest (workloads, the lab driver)
  bpftrace   the independent cross-check (bpftrace program + parser)
  report     regenerate tests/vmlab/RESULTS.md from the last lab run
"""
