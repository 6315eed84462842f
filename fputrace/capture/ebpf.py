"""The hidden ``--ebpf`` flag: print the BPF source and the exact flags bcc would get, then exit."""
from __future__ import annotations

import sys

from .features import Probe, host_features
from .loader import final_cflags, render
from .options import CaptureOptions
from .plan import make_plan


def print_ebpf(opts: CaptureOptions) -> int:
    """Compiles and loads nothing: where only a test load could tell whether fentry attaches,
    the flags assume it does not (a verdict cached for this boot is used) and say so."""
    feat = host_features()
    if not feat.fentry.tested:
        feat.set_fentry(Probe(False, "not tested (--ebpf loads nothing)", tested=False))
    if not feat.tp_btf.tested:
        feat.set_tp_btf(Probe(False, "not tested (--ebpf loads nothing)", tested=False))
    plan = make_plan(feat, opts.mode, opts.programs)
    from .ringbuf import choose
    cflags = final_cflags(plan.cflags + opts.filter_cflags(), choose(feat, opts.transport, opts.pages, opts.buffer_pages is not None).cflags())
    head, _, source = render(cflags).partition("\n")
    sys.stdout.write(head + "\n")
    untested = [n for n, p in (("fentry", feat.fentry), ("tp_btf", feat.tp_btf)) if not p.tested]
    if untested:
        sys.stdout.write(f"// {' and '.join(untested)} not tested (--ebpf loads nothing): these flags assume "
                         f"{'they are' if len(untested) > 1 else 'it is'} refused; `fputrace doctor` tests it\n")
    sys.stdout.write(source)
    for sym, fn in plan.kprobes:
        sys.stdout.write(f"// attach_kprobe(event={sym!r}, fn_name={fn!r})\n")
    return 0
