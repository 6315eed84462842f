"""The hidden ``--ebpf`` flag: print the BPF source and the exact flags bcc would get, then exit."""
from __future__ import annotations

import sys

from .features import host_features
from .loader import final_cflags, render
from .options import CaptureOptions
from .plan import make_plan


def print_ebpf(opts: CaptureOptions) -> int:
    feat = host_features()
    plan = make_plan(feat, opts.mode)
    cflags = final_cflags(plan.cflags + opts.filter_cflags(), feat.ringbuf.ok, opts.pages)
    sys.stdout.write(render(cflags))
    for sym, fn in plan.kprobes:
        sys.stdout.write(f"// attach_kprobe(event={sym!r}, fn_name={fn!r})\n")
    return 0
