"""fputrace calibrate: measure XSAVE/XRSTOR cycles on this CPU and write a cost-model file."""
from __future__ import annotations

HELP = "measure XSAVE/XSAVEOPT/XSAVEC/XRSTOR cycles on this CPU and write a cost model"
EXAMPLES = """examples:
    fputrace calibrate                     # write the default cost model (used by estimate)
    fputrace calibrate -o epyc.json --runs 20000
    fputrace estimate run.fpt --cost-model epyc.json

Needs a C compiler (cc/gcc, or $CC) the first time: the micro-benchmark is built into the cache
directory. Without one, or on a CPU without XSAVE, it says so and estimates keep using the
builtin-default cost model (XSAVE ~135, XRSTOR ~300 cycles).
"""


def add_arguments(p):
    p.add_argument("-o", "--output", metavar="FILE",
                   help="cost-model file to write (default: /var/cache/fputrace/cost-model.json as "
                        "root, else ~/.cache/fputrace/cost-model.json)")
    p.add_argument("--runs", type=int, default=5000, metavar="N",
                   help="timed repetitions per instruction (default 5000)")


def run(args) -> int:
    import json
    from pathlib import Path

    from ..calibrate import cost_model_from, measure
    from ..errors import UsageError
    from ..model.cost import default_cost_model_path

    if args.runs < 10:
        raise UsageError("--runs must be at least 10")
    out = Path(args.output) if args.output else default_cost_model_path()
    model = cost_model_from(measure(args.runs))
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(model, indent=2) + "\n")
    d = model["details"]
    print(f"CPU: {d['cpu_model']}, XCR0 {d['xcr0']}, XSAVE area {d['xsave_area_bytes']} bytes, "
          f"kernel family {model['family']}")
    print(f"timing overhead: min {d['timing_overhead_cycles']['min']}, "
          f"median {d['timing_overhead_cycles']['median']} cycles (subtracted)")
    for name, v in d["instructions"].items():
        print(f"  {name:9s} min {v['min_cycles']:6d}  median {v['median_cycles']:6d} cycles")
    print(f"cost model: XSAVE {model['xsave_cycles']} cycles, XRSTOR {model['xrstor_cycles']} "
          f"cycles -> {out}")
    return 0
