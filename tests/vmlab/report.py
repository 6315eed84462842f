"""The lab's documents, generated from the last stored runs (one command):

    python -m tests.vmlab.report                 # from the stored results of the last runs
    python -m tests.vmlab.report --run           # run the lab (every kernel) and the host first
    python -m tests.vmlab.report --run 6.1 host  # only these

writes
  tests/vmlab/RESULTS.md   the verification: fputrace against bpftrace per window and process
  tests/vmlab/SUMMARY.md   the one-glance tables README.md shows (tools/update_readme.py)
  docs/CASES.md            the answer to the 2019 question: per workload and kernel, what the
                           deferred restore saves (cases.py)

Results live in <cache>/results/<label>.json (pytest -m vmlab, python -m tests.vmlab.lab,
python -m tests.vmlab.host).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from . import analysis, cases, host, kernels, lab

HERE = Path(__file__).resolve().parent
RESULTS_MD = HERE / "RESULTS.md"
SUMMARY_MD = HERE / "SUMMARY.md"
CASES_MD = HERE.parent.parent / "docs" / "CASES.md"
FIELDS = (("kfpu_begin", "sections"), ("xsave", "XSAVE"), ("xrstor", "XRSTOR"), ("user_return", "user-return"))


def _git_commit() -> str:
    res = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE)
    return res.stdout.strip() or "?"


def when(res: dict) -> str:
    t = res.get("finished_wall") or res.get("started_wall")
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t)) if t else "?"


def _pair(a: int, b: int) -> str:
    return f"{a:,} / {b:,}" + ("" if a == b else f" **({a - b:+,})**")


def restore_key(res: dict) -> str:
    """bpftrace's count of restores: the restore function, or on 5.10 (inline restore) the
    x86_fpu_regs_activated tracepoint."""
    return "bt_xrstor" if "xrstor" in (res.get("guest", res).get("bpftrace", {}).get("probes") or {}) \
        else "bt_tp_activated"


def names(res: dict, k) -> dict[int, str]:
    """tgid -> comm (k: kthread) from any mode's model of window k."""
    out = {}
    for m in res.get("modes", {}).values():
        for t, v in ((m.get("model") or {}).get(str(k), {}).get("tasks") or {}).items():
            out.setdefault(int(t), v["comm"] + (" (k)" if v.get("kthread") else ""))
    out.setdefault(0, "idle (swapper)")
    return out


def agreement(res: dict, mode: str) -> dict:
    """Rows compared, rows equal, signed totals per fact (events and model)."""
    rows = [r for r in res.get("rows", []) if r["mode"] == mode]
    rk = restore_key(res)
    pairs = {"kfpu_begin": ("fpt_kfpu_begin", "bt_kfpu_begin"), "kfpu_end": ("fpt_kfpu_end", "bt_kfpu_end"),
             "xsave": ("fpt_xsave", "bt_xsave"), "xrstor": ("fpt_xrstor", rk),
             "user_return": ("fpt_user_return", "bt_user_return"),
             "model sections": ("model_kfpu_sections", "bt_kfpu_begin"), "model XSAVE": ("model_xsave", "bt_xsave"),
             "model XRSTOR": ("model_xrstor", rk)}
    if "user_return" not in (res.get("guest", {}).get("bpftrace", {}).get("probes") or {"user_return": 1}):
        pairs.pop("user_return")
    out = {"rows": len(rows), "equal": 0, "diff": {}, "reason": {}}
    for r in rows:
        if all((r[a] or 0) == r[b] for a, b in pairs.values()):
            out["equal"] += 1
    edges = (res.get("modes", {}).get(mode) or {}).get("edge_by_tgid") or {}
    g = res.get("guest", {})
    tracers = {p for p in [g.get("bpftrace", {}).get("pid"), *(v.get("pid") for v in (g.get("recorders") or {}).values())] if p}
    for name, (a, b) in pairs.items():
        over = sum(max(0, (r[a] or 0) - r[b]) for r in rows)
        under = sum(max(0, r[b] - (r[a] or 0)) for r in rows)
        if over or under:
            out["diff"][name] = (over, under)
            fact = {"model sections": "kfpu_begin", "model XSAVE": "xsave", "model XRSTOR": "xrstor"}.get(name, name)
            at_edge = sum(min(abs((r[a] or 0) - r[b]),
                              analysis.edge_events(edges, r["window"], r["tgid"], fact))
                          for r in rows if (r[a] or 0) != r[b])
            in_tracers = sum(abs((r[a] or 0) - r[b]) for r in rows if (r[a] or 0) != r[b] and r["tgid"] in tracers)
            bt_missed, own_missed = missed(res, "bpftrace", fact), missed(res, "kprobe" if mode == "kprobe" else "fentry", fact)
            # what the misses and edge events leave, in the tracers' rows: the tests' TRACER_SLACK
            beyond = {}                    # per row: the difference left after its edge events, signed
            for r in rows:
                d = (r[a] or 0) - r[b]
                left = max(0, abs(d) - analysis.edge_events(edges, r["window"], r["tgid"], fact))
                beyond[id(r)] = left if d > 0 else -left
            unexplained = (sum(max(0, d) for d in beyond.values()) > bt_missed
                           or sum(max(0, -d) for d in beyond.values()) > own_missed)
            slack = sum(abs(beyond[id(r)]) for r in rows if unexplained and r["tgid"] in tracers)
            out["reason"][name] = {"edge": at_edge, "tracers": in_tracers, "bpftrace_missed": bt_missed,
                                   "fputrace_missed": own_missed, "slack": slack,
                                   "drops": analysis.drops_note(res.get("ftrace_drops") or {}, fact)}
    out["processes"] = len({(r["window"], r["tgid"]) for r in rows})
    return out


def missed(res: dict, tool: str, fact: str) -> int:
    """Runs of that tool's probe on this fact the kernel measurably skipped: recursion misses
    (bpftool), kprobe hits minus program runs, kprobe-layer misses (tests/test_vmlab.py _diffs)."""
    m = (res.get("bpftool") or {}).get("misses") or {}
    skips = (m.get("kprobe_skips") or {}).get(tool) or {}
    layer = (m.get("kprobe_layer") or {}).get(fact, 0) if tool in ("bpftrace", "kprobe") else 0
    return max((m.get(tool) or {}).get(fact, 0), skips.get(fact, 0)) + layer


def explain(diff: dict, reason: dict) -> list[str]:
    """['kfpu_begin +1/−0 (1 at a window edge; bpftrace missed 3)', ...]: each differing count."""
    out = []
    for name, (o, u) in diff.items():
        why = reason.get(name) or {}
        parts = [f"{why['edge']} at a window edge"] if why.get("edge") else []
        parts += [f"{why['tracers']} in the tracers' own processes"] if why.get("tracers") else []
        parts += [f"{why['slack']} left in a tracer's row: the tests' tracer slack; {why['drops']}"] \
            if why.get("slack") else []
        parts += [f"{who} missed {why[key]}" for who, key in (("bpftrace", "bpftrace_missed"), ("fputrace", "fputrace_missed"))
                  if why.get(key)]
        out.append(f"{name} +{o}/−{u}" + (f" ({'; '.join(parts)})" if parts else " (**unexplained**)"))
    return out


def render_results(results: dict[str, dict]) -> str:
    out = ["# Stock-kernel lab results", "",
           f"Generated by `python -m tests.vmlab.report` (fputrace {_git_commit()}) from the last lab run of "
           "each kernel. Each kernel is booted once under QEMU; bpftrace (kprobes) and one `fputrace record` "
           "per mode run at the same time and observe the same processes. Each workload runs in its own "
           "window (bpftrace counts between markers the driver makes; fputrace's recordings are cut at "
           "the markers' timestamps), and **every process** that ran in a window is compared, kernel "
           "threads and the idle task included. Cells are **fputrace / bpftrace**; a difference is "
           "shown as (+n) / (−n).", "",
           "*wall* = the guest's run on this shared machine (host load average at the end in brackets); "
           "*CPU* = what QEMU used: on an idle 2-core host a run takes about CPU / 2 to CPU.", "",
           "| kernel | booted | run | wall (load) | CPU | accel | modes |", "|---|---|---|---|---|---|---|"]
    for label, res in results.items():
        k = res["kernel"]
        status = "ok" if k.get("returncode") == 0 else f"failed: {k.get('reason') or k.get('returncode')}"
        for p in k.get("panics") or []:   # the boot before this one (lab.run_lab boots once more)
            status += f"; an earlier boot failed after {p['after_s']:.0f} s ({p.get('bug', '?')}, {' < '.join(p.get('frames') or [])[:120]})"
        out.append(f"| {label} | {k['release']} ({k.get('package_version', '')}) {status} | {when(res)} | "
                   f"{k.get('guest_wall_s', 0):.0f} s ({k.get('loadavg_1m', '?')}) | {k.get('guest_cpu_s', 0):.0f} s | "
                   f"{k['accel']} | {', '.join(res.get('modes_run', []))} |")
    out += ["", "## Agreement per mode", "",
            "Rows = (window, process) pairs with any FPU activity; *equal* = every count of the row equal "
            "(events: sections, XSAVE, XRSTOR, user-return; model: sections, XSAVE, XRSTOR). Differences "
            "are summed over all rows as +over/−under, with their measured reasons: *at a window edge* = "
            "fputrace's events of that process and kind within 5 ms of a window marker on another CPU "
            "(the two tools switch windows µs apart, ms when the loaded host deschedules a vCPU); *missed* = runs the kernel skipped (bpftool "
            "`recursion_misses`, 5.12+; kprobe hits minus program runs; kprobe-layer misses). These are the "
            "only tolerance.", "",
            "| kernel | mode | rows | equal | differences | bpftrace misses | fputrace misses |", "|---|---|---|---|---|---|---|"]
    for label, res in results.items():
        miss = (res.get("bpftool") or {}).get("misses") or {}
        for mode in res.get("modes_run", []):
            if mode == "tracepoint":
                continue
            a = agreement(res, mode)
            diff = ", ".join(explain(a["diff"], a["reason"])) or "none"
            own = miss.get("kprobe" if mode == "kprobe" else "fentry") or {}
            fmt = (lambda d: ", ".join(f"{f} {v}" for f, v in d.items() if v) or "0") if miss.get("reported") \
                else (lambda d: "not reported (< 5.12)")
            out.append(f"| {label} | {mode} | {a['rows']} | {a['equal']} | {diff} | {fmt(miss.get('bpftrace') or {})} | {fmt(own)} |")
    out += ["", "## Every process, every window (fentry)", ""]
    for label, res in results.items():
        rk = restore_key(res)
        out += [f"### {label} ({res['kernel']['release']})", "",
                "| window | process | " + " | ".join(n for _, n in FIELDS) + " | model sections / XSAVE / XRSTOR |",
                "|---|---|" + "---|" * (len(FIELDS) + 1)]
        for r in [r for r in res.get("rows", []) if r["mode"] == lab.MEASURE_MODE]:
            w = res["windows"][str(r["window"])]["workload"]
            who = f"{r['tgid']} {names(res, r['window']).get(r['tgid'], '')}"
            cells = [_pair(r[f"fpt_{f}"], r[rk] if f == "xrstor" else r[f"bt_{f}"]) for f, _ in FIELDS]
            model = " / ".join(f"{r[f'model_{m}']:,}" for m in ("kfpu_sections", "xsave", "xrstor"))
            out.append(f"| {w} | {who} | " + " | ".join(cells) + f" | {model} |")
        out.append("")
    out += ["## ftrace-layer drops", "",
            "Where the lab arms its kprobe miss counters (kernels before 6.7), each ftrace-based kprobe on a "
            "probed function's fentry site has an int3 kprobe beside it, on the first instruction after the "
            "fentry site (found by the kernel refusing kprobes off an instruction boundary, EILSEQ, and listing "
            "the fentry site as [FTRACE]). No instruction lies between the two, so every call reaches both; "
            "the ftrace layer drops a hit uncounted when its recursion guard "
            "(ftrace_test_recursion_trylock) fails, for every kprobe on that address (bpftrace's, fputrace "
            "--mode kprobe's), while the int3 kprobe counts its own reentries as missed. *drops* = (int3 hits + "
            "missed) − (entry hits + missed), between the two snapshots (all tracers ready .. last window); a "
            "call between the two sites while a snapshot is read counts on one side only.", "",
            "| kernel | fact | entry kprobe (flags) | int3 kprobe (flags) | entry hits + missed | int3 hits + missed | drops |",
            "|---|---|---|---|---|---|---|"]
    for label, res in results.items():
        drops = res.get("ftrace_drops") or {}
        if not drops:
            out.append(f"| {label} | – | not armed ({'kernel 6.7+: no kprobe counters' if res.get('guest', {}).get('kprobe_counters') == {} else 'an older lab run'}) | | | | |")
        for fact, d in drops.items():
            if "drops" not in d:
                out.append(f"| {label} | {fact} | {d.get('error')} | | | | |")
                continue
            out.append(f"| {label} | {fact} | {d['at'].split('+')[0]} {d.get('entry_flags') or ''} | {d['at']} "
                       f"{d.get('flags') or ''} | {d['entry_hits']:,} + {d['entry_missed']:,} | "
                       f"{d['int3_hits']:,} + {d['int3_missed']:,} | {d['drops']:+,} |")
    out += ["", "The same calls paired in the trace buffer (each counter hit is also a trace event, on the "
            "markers' clock): an int3 hit with no entry hit before it in its task is a drop (or an entry "
            "hit counted as missed), shown with its task and window.", ""]
    for label, res in results.items():
        t = res.get("ftrace_drops_traced") or {}
        if "events" not in t:
            continue
        lost = sum((t.get("overrun") or {}).values())
        where = "; ".join(f"{d['fact']} in {d['pid']} {d['comm']} on CPU {d['cpu']}, "
                          f"{'window ' + str(d['window']) if d['window'] else 'outside the windows'}" for d in t["drops"])
        out.append(f"- {label}: {t['events']:,} counter events, {lost:,} lost (buffer overrun); "
                   f"{len(t['drops'])} int3 hits without an entry hit{': ' + where if where else ''}; "
                   f"{t['entries_left']} entry hits without an int3 hit")
    out += ["", "## Tracepoint-only mode: exact part and inference", "",
            "Restores (x86_fpu_regs_activated) and context-switch saves are exact in this mode: compared "
            "with bpftrace (restore function, or the tracepoint on 5.10) and with the fentry recorder's "
            "switch-cause saves of the same process and window. Inference (SPEC 5.4) sees at most one "
            "kernel FPU section per syscall, so it is compared with the syscalls during which the kernel "
            "FPU was used (bpftrace); kernel threads make no syscalls and interrupts are not syscalls: "
            "their sections are not inferred.", "",
            "| kernel | window | process | XRSTOR tp / bpftrace | switch XSAVE tp / fentry | syscalls with kernel FPU | inferred sections |",
            "|---|---|---|---|---|---|---|"]
    for label, res in results.items():
        rk = restore_key(res)
        fentry = {(r["window"], r["tgid"]): r for r in res.get("rows", []) if r["mode"] == "fentry"}
        for r in [r for r in res.get("rows", []) if r["mode"] == "tracepoint"]:
            f = fentry.get((r["window"], r["tgid"]), {})
            w = res["windows"][str(r["window"])]["workload"]
            out.append(f"| {label} | {w} | {r['tgid']} {names(res, r['window']).get(r['tgid'], '')} | "
                       f"{_pair(r['fpt_xrstor'], r[rk])} | {_pair(r['fpt_xsave_switch'], f.get('fpt_xsave_switch', 0))} | "
                       f"{r['bt_syscalls_with_kfpu']:,} | {r['model_kfpu_sections'] or 0:,} |")
    out += ["", "## Attach points and TIF_NEED_FPU_LOAD", "",
            "| kernel | mode | kfpu_begin | xsave | xrstor | user_return | transport | TIF bit |",
            "|---|---|---|---|---|---|---|---|"]
    for label, res in results.items():
        for mode, m in res.get("modes", {}).items():
            if "attach" not in m:
                out.append(f"| {label} | {mode} | {m.get('error', '?')} | | | | | |")
                continue
            a = m["attach"]
            out.append(f"| {label} | {mode} | {a.get('kfpu_begin')} | {a.get('xsave')} | {a.get('xrstor')} | "
                       f"{a.get('user_return')} | {(m['meta'].get('transport') or {}).get('kind')} | "
                       f"{m['meta'].get('tif_need_fpu_load_bit')} |")
    return "\n".join(out) + "\n"


def render_summary(results: dict[str, dict], host_res: dict | None) -> str:
    out = ["Lab: every process in every workload window, fputrace against bpftrace (details: "
           "[tests/vmlab/RESULTS.md](tests/vmlab/RESULTS.md); the figures: [docs/CASES.md](docs/CASES.md)).", "",
           "| kernel | run | modes | (window, process) rows | equal | differences (and their measured reasons; the model's counts are off by the same unless listed) |",
           "|---|---|---|---|---|---|"]
    for label, res in results.items():
        rows = equal = 0
        diffs = []
        for mode in res.get("modes_run", []):
            if mode == "tracepoint":
                continue
            a = agreement(res, mode)
            rows, equal = rows + a["rows"], equal + a["equal"]
            events = {n: d for n, d in a["diff"].items() if not n.startswith("model ")}
            same = {n for n, d in a["diff"].items()      # the model's count off exactly as the events
                    if n.startswith("model ") and events.get({"model sections": "kfpu_begin", "model XSAVE": "xsave",
                                                              "model XRSTOR": "xrstor"}[n]) == d}
            diffs += [f"{mode} {d}" for d in explain({n: d for n, d in a["diff"].items() if n not in same}, a["reason"])]
        out.append(f"| {label} ({res['kernel']['release']}) | {when(res)} | {', '.join(res.get('modes_run', []))} | "
                   f"{rows:,} | {equal:,} | {'; '.join(diffs) or 'none'} |")
    out += ["", cases.summary_table(results, host_res)]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m tests.vmlab.report", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", action="store_true", help="run the lab for the kernels (and the host) first")
    p.add_argument("-o", "--output-dir", help="write the three files here instead (for a look)")
    p.add_argument("kernels", nargs="*", default=[*kernels.KERNELS, "host"])
    args = p.parse_args(argv)
    results, host_res = {}, None
    for label in args.kernels:
        if label == "host":
            host_res = host.run_host() if args.run else host.load_result()
            if host_res is None:
                print("vmlab report: no stored host run (python -m tests.vmlab.host)", file=sys.stderr)
            continue
        res = lab.run_lab(label) if args.run else lab.load_result(label)
        if res is not None and not res.get("windows"):
            print(f"vmlab report: the stored result for kernel {label} has no windows (an older lab, or a failed run: "
                  f"{res['kernel'].get('reason') or 'see its run dir'}): "
                  f"run it again", file=sys.stderr)
            continue
        if res is None:
            print(f"vmlab report: no stored result for kernel {label} (run with --run, or pytest -m vmlab)",
                  file=sys.stderr)
            continue
        results[label] = res
    if not results and host_res is None:
        return 1
    targets = {RESULTS_MD: render_results(results), SUMMARY_MD: render_summary(results, host_res),
               CASES_MD: cases.render(results, host_res)}
    for path, text in targets.items():
        path = Path(args.output_dir) / path.name if args.output_dir else path
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
