"""One lab run's recordings, cut into bpftrace's windows and compared with it per process.

A *window* is the stretch between two markers the guest driver made (``prctl(WINDOW_MAGIC, k)``,
bpftrace printed each one with its bpf_ktime_get_ns time and CPU). Within window k, for every
process (tgid) either tool saw, we count:

  events   fputrace's events read back with ``fputrace.load`` (exact ones; inferred apart)
  model    the model (``fputrace.model.Model``) fed with that window's events alone, per task
           summed over the process: XSAVE, XRSTOR, kernel FPU sections (and inferred sections)
  bpftrace kprobe hits of the same kernel functions and the x86_fpu tracepoints

and per window the model's report and estimate (policy replay, self-check, callers) for
docs/CASES.md. Everything here runs on the host, on the recordings the guest left in the run dir.

Boundary evidence: bpftrace switches windows by a map update just before it reads the time it
prints, and two tools' programs on one hook run one after the other; QEMU's vCPU threads can be
descheduled by the host for milliseconds between any two of these, so an event on another CPU near a
marker can fall on different sides for the two tools. The
analysis counts fputrace's events within ``EDGE_NS`` of every marker on other CPUs, per window,
process and fact; a per-process difference is only explained by them if they are there, in that
process and of that fact (they are reported, never assumed). Seen on 5.10: the tracepoint
recorder's own process returned to user mode on CPU 1 within 200 µs of the marker that closed the
ping-pong window on CPU 0; fputrace --mode kprobe counted that return in the window, bpftrace did
not (its program runs first on the same kprobe): 1470 vs 1469, no recursion miss anywhere. On 6.12
a recorder's restore had its function entry 1.2 ms before a marker and its tracepoint 1.2 ms after.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from fputrace.events import FLAG_INFERRED, Kind, XsaveCause

FACT_KIND = {"kfpu_begin": Kind.KFPU_BEGIN, "kfpu_end": Kind.KFPU_END, "xsave": Kind.XSAVE,
             "xrstor": Kind.XRSTOR, "user_return": Kind.USER_RETURN}
FPU_KINDS = np.array([int(k) for k in FACT_KIND.values()], np.uint8)
TASK_TABLE = np.array([Kind.COMM, Kind.TASK], np.uint8)
# QEMU's vCPU threads on a loaded 2-core host are descheduled for milliseconds (6.12: a restore's
# function entry and its tracepoint 2.4 ms apart, across a marker)
EDGE_NS = 5_000_000
MODEL_FIELDS = ("xsave", "xrstor", "kfpu_sections", "kfpu_sections_inferred", "avoidable_xrstor")


def window_bounds(markers: list[dict]) -> dict[int, dict]:
    """{k: {"lo": ns, "hi": ns, "cpu_lo": c, "cpu_hi": c}} from bpftrace's marker lines; a window
    runs from its marker to the next one (the closing k = 0, or the next window)."""
    out = {}
    for cur, nxt in zip(markers, markers[1:]):
        if cur["window"]:
            out[cur["window"]] = {"lo": cur["ns"], "hi": nxt["ns"], "cpu_lo": cur["cpu"], "cpu_hi": nxt["cpu"]}
    return out


def _window_of(ts: np.ndarray, bounds: dict[int, dict]) -> np.ndarray:
    """Window number of each timestamp (0 = outside every window)."""
    out = np.zeros(len(ts), np.int64)
    for k, b in bounds.items():
        out[(ts >= np.uint64(b["lo"])) & (ts < np.uint64(b["hi"]))] = k
    return out


class WindowCounter:
    """Per window and tgid: exact event counts per fact, inferred ones, XSAVE per cause."""

    def __init__(self, bounds: dict[int, dict]):
        self.bounds = bounds
        self.counts: dict[int, dict[int, dict[str, int]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(int)))
        self.edge: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        # the same, per window, process and fact (exact events only): what a per-process
        # difference at a window's edge can be explained by
        self.edge_tgid: dict[int, dict[int, dict[str, int]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(int)))

    def feed(self, batch: np.ndarray) -> None:
        fpu = batch[np.isin(batch["kind"], FPU_KINDS)]
        if not len(fpu):
            return
        win = _window_of(fpu["ts_ns"], self.bounds)
        inferred = (fpu["flags"] & FLAG_INFERRED) != 0
        for fact, kind in FACT_KIND.items():
            sel = fpu["kind"] == kind
            for flag, suffix in ((False, ""), (True, "_inferred")):
                m = sel & (inferred == flag) & (win > 0)
                for (k, tgid), n in _group(win[m], fpu["tgid"][m]).items():
                    self.counts[k][tgid][fact + suffix] += n
        xs = (fpu["kind"] == Kind.XSAVE) & (win > 0)
        for cause in XsaveCause:
            for flag, suffix in ((False, ""), (True, "_inferred")):
                m = xs & (fpu["a1"] == cause) & (inferred == flag)
                for (k, tgid), n in _group(win[m], fpu["tgid"][m]).items():
                    self.counts[k][tgid][f"xsave_{cause.name.lower()}{suffix}"] += n
        for k, b in self.bounds.items():
            for edge, cpu_key in (("lo", "cpu_lo"), ("hi", "cpu_hi")):
                near = np.abs(fpu["ts_ns"].astype(np.int64) - b[edge]) < EDGE_NS
                near &= fpu["cpu"] != b[cpu_key]
                self.edge[k][edge] += int(np.count_nonzero(near))
                for fact, kind in FACT_KIND.items():
                    m = near & (fpu["kind"] == kind) & ~inferred
                    for tgid, n in zip(*np.unique(fpu["tgid"][m], return_counts=True)):
                        self.edge_tgid[k][int(tgid)][fact] += int(n)


def _group(win: np.ndarray, tgid: np.ndarray) -> dict[tuple[int, int], int]:
    if not len(win):
        return {}
    keys, n = np.unique(np.stack([win, tgid.astype(np.int64)]), axis=1, return_counts=True)
    return {(int(k), int(t)): int(c) for (k, t), c in zip(keys.T, n)}


def window_batches(batches, lo: int, hi: int):
    """The task table (COMM/TASK records up to ``hi``) and every event in [lo, hi): what a model
    needs to analyse that window alone, as if the recording had started at ``lo``."""
    for b in batches:
        ts = b["ts_ns"]
        keep = (np.isin(b["kind"], TASK_TABLE) & (ts < np.uint64(hi))) | ((ts >= np.uint64(lo)) & (ts < np.uint64(hi)))
        if keep.any():
            yield b[keep]


def model_window(batches: list[np.ndarray], meta: dict, lo: int, hi: int) -> dict:
    """The model on one window: per-tgid sums of its per-task report, and the report's totals,
    callers and histogram, and the estimate (policy replay) for that window."""
    from fputrace.model import Model
    model = Model(meta)
    for b in window_batches(batches, lo, hi):
        model.feed(b)
    rep = model.report().to_dict()
    est = model.estimate().to_dict()
    per_tgid: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for row in rep.get("per_task", []):
        acc = per_tgid[int(row["tgid"])]
        for k in MODEL_FIELDS:
            acc[k] += int(row.get(k) or 0)
    tasks = {}
    for row in rep.get("per_task", []):
        t = tasks.setdefault(int(row["tgid"]), {"comm": row.get("comm", ""), "kthread": bool(row.get("kthread"))})
        if int(row["tid"]) == int(row["tgid"]) and row.get("comm"):
            t["comm"] = row["comm"]
    return {"per_tgid": {t: dict(v) for t, v in per_tgid.items()}, "tasks": tasks,
            "totals": rep.get("totals", {}), "callers": rep.get("kfpu_callers", []),
            "hist": rep.get("kfpu_hist", []), "estimate": est}


def analyse_recording(path, bounds: dict[int, dict], with_model: bool = True,
                      measure: dict[str, tuple[int, int]] | None = None) -> dict:
    """Window counts of one recording (and the model per window); ``measure``: more windows
    {name: (lo, hi)} for the model only (the measuring pass, no bpftrace there)."""
    import fputrace
    from fputrace.errors import FputraceError
    try:
        tr = fputrace.load(path)
        batches = list(tr.batches())     # lab recordings are small: read once, cut many times
        counter = WindowCounter(bounds)
        forks = {"total": 0, "unknown_tgid": 0}     # in the windows (the attach itself races)
        for b in batches:
            counter.feed(b)
            f = b[b["kind"] == Kind.FORK]
            f = f[_window_of(f["ts_ns"], bounds) > 0]
            forks["total"] += len(f)
            forks["unknown_tgid"] += int(((f["a1"] & 0xFFFFFFFF) == 0).sum())
    except FputraceError as err:
        return {"error": f"fputrace.load: {err}"}
    meta = tr.meta
    res = {"meta": {k: meta.get(k) for k in ("capture_mode", "tif_need_fpu_load_bit", "tif_calibration",
                                            "lost_per_cpu", "truncated", "bpf_counters", "headers",
                                            "transport", "recursion_misses", "fputrace_tgid", "tracefs")},
           "attach": {ev: m.get("attach") for ev, m in (meta.get("modes") or {}).items()},
           "refused": {ev: m.get("refused") for ev, m in (meta.get("modes") or {}).items()},
           "events": {k: {t: dict(c) for t, c in per.items()} for k, per in counter.counts.items()},
           "edge_events": {k: dict(v) for k, v in counter.edge.items()},
           "edge_by_tgid": {k: {t: dict(c) for t, c in per.items()} for k, per in counter.edge_tgid.items()},
           "forks": forks}
    if with_model:
        res["model"] = {}
        for k, b in bounds.items():
            try:
                res["model"][k] = model_window(batches, meta, b["lo"], b["hi"])
            except Exception as err:   # the model is another part: report its failure, keep the rest
                res.setdefault("model_error", {})[k] = f"{type(err).__name__}: {err}"
    if measure:
        res["measure"] = {}
        for name, (lo, hi) in measure.items():
            try:
                res["measure"][name] = model_window(batches, meta, lo, hi) | {"lo": lo, "hi": hi}
            except Exception as err:
                res.setdefault("model_error", {})[f"measure-{name}"] = f"{type(err).__name__}: {err}"
    return res


# ---- bpftool evidence ------------------------------------------------------------------------
def program_misses(progs: list[dict]) -> dict[str, dict[str, int]]:
    """{"bpftrace": {fact: misses}, "fentry": {fact: misses}, "kprobe": {fact: misses}}: the runs
    the kernel skipped (bpftool ``recursion_misses``, kernel 5.12+) per program kind and fact.
    bpftrace's kprobe programs are named after the probed function (15 chars), fputrace's fentry
    programs ``kfunc__<function>``, its kprobe programs ``fpt_kprobe_<fact>`` (15 chars: the
    kfpu_begin and kfpu_end ones look the same and are summed). Programs of the same name from
    several recorders (fentry and auto) are summed too: a bound for each of them."""
    from tests.vmlab.guest.bpftrace_prog import FACTS
    out = {"bpftrace": defaultdict(int), "fentry": defaultdict(int), "kprobe": defaultdict(int)}
    for p in progs:
        name, miss = p.get("name", ""), int(p.get("recursion_misses", 0))
        for fact, fns in FACTS.items():
            if p.get("type") == "kprobe" and name in {f[:15] for f in fns}:
                out["bpftrace"][fact] += miss
            elif p.get("type") == "tracing" and (name.removeprefix("kfunc__") in fns):
                out["fentry"][fact] += miss
            elif p.get("type") == "kprobe" and name == f"fpt_kprobe_{fact}"[:15]:
                out["kprobe"][fact] += miss
    # bpftrace's tracepoint programs (perf tracepoints: skipped like kprobes, counted 6.7+): the
    # restore tracepoint, and the switch saves (regs_deactivated after that task's sched_switch:
    # a skipped sched_switch leaves a stale @prev, so its misses count too)
    tp = defaultdict(int)
    for p in progs:
        if p.get("type") == "tracepoint":
            name = p.get("name", "")
            tp[name] = max(tp[name], int(p.get("recursion_misses", 0)))
    if tp.get("x86_fpu_regs_ac"):
        out["bpftrace"]["tp_activated"] += tp["x86_fpu_regs_ac"]
    if tp.get("x86_fpu_regs_de") or tp.get("sched_switch"):
        out["bpftrace"]["switch_saves"] += tp.get("x86_fpu_regs_de", 0) + tp.get("sched_switch", 0)
    return {k: dict(v) for k, v in out.items()}


def kprobe_skips(skips: dict | None, probes: dict[str, str]) -> dict[str, dict[str, int]]:
    """{"bpftrace": {fact: n}, "kprobe": {fact: n}}: kprobe hits the BPF program of that tool did
    not run for, between the two snapshots of guest/lab.py (all tracers ready .. last window):
    hits of the kprobe (kprobe_profile, aggregated per address) minus the program's run_cnt.
    fputrace's kfpu_begin and kfpu_end programs share one 15-character name: their sum is
    compared with both hits and given to both facts."""
    if not skips or "done" not in skips:
        return {}
    out: dict[str, dict[str, int]] = {"bpftrace": {}, "kprobe": {}}

    def runs(snap: dict, name: str) -> int:
        return sum(int(p.get("run_cnt") or 0) for p in snap["programs"] if p.get("type") == "kprobe"
                   and p.get("name") == name)

    def hits(snap: dict, facts) -> int:
        return sum(int((snap["kprobes"].get(f) or {}).get("hits", 0)) for f in facts)

    a, b = skips["ready"], skips["done"]
    for fact, fn in probes.items():
        out["bpftrace"][fact] = max(0, (hits(b, [fact]) - hits(a, [fact])) - (runs(b, fn[:15]) - runs(a, fn[:15])))
    names = {p.get("name") for p in b["programs"]}
    for fact in probes:
        full = f"fpt_kprobe_{fact}"
        if full in names:             # bpftool names a program with BTF by its whole function name
            present, name = [fact], full
        elif full[:15] in names:      # else by the kernel's 15 characters (kfpu_begin = kfpu_end)
            name = full[:15]
            present = [f for f in probes if f"fpt_kprobe_{f}"[:15] == name]
        else:
            continue
        out["kprobe"][fact] = max(0, (hits(b, present) - hits(a, present)) - (runs(b, name) - runs(a, name)))
    return out


def edge_events(edges: dict, window, tgid, fact: str) -> int:
    """fputrace's events of this fact and process within EDGE_NS of its window's markers on another
    CPU, from a mode's ``edge_by_tgid`` (keys are str once the result went through JSON)."""
    per = edges.get(str(window), edges.get(window, {}))
    return (per.get(str(tgid), per.get(tgid, {})) or {}).get(fact, 0)


def ftrace_drops(skips: dict | None, twins: dict[str, dict] | None) -> dict[str, dict]:
    """fact -> the kprobe hits the ftrace layer dropped without counting them, between the two
    snapshots of guest/lab.py: calls that reached the int3 kprobe just past the fentry site
    (hits + its own nmissed) minus calls that reached the ftrace-based kprobe on the fentry site
    (hits + nmissed, aggregated with bpftrace's and fputrace --mode kprobe's kprobes), with both
    figures. Signed: a call between the two sites while a snapshot is read counts on one side only
    (a few at most). {} where the counters were not armed (6.7+, or an older lab)."""
    if not skips or "done" not in skips or not twins:
        return {}
    a, b = skips["ready"], skips["done"]
    out = {}
    for fact, twin in twins.items():
        if "name" not in twin:
            out[fact] = {"error": twin.get("error", "?")}
            continue
        try:
            d = {f"{side}_{k}": int(b[key][fact][k]) - int(a[key][fact][k])
                 for side, key in (("entry", "kprobes"), ("int3", "int3")) for k in ("hits", "missed")}
        except (KeyError, TypeError):
            out[fact] = {"error": "no kprobe_profile line for one of the two kprobes in a snapshot"}
            continue
        out[fact] = {"at": twin["at"], "flags": twin.get("flags"), "entry_flags": twin.get("entry_flags"), **d,
                     "drops": d["int3_hits"] + d["int3_missed"] - d["entry_hits"] - d["entry_missed"]}
    return out


def traced_drops(trace: dict | None, bounds: dict[int, dict]) -> dict:
    """guest/lab.py's pairing of the counter events in the trace buffer (mono clock = the markers'):
    each int3 hit with no entry hit before it in its task, with the window it fell in (0: none).
    Such a call is a drop, or a hit the entry kprobe counted as missed (nmissed, beside it)."""
    if not trace or "events" not in trace:
        return dict(trace or {})
    out = dict(trace)
    win = _window_of(np.array([int(d["ts"] * 1e9) for d in trace["drops"]], np.uint64), bounds)
    out["drops"] = [d | {"window": int(k)} for d, k in zip(trace["drops"], win)]
    return out


def drops_note(drops: dict[str, dict], fact: str) -> str:
    """One phrase for a difference left unexplained: what the ftrace-drop counter on that fact's
    function measured in the same run."""
    d = drops.get(fact)
    if not drops:
        return "ftrace-layer drops not measured (the lab arms no kprobe counters on 6.7+; an older run)"
    if d is None:
        return f"no ftrace-drop counter on {fact} (not a kprobe on this kernel)"
    if "drops" not in d:
        return f"ftrace-drop counter on {fact} failed: {d.get('error')}"
    return (f"ftrace-layer drops on {d['at'].split('+')[0]} in this run: {d['drops']} "
            f"(int3 {d['int3_hits'] + d['int3_missed']:,}, entry {d['entry_hits'] + d['entry_missed']:,})")


def own_misses(meta: dict) -> dict[str, int] | None:
    """fact -> runs the kernel skipped of this recording's own programs (meta recursion_misses:
    {"kernel_fpu_begin_mask": n, "kprobe:kfpu_begin": n, ...}); None if the recording does not
    say (older recorder) or the kernel does not count them (< 5.12)."""
    from tests.vmlab.guest.bpftrace_prog import FACTS
    misses = meta.get("recursion_misses")
    if misses is None:
        return None
    out: dict[str, int] = defaultdict(int)
    for name, n in misses.items():
        if name.startswith("kprobe:"):
            out[name.removeprefix("kprobe:")] += int(n)
        for fact, fns in FACTS.items():
            if name in fns:
                out[fact] += int(n)
    return dict(out)


def program_runs(progs: list[dict]) -> list[dict]:
    """Compact bpftool evidence: type, name, run count, recursion misses of every program."""
    return [{"type": p.get("type"), "name": p.get("name"), "run_cnt": p.get("run_cnt"),
             "recursion_misses": p.get("recursion_misses", 0)} for p in progs]


# ---- the comparison rule: tests/test_vmlab.py asserts it, report.py shows it ---------------------
# a row field's fact -> the kind of fputrace event that can fall across a window's edge
EDGE_FACT = {"tp_activated": "xrstor", "switch_saves": "xsave"}


def tracers(res: dict) -> set[int]:
    """The lab's own tracers' tgids: bpftrace and every recorder."""
    g = res.get("guest") or {}
    return {p for p in [(g.get("bpftrace") or {}).get("pid"), *(r.get("pid") for r in (g.get("recorders") or {}).values())]
            if p}


def ftrace_dropped(res: dict) -> dict[str, int]:
    """fact -> the run's ftrace-layer drops (ftrace_drops), 0 where the int3 counter fell short."""
    return {f: max(0, int(d["drops"])) for f, d in (res.get("ftrace_drops") or {}).items() if "drops" in d}


def misses(res: dict, mode: str) -> tuple[dict[str, int], dict[str, int]]:
    """(bpftrace's, fputrace --mode MODE's) runs per fact that the kernel measurably did not give
    to that tool's program, between the two snapshots of guest/lab.py:

      skipped   recursion_misses (bpftool; fputrace's own from its recording's meta, by program
                name in bpftool where the meta does not say); for kprobe programs also the
                kprobe's hits minus the program's runs (kprobe_skips), whichever is larger
      layer     kprobe-layer misses: nmissed of the tracefs kprobe on the same address (kprobes on
                one address share one count): a hit while another kprobe handler ran on that CPU
      dropped   ftrace-layer drops (ftrace_drops: the int3 kprobe past the fentry site against the
                ftrace-based one on it): a hit ftrace's recursion guard refused reaches no kprobe on
                that address, neither bpftrace's nor fputrace --mode kprobe's, and is counted by no
                kprobe; a call crossing a snapshot between the two sites adds one as well

    The layer and the drops are the kprobe tools' only: fentry's trampoline passes neither."""
    m = (res.get("bpftool") or {}).get("misses") or {}
    layer = m.get("kprobe_layer") or {}
    skips = m.get("kprobe_skips") or {}
    dropped = ftrace_dropped(res)

    def kprobe_tool(recursion: dict, hits_minus_runs: dict) -> dict[str, int]:
        facts = set(recursion) | set(hits_minus_runs) | set(layer) | set(dropped)
        return {f: max(recursion.get(f, 0), hits_minus_runs.get(f, 0)) + layer.get(f, 0) + dropped.get(f, 0)
                for f in facts}

    bpftrace = kprobe_tool(m.get("bpftrace") or {}, skips.get("bpftrace") or {})
    own = own_misses(((res.get("modes") or {}).get(mode) or {}).get("meta") or {})
    if own is None:
        own = m.get("kprobe" if mode == "kprobe" else "fentry") or {}
    if mode == "kprobe":
        own = kprobe_tool(own, skips.get("kprobe") or {})
    return bpftrace, dict(own)


def compare(res: dict, mode: str, rows: list[dict], pairs) -> list[dict]:
    """fputrace's count (row field ``ours``) against bpftrace's (``theirs``) for every process and
    window, per pair: equal, up to two measured reasons and nothing else.

    (1) Window edges (the boundary evidence of this module's docstring): a process's difference
    may be as large as fputrace's events of that fact and process within EDGE_NS of the markers
    on other CPUs, and no larger.
    (2) Misses (``misses``): summed over every window and process, what is left beyond (1) may
    exceed bpftrace by at most bpftrace's measured misses of that fact, and fall short of it by
    at most fputrace's own.

    There is no other tolerance, for the tracers' own processes neither. Returns per pair the
    differing rows (with their edge events, and whether a tracer's), the totals as counted, what is left beyond the
    edges, the misses allowed, and whether the measured reasons explain all of it."""
    bt_missed, own_missed = misses(res, mode)
    edges = ((res.get("modes") or {}).get(mode) or {}).get("edge_by_tgid") or {}
    ours_tracers = tracers(res)
    dropped = ftrace_dropped(res)
    out = []
    for ours, theirs in pairs:
        fact = theirs.removeprefix("bt_")
        edge_fact = EDGE_FACT.get(fact, fact)
        differing = []
        for r in rows:
            d = (r[ours] or 0) - r[theirs]
            if d:
                differing.append({"row": r, "diff": d, "edge": edge_events(edges, r["window"], r["tgid"], edge_fact),
                                  "tracer": r["tgid"] in ours_tracers})
        left = [(x["diff"] > 0, max(0, abs(x["diff"]) - x["edge"])) for x in differing]
        over, under = sum(n for up, n in left if up), sum(n for up, n in left if not up)
        out.append({"ours": ours, "theirs": theirs, "fact": fact, "edge_fact": edge_fact, "differing": differing,
                    "counted": (sum(max(0, x["diff"]) for x in differing), sum(max(0, -x["diff"]) for x in differing)),
                    "at_edge": sum(min(abs(x["diff"]), x["edge"]) for x in differing),
                    "in_tracers": sum(abs(x["diff"]) for x in differing if x["tracer"]),
                    "over": over, "under": under,
                    "bpftrace_missed": bt_missed.get(fact, 0), "fputrace_missed": own_missed.get(fact, 0),
                    "ftrace_dropped": dropped.get(fact, 0),
                    "explained": over <= bt_missed.get(fact, 0) and under <= own_missed.get(fact, 0)})
    return out
