#!/bin/bash
# In a 6.1 lab guest: the ftrace drop counter's check against a drop made on purpose.
#   R=/var/cache/fputrace-vmlab/kernels/6.1.0-57-amd64/root
#   make -C $R/usr/src/linux-headers-6.1.0-57-amd64 M=$PWD/tests/vmlab/experiments/ftrace_drop modules
#   python -m tests.vmlab.harness --kernel 6.1 -- bash $PWD/tests/vmlab/experiments/ftrace_drop/run.sh
# For depth 1 and 2 (recursion locks the module's ftrace callback on __do_sys_getppid holds while it
# uses the kernel FPU): 1000 getppid() calls; kprobe_profile of an ftrace-based kprobe on
# kernel_fpu_begin_mask and an int3 kprobe at +5 (the next instruction on 6.1), and bpftrace's
# fentry (kfunc) and kprobe counts of the same function. Measured 2026-12-02 00:17 UTC (6.1.0-57,
# TCG, this script): depth 1: entry +1002, int3 +1002, fentry 1000, kprobe 1000: nothing dropped
# (ftrace lets one recursion through); depth 2: entry +1, int3 +1001, nmissed 0 on both, fentry
# 1000, kprobe 0.
set -e
B=$(dirname "$(readlink -f "$0")"); T=/sys/kernel/tracing
for depth in 1 2; do
  insmod "$B/fpurec.ko" depth=$depth
  echo "p:dp/entry kernel_fpu_begin_mask" >> $T/kprobe_events
  echo "p:dp/int3 kernel_fpu_begin_mask+5" >> $T/kprobe_events
  echo 1 > $T/events/dp/enable
  bpftrace -e 'BEGIN { printf("READY\n"); }
    kfunc:kernel_fpu_begin_mask /comm == "python3"/ { @fentry = count(); }
    kprobe:kernel_fpu_begin_mask /comm == "python3"/ { @kprobe = count(); }' > /tmp/bt.out 2>&1 &
  bt=$!
  for _ in $(seq 300); do grep -q READY /tmp/bt.out && break; sleep 1; done
  grep kernel_fpu_begin_mask /sys/kernel/debug/kprobes/list
  echo "depth $depth before:"; cat $T/kprobe_profile
  python3 -c "import os
for _ in range(1000): os.getppid()"
  echo "depth $depth after:"; cat $T/kprobe_profile
  kill -INT $bt; wait $bt || true
  grep '^@' /tmp/bt.out
  echo 0 > $T/events/dp/enable
  echo "-:dp/entry" >> $T/kprobe_events; echo "-:dp/int3" >> $T/kprobe_events
  rmmod fpurec
  dmesg | grep 'fpurec:' | tail -1
done
