"""fputrace calibrate: measure XSAVE/XRSTOR cycles per component set on this CPU, write a cost model."""
from __future__ import annotations

HELP = "measure XSAVE/XSAVEOPT/XSAVEC/XRSTOR cycles per component set on this CPU (cost model)"
EXAMPLES = """examples:
    fputrace calibrate                     # write the default cost model (used by estimate)
    fputrace calibrate -o xeon.json --runs 20000
    fputrace calibrate --sets sse,amx      # only these component sets
    fputrace estimate run.fpt --cost-model xeon.json

Component sets, each with the smaller ones live too: sse (x87/SSE only), avx (+YMM upper halves),
avx512 (+opmask, ZMM_Hi256, Hi16_ZMM), amx (+tile config and tile data; the benchmark asks the
kernel with arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)). Sets this CPU or kernel lacks
are left out, with the reason, in the file's "left_out". The kernel's XSAVES/XRSTORS cannot run in
user mode: XSAVEC and XRSTOR of the compacted area stand in for them (the file says which).

Needs a C compiler (cc/gcc, or $CC) the first time: the micro-benchmark is built into the cache
directory. Without one, or on a CPU without XSAVE, it says so and estimates keep using the
builtin-default cost model (XSAVE ~135, XRSTOR ~300 cycles, not measured on this CPU).
For tests: FPUTRACE_CALIBRATE_HIDE=avx512,amx makes the benchmark act as if the CPU lacked those;
FPUTRACE_CALIBRATE_ASSUME=amx skips that set's CPUID check (XCR0 and the kernel still decide).
"""


def add_arguments(p):
    p.add_argument("-o", "--output", metavar="FILE",
                   help="cost-model file to write (default: /var/cache/fputrace/cost-model.json as "
                        "root, else ~/.cache/fputrace/cost-model.json)")
    p.add_argument("--runs", type=int, default=5000, metavar="N",
                   help="timed repetitions per instruction and set (default 5000)")
    p.add_argument("--sets", metavar="LIST",
                   help="comma-separated component sets to measure (default: sse,avx,avx512,amx, "
                        "those this CPU has)")


def _print_summary(model: dict, out) -> None:
    d = model["details"]
    print(f"CPU: {d['cpu_model']}, XCR0 {d['xcr0']}, XSAVE area {d['xsave_area_bytes']} bytes "
          f"(compacted {d['xsavec_area_bytes']}), kernel family {model['family']}")
    print(f"  {model['instruction']}")
    print(f"timing overhead subtracted; cycles per instruction (TSC ticks), min / median over "
          f"{d['runs']} runs, {d['per_region']} instructions per timed region:")
    names = list(model["per_xfeatures"][0]["instructions"])
    print(f"  {'set':7s} {'XINUSE':>8s} {'xfeatures':>9s} {'bytes':>6s}  "
          + "  ".join(f"{n:>17s}" for n in names))
    for e in model["per_xfeatures"]:
        cells = "  ".join(f"{v['min_cycles']:>8.1f}/{v['median_cycles']:<8.1f}"
                          for v in e["instructions"].values())
        print(f"  {e['set']:7s} {e['xinuse'] or 'n/a':>8s} {e['xfeatures']:>9s} {e['bytes']:>6d}  {cells}")
    for lo in model["left_out"]:
        print(f"  {lo['set']:7s} left out: {lo['reason']}")
    print("cost model: " + ", ".join(f"{e['set']} XSAVE {e['xsave_cycles_median']:g} / XRSTOR "
                                     f"{e['xrstor_cycles_median']:g}" for e in model["per_xfeatures"])
          + f" cycles (medians) -> {out}")


def run(args) -> int:
    import json
    import os
    from pathlib import Path

    from ..calibrate import SETS, cost_model_from, measure
    from ..errors import FputraceError, UsageError
    from ..model.cost import default_cost_model_path

    if args.runs < 16:
        raise UsageError("--runs must be at least 16")
    sets = None
    if args.sets:
        sets = [s.strip() for s in args.sets.split(",") if s.strip()]
        bad = [s for s in sets if s not in SETS]
        if bad or not sets:
            raise UsageError(f"--sets: unknown set {', '.join(bad) or '(none)'} "
                             f"(choose among {', '.join(SETS)})")
    out = Path(args.output) if args.output else default_cost_model_path()
    try:                                   # before minutes of measuring, not after
        out.parent.mkdir(parents=True, exist_ok=True)
        if not os.access(out.parent, os.W_OK):
            raise PermissionError(13, "Permission denied")
    except OSError as err:
        raise FputraceError(f"cannot write the cost model to {out}: {err.strerror}") from None
    model = cost_model_from(measure(args.runs, sets))
    try:
        out.write_text(json.dumps(model, indent=2) + "\n")
    except OSError as err:
        raise FputraceError(f"cannot write the cost model to {out}: {err.strerror}") from None
    _print_summary(model, out)
    return 0
