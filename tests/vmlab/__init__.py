"""Stock-kernel lab: boot Debian kernels under QEMU with the host root shared read-only and run
commands in them as root (fentry and kprobes work there; the development host forbids both).

Modules:
  kernels    which kernels, fetched from Debian's packages into a cache outside the repository
  initramfs  the tiny busybox initramfs that mounts the host root and switches into it
  images     read-only ext4 images of the trees the guest reads most (venv, Python, headers)
  qemu       boot one kernel, run one command, return output + exit status (hard timeout)
  harness    the command line: ``python -m tests.vmlab.harness --kernel 6.1 -- CMD``
  guest/     programs that run INSIDE the guest: the lab driver, workloads, kernel subsystems,
             the bpftrace cross-check, the demo recorder
  lab        one run per kernel: boot, drive guest/lab.py, analyse, store the result
  analysis   recordings cut into bpftrace's windows, compared per process
  host       the same on this host (tracepoint mode): a C build, NumPy/BLAS, openssl
  report     tests/vmlab/RESULTS.md, SUMMARY.md and docs/CASES.md (cases.py) from the stored runs
  demo       re-record the bundled fputrace/data/demo.fpt
"""
