"""fputrace estimate: replay a recording under other restore policies and compare their cost."""
from __future__ import annotations

HELP = "replay a recording under eager/deferred/... restore policies: XSAVE, XRSTOR, bytes, cycles"
EXAMPLES = """examples:
    fputrace estimate run.fpt              # eager vs deferred vs deferred-novalid
    fputrace estimate run.fpt --policy eager,deferred --format json
    fputrace calibrate && fputrace estimate run.fpt   # cycles measured on this CPU

policies: eager (Linux <= 5.1: restore at switch-in and kernel_fpu_end), deferred (>= 5.2:
restore on return to user mode), deferred-novalid (deferred without the "registers still valid"
shortcut). The self-check replays the trace under the policy that recorded it and reports how
closely that reproduces the measured counts (1.0 = exactly).
"""


def add_arguments(p):
    p.add_argument("file", help="a recording (fputrace record, or fputrace import)")
    p.add_argument("--policy", default="eager,deferred,deferred-novalid", metavar="LIST",
                   help="comma-separated policies (default: eager,deferred,deferred-novalid)")
    p.add_argument("--cost-model", metavar="FILE",
                   help="cost-model file from `fputrace calibrate` (default: the calibrated "
                        "default file if present, else builtin-default)")
    p.add_argument("--format", choices=("text", "json"), default="text")


def run(args) -> int:
    import json
    import sys

    from ..model.cost import load_cost_model
    from ..model.policies import resolve
    from .report import load_model

    policies = [p.name for p in resolve(args.policy)]       # bad names: one line, before reading
    cost = load_cost_model(args.cost_model)
    model, meta = load_model(args.file, policies=policies, cost_model=cost, top=0)
    est = model.estimate()
    if args.format == "json":
        out = est.to_dict()
        out["file"] = str(args.file)
        out["truncated"] = bool(meta.get("truncated"))
        json.dump(out, sys.stdout, indent=1)
        sys.stdout.write("\n")
    else:
        if meta.get("truncated"):
            print(f"note: {args.file} is truncated ({meta.get('truncated_reason')}): "
                  "numbers cover the complete batches only")
        sys.stdout.write(est.to_text())
    return 0
