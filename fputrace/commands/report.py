"""fputrace report: who saved and restored FPU state in a recording, how often, and why."""
from __future__ import annotations

HELP = "who saved and restored FPU state, how often and why (XSAVE/XRSTOR per task, CPU, cause)"
EXAMPLES = """examples:
    fputrace report run.fpt                # text: totals, top 20 tasks, causes, CPUs, callers
    fputrace report run.fpt --top 5 --pid 4242
    fputrace report run.fpt --format json | jq .totals
    fputrace report run.fpt --format csv > tasks.csv   # one row per task (and tid generation)
    fputrace report run.fpt --sort components   # AMX and AVX-512 tasks first, then by bytes

Numbers that the capture mode could not observe exactly are labelled (see "exactness"); counts of
tasks that crossed lost events are flagged gap=true.
"""


def add_arguments(p):
    p.add_argument("file", help="a recording (fputrace record, or fputrace import)")
    p.add_argument("--format", choices=("text", "json", "csv"), default="text")
    p.add_argument("--pid", type=int, metavar="P", help="only tasks with this tid or tgid")
    p.add_argument("--top", type=int, metavar="N",
                   help="at most N tasks (text default: 20; json/csv default: all)")
    p.add_argument("--sort", choices=("xsave", "bytes", "components", "cycles"), default="xsave",
                   help="task order: most XSAVEs (default), most bytes moved, largest live state "
                        "first (AMX, AVX-512, AVX, SSE; then bytes), most cycles")


def load_model(path, **model_kw):
    """A model fed with every batch of the recording at ``path`` (opened by ``fputrace.load``:
    one way to open a recording, out-of-order batches re-sorted) and the recording's meta."""
    from ..trace import load

    trace = load(path)
    return trace.model(**model_kw), trace.meta


def run(args) -> int:
    import sys

    from ..errors import UsageError

    if args.top is not None and args.top < 1:
        raise UsageError("--top must be at least 1")
    top = args.top or (20 if args.format == "text" else None)
    model, meta = load_model(args.file, top=top, pid=args.pid, sort=args.sort)  # keeps the rows shown
    rep = model.report()
    if args.format == "json":
        extra = {"file": str(args.file), "truncated": bool(meta.get("truncated"))}
        if meta.get("truncated"):
            extra["truncated_reason"] = meta.get("truncated_reason")
        rep.write_json(sys.stdout, pid=args.pid, top=top, sort=args.sort, **extra)
    elif args.format == "csv":
        rep.write_csv(sys.stdout, pid=args.pid, top=top, sort=args.sort)
    else:
        if meta.get("truncated"):
            print(f"note: {args.file} is truncated ({meta.get('truncated_reason')}): "
                  "numbers cover the complete batches only")
        sys.stdout.write(rep.to_text(top=top, pid=args.pid, sort=args.sort))
    return 0
