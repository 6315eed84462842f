"""The lab's pure parts, without booting anything: the bpftrace program and its parser, the
windows and per-process counting of recordings, the tolerance evidence from bpftool, the
generated documents, the dependency walk of the kernel fetcher."""
from __future__ import annotations

import numpy as np

from fputrace.events import EVENT_DTYPE, FLAG_INFERRED, Kind, XsaveCause, comm_to_args
from tests.vmlab import analysis, cases, kernels, lab, report
from tests.vmlab.guest import bpftrace_prog


# ---- bpftrace ------------------------------------------------------------------------------------
def test_probe_choice_follows_the_kernel():
    k510 = {"kernel_fpu_begin", "kernel_fpu_end", "copy_fpregs_to_fpstate", "switch_fpu_return"}
    assert bpftrace_prog.choose(k510) == {"kfpu_begin": "kernel_fpu_begin", "kfpu_end": "kernel_fpu_end",
                                          "xsave": "copy_fpregs_to_fpstate", "user_return": "switch_fpu_return"}
    k61 = set(bpftrace_prog.FUNCS)          # both begin functions: only the _mask one is probed
    got = bpftrace_prog.choose(k61)
    assert got["kfpu_begin"] == "kernel_fpu_begin_mask" and got["xrstor"] == "restore_fpregs_from_fpstate"


def test_program_counts_per_window_and_process():
    probes = bpftrace_prog.choose(set(bpftrace_prog.FUNCS))
    prog = bpftrace_prog.program(probes, list(bpftrace_prog.TRACEPOINTS))
    for fact, fn in probes.items():
        assert f'kprobe:{fn} /@w/ {{ @c[@w, pid, "{fact}"] = count();' in prog
    assert f"args->args[0] == {bpftrace_prog.WINDOW_MAGIC}" in prog and "@w = args->args[1];" in prog
    assert 'printf("WINDOW %d %llu %d\\n"' in prog
    assert "tracepoint:raw_syscalls:sys_exit /@w && @kfpu[tid]/" in prog
    assert '"switch_saves"' in prog and "@prev[cpu] == tid" in prog
    # without a begin function there is nothing to mark syscalls with, and no @kfpu map at all
    bare = bpftrace_prog.program({}, list(bpftrace_prog.TRACEPOINTS))
    assert "raw_syscalls:sys_exit" not in bare and "@kfpu" not in bare and "clear(@prev)" in bare


def test_output_parser():
    out = """Attaching 9 probes...
BPFTRACE-READY
WINDOW 1 1000 0
WINDOW 0 5000 1
Lost 3 events
@c[1, 236, kfpu_begin]: 1800
@c[1, 236, tp:x86_fpu_regs_activated]: 638
@c[2, 7, syscalls_with_kfpu]: 3

@other[1]: 5
"""
    assert bpftrace_prog.parse(out) == {1: {236: {"kfpu_begin": 1800, "tp:x86_fpu_regs_activated": 638}},
                                        2: {7: {"syscalls_with_kfpu": 3}}}
    assert bpftrace_prog.windows(out) == [{"window": 1, "ns": 1000, "cpu": 0}, {"window": 0, "ns": 5000, "cpu": 1}]
    assert bpftrace_prog.lost_lines(out) == 3


# ---- windows and counting ----------------------------------------------------------------------------
def _ev(ts, kind, tid, tgid=None, cpu=0, a0=0, a1=0, flags=0):
    return (ts, a0, a1, tid, tgid if tgid is not None else tid, cpu, int(kind), flags, 0)


def _batch(rows):
    return np.array(rows, dtype=EVENT_DTYPE)


def test_window_bounds_from_markers():
    markers = [{"window": 1, "ns": 100, "cpu": 0}, {"window": 0, "ns": 200, "cpu": 1},
               {"window": 2, "ns": 300, "cpu": 1}, {"window": 3, "ns": 400, "cpu": 0},
               {"window": 0, "ns": 500, "cpu": 0}]
    assert analysis.window_bounds(markers) == {
        1: {"lo": 100, "hi": 200, "cpu_lo": 0, "cpu_hi": 1},
        2: {"lo": 300, "hi": 400, "cpu_lo": 1, "cpu_hi": 0},
        3: {"lo": 400, "hi": 500, "cpu_lo": 0, "cpu_hi": 0}}


def test_counter_per_window_and_tgid_exact_and_inferred_apart():
    bounds = {1: {"lo": 100, "hi": 200, "cpu_lo": 0, "cpu_hi": 0}, 2: {"lo": 300, "hi": 400, "cpu_lo": 0, "cpu_hi": 0}}
    c = analysis.WindowCounter(bounds)
    c.feed(_batch([
        _ev(50, Kind.KFPU_BEGIN, 7),                           # before every window: not counted
        _ev(120, Kind.KFPU_BEGIN, 7), _ev(121, Kind.XSAVE, 7, a1=XsaveCause.KFPU), _ev(122, Kind.KFPU_END, 7),
        _ev(130, Kind.KFPU_BEGIN, 0, cpu=1),                   # the idle task, in interrupt context
        _ev(150, Kind.XSAVE, 8, tgid=7, a1=XsaveCause.SWITCH),  # a thread of 7
        _ev(250, Kind.XRSTOR, 7),                              # between windows
        _ev(310, Kind.KFPU_BEGIN, 9, flags=FLAG_INFERRED), _ev(310, Kind.XSAVE, 9, a1=XsaveCause.KFPU, flags=FLAG_INFERRED),
        _ev(399, Kind.XRSTOR, 9), _ev(400, Kind.XRSTOR, 9),    # hi is exclusive
        _ev(350, Kind.SWITCH, 9),                              # not an FPU fact
    ]))
    assert c.counts[1][7] == {"kfpu_begin": 1, "kfpu_end": 1, "xsave": 2, "xsave_kfpu": 1, "xsave_switch": 1}
    assert c.counts[1][0] == {"kfpu_begin": 1}
    assert c.counts[2][9] == {"kfpu_begin_inferred": 1, "xsave_inferred": 1, "xsave_kfpu_inferred": 1, "xrstor": 1}
    assert 250 not in [e for e in c.counts] and set(c.counts) == {1, 2}
    assert c.edge[1]["lo"] == 1          # the idle task's begin on CPU 1, 30 us from the marker of CPU 0


def test_window_batches_keep_the_task_table():
    b = _batch([(10, *comm_to_args("kworker/u8:1"), 5, 5, 0, int(Kind.COMM), 0, 0),
                _ev(20, Kind.KFPU_BEGIN, 5), _ev(120, Kind.KFPU_BEGIN, 5), _ev(220, Kind.KFPU_BEGIN, 5)])
    got = np.concatenate(list(analysis.window_batches([b], 100, 200)))
    assert [int(k) for k in got["kind"]] == [Kind.COMM, Kind.KFPU_BEGIN] and list(got["ts_ns"]) == [10, 120]


def test_program_misses_per_tool_and_fact():
    progs = [{"type": "kprobe", "name": "kernel_fpu_begi", "recursion_misses": 8},
             {"type": "kprobe", "name": "save_fpregs_to_", "recursion_misses": 3},
             {"type": "tracing", "name": "kfunc__kernel_fpu_begin_mask", "recursion_misses": 2},
             {"type": "tracing", "name": "kernel_fpu_end"},
             {"type": "kprobe", "name": "fpt_kprobe_xsav", "recursion_misses": 1},
             {"type": "tracepoint", "name": "sys_enter", "recursion_misses": 50}]
    m = analysis.program_misses(progs)
    assert m["bpftrace"] == {"kfpu_begin": 8, "xsave": 3}
    assert m["fentry"] == {"kfpu_begin": 2, "kfpu_end": 0}
    assert m["kprobe"] == {"xsave": 1}


# ---- comparison rows and documents -------------------------------------------------------------
def _result():
    fpt = {"events": {1: {7: {"kfpu_begin": 18, "kfpu_end": 18, "xsave": 3, "xrstor": 2, "user_return": 3,
                              "xsave_kfpu": 1, "xsave_switch": 2},
                          0: {"kfpu_begin": 4, "kfpu_end": 4}}},
           "model": {1: {"per_tgid": {7: {"xsave": 3, "xrstor": 2, "kfpu_sections": 18}, 0: {"kfpu_sections": 4}},
                         "tasks": {7: {"comm": "python3", "kthread": False}}}}}
    bt = {7: {"kfpu_begin": 18, "kfpu_end": 18, "xsave": 3, "xrstor": 2, "user_return": 3},
          0: {"kfpu_begin": 5, "kfpu_end": 5}}
    return fpt, bt


def test_compare_rows_every_process_either_side_saw():
    fpt, bt = _result()
    bt[99] = {"xrstor": 1}                                      # only bpftrace saw 99: still a row
    rows = {r["tgid"]: r for r in lab.compare_rows("fentry", 1, fpt, bt)}
    assert set(rows) == {0, 7, 99}
    assert rows[0]["fpt_kfpu_begin"] == 4 and rows[0]["bt_kfpu_begin"] == 5 and rows[0]["model_kfpu_sections"] == 4
    assert rows[7]["fpt_xsave_switch"] == 2 and rows[7]["model_xrstor"] == 2
    assert rows[99]["fpt_xrstor"] == 0 and rows[99]["bt_xrstor"] == 1


def _lab_result():
    fpt, bt = _result()
    est = {"measured": {"xsave": 3, "xrstor": 2, "bytes": 3000, "cycles": 900},
           "policies": {"eager": {"xsave": 20, "xrstor": 19, "avoidable_xrstor": 17, "bytes": 23000, "cycles": 7000},
                        "deferred": {"xsave": 3, "xrstor": 2, "avoidable_xrstor": 0, "bytes": 3000, "cycles": 900}},
           "self_check": 1.0, "cost_model": "builtin-default",
           "cost_model_detail": {"xsave_cycles": 120, "xrstor_cycles": 300}}
    fpt["model"][1].update(totals={"kfpu_sections": 22, "kfpu_sections_inferred": 0, "kfpu_p50_ns": 4096,
                                   "kfpu_p99_ns": 65536, "kfpu_max_ns": 70000},
                           callers=[{"caller": "sha256_avx2_update+0x2c", "sections": 16, "p50_ns": 4096,
                                     "p99_ns": 8192, "max_ns": 9000},
                                    {"caller": "blake2s_compress+0x3e", "sections": 0}],
                           estimate=est)
    res = {"kernel": {"label": "6.1", "release": "6.1.0-57-amd64", "package_version": "6.1.192-3",
                      "returncode": 0, "reason": "", "guest_wall_s": 300.0, "accel": "tcg"},
           "finished_wall": 1.8e9, "modes_run": ["fentry"],
           "windows": {"1": {"lo": 1, "hi": 2, "workload": "sha256"}},
           "guest": {"bpftrace": {"probes": {"kfpu_begin": "kernel_fpu_begin_mask", "xrstor": "restore_fpregs_from_fpstate",
                                             "user_return": "switch_fpu_return"}},
                     "workloads": [{"name": "sha256", "args": [1, 65536], "pid": 7}]},
           "rows": lab.compare_rows("fentry", 1, fpt, bt),
           "modes": {"fentry": lab._jsonable(fpt) | {"attach": {"kfpu_begin": "fentry:kernel_fpu_begin_mask"},
                                                     "meta": {"tif_need_fpu_load_bit": 14, "transport": {"kind": "ringbuf"}}}},
           "bpftool": {"misses": {"bpftrace": {"kfpu_begin": 0}, "fentry": {}, "kprobe": {}}}}
    return lab._jsonable(res)


def test_results_show_every_process_and_mark_differences():
    text = report.render_results({"6.1": _lab_result()})
    assert "| sha256 | 7 python3 | 18 / 18 | 3 / 3 | 2 / 2 | 3 / 3 | 18 / 3 / 2 |" in text
    assert "| sha256 | 0 idle (swapper) | 4 / 5 **(-1)** |" in text      # a difference is visible
    assert "| 6.1 | fentry | 2 | 1 | kfpu_begin +0/−1" in text            # and summed per mode
    assert "fentry:kernel_fpu_begin_mask" in text


def test_cases_table_eager_against_measured():
    res = _lab_result()
    table = cases.summary_table({"6.1": res}, None)
    assert "| sha256 | 6.1 | 22 | ≤ 4.1 / ≤ 66 / 70 | 3 | 2 | 19 | 17 | 17 (89%) | 20,000 | 6,100 | 100.00% |" in table
    assert "cycles saved (`builtin-default`)" in table
    doc = cases.render({"6.1": res}, None)
    assert "`sha256_avx2_update+0x2c` | 16 |" in doc and "blake2s_compress+0x3e" not in doc   # no 0-section rows
    assert "builtin-default" in doc and "| 6.1 | 18 | `sha256_avx2_update+0x2c` 16 |" in doc
    assert "6.1.0-57-amd64" in doc


# ---- kernel fetcher ----------------------------------------------------------------------------------
def test_kernel_package_closure_follows_only_this_build(monkeypatch):
    deps = {"linux-image-7.2.13+deb14-amd64": "linux-base-7.2.13+deb14-amd64 (= 1), dracut | initramfs-tools, "
                                              "linux-modules-7.2.13+deb14-amd64 (= 1)",
            "linux-headers-7.2.13+deb14-amd64": "gcc-16-for-host, linux-headers-7.2.13+deb14-common (= 1), "
                                                "linux-kbuild-7.2.13+deb14",
            "linux-base-7.2.13+deb14-amd64": "", "linux-modules-7.2.13+deb14-amd64": "",
            "linux-headers-7.2.13+deb14-common": "", "linux-kbuild-7.2.13+deb14": "libc6"}

    class FakeApt:
        def show(self, pkg):
            return {"Depends": deps[pkg]} if pkg in deps else {}

    got = kernels.package_closure(FakeApt(), "7.2.13+deb14",
                                  ["linux-image-7.2.13+deb14-amd64", "linux-headers-7.2.13+deb14-amd64"])
    assert sorted(got) == sorted(deps)


def test_dep_names_take_first_alternative_without_versions():
    assert kernels._dep_names("a (>= 1), b | c, d:any") == ["a", "b", "d"]


def test_every_era_has_a_kernel():
    """SPEC 4's columns from 5.2 on: 5.10 (bullseye), 6.1, 6.12, 7.x."""
    assert set(kernels.KERNELS) >= {"5.10", "6.1", "6.12", "7"}
    assert kernels.ALIASES["bullseye"] == "5.10"
    apt_lines = "\n".join(kernels.PrivateApt.SUITES + kernels.PrivateApt.SECURITY_SUITES)
    assert "bullseye-security" in apt_lines and "bullseye" in kernels.PrivateApt.SUITES


def test_own_misses_from_the_recordings_meta():
    meta = {"recursion_misses": {"kernel_fpu_begin_mask": 624, "sched_switch": 80, "kprobe:xsave": 3,
                                 "copy_fpregs_to_fpstate": 1}}
    assert analysis.own_misses(meta) == {"kfpu_begin": 624, "xsave": 4}
    assert analysis.own_misses({"recursion_misses": {}}) == {}
    assert analysis.own_misses({}) is None            # an older recorder, or a kernel < 5.12


def test_kprobe_skips_are_hits_minus_runs():
    probes = {"kfpu_begin": "kernel_fpu_begin_mask", "kfpu_end": "kernel_fpu_end", "xsave": "save_fpregs_to_fpstate"}

    def snap(hits, runs):
        return {"kprobes": {f: {"hits": h, "missed": 0} for f, h in hits.items()},
                "programs": [{"type": "kprobe", "name": n, "run_cnt": r} for n, r in runs.items()]}
    ready = snap({"kfpu_begin": 10, "kfpu_end": 10, "xsave": 50},
                 {"kernel_fpu_begi": 10, "kernel_fpu_end": 10, "save_fpregs_to_": 50, "fpt_kprobe_kfpu": 20,
                  "fpt_kprobe_xsav": 50})
    done = snap({"kfpu_begin": 110, "kfpu_end": 110, "xsave": 450},
                {"kernel_fpu_begi": 109, "kernel_fpu_end": 110, "save_fpregs_to_": 447, "fpt_kprobe_kfpu": 219,
                 "fpt_kprobe_xsav": 450})
    got = analysis.kprobe_skips({"ready": ready, "done": done}, probes)
    assert got["bpftrace"] == {"kfpu_begin": 1, "kfpu_end": 0, "xsave": 3}
    assert got["kprobe"] == {"kfpu_begin": 1, "kfpu_end": 1, "xsave": 0}     # begin+end share a name
    assert analysis.kprobe_skips(None, probes) == {}


def _drop_snapshots(entry: tuple[int, int], int3: tuple[int, int]):
    """Two skip-evidence snapshots: kfpu_begin's entry and int3 kprobes grow by these (hits, missed)."""
    def snap(e, i):
        return {"kprobes": {"kfpu_begin": {"hits": e[0], "missed": e[1]}},
                "int3": {"kfpu_begin": {"hits": i[0], "missed": i[1]}}, "programs": []}
    twins = {"kfpu_begin": {"name": "vmlab_kfpu_begin_int3", "at": "kernel_fpu_begin_mask+5", "offset": 5,
                            "flags": "", "entry_flags": "[FTRACE]"},
             "xsave": {"error": "no instruction boundary past the fentry site within 16 bytes"}}
    return {"ready": snap((100, 0), (100, 0)), "done": snap((100 + entry[0], entry[1]), (100 + int3[0], int3[1]))}, twins


def test_ftrace_drops_are_int3_calls_minus_entry_calls():
    # a reentry the int3 kprobe counts as missed is a call too; the entry kprobe's 1 drop is in neither of its figures
    skips, twins = _drop_snapshots(entry=(500, 2), int3=(502, 1))
    got = analysis.ftrace_drops(skips, twins)
    assert got["kfpu_begin"] == {"at": "kernel_fpu_begin_mask+5", "flags": "", "entry_flags": "[FTRACE]",
                                 "entry_hits": 500, "entry_missed": 2, "int3_hits": 502, "int3_missed": 1, "drops": 1}
    assert got["xsave"] == {"error": "no instruction boundary past the fentry site within 16 bytes"}
    assert "drops on kernel_fpu_begin_mask in this run: 1 (int3 503, entry 502)" in analysis.drops_note(got, "kfpu_begin")
    assert "not measured" in analysis.drops_note({}, "kfpu_begin")
    assert analysis.ftrace_drops(None, twins) == {} and analysis.ftrace_drops(skips, {}) == {}


def _one_over(drops: tuple[int, int] | None = None, mode: str = "fentry", tracer: bool = True) -> dict:
    """The lab result above with one difference: fputrace --mode MODE saw 5 kernel FPU begins of
    the idle task (0) where bpftrace's kprobe saw 4, in a tracer's row or not; the drop counter
    on kernel_fpu_begin_mask measured (entry calls, int3 calls) = drops."""
    res = _lab_result()
    for r in res["rows"]:
        if r["tgid"] == 0:
            r.update(mode=mode, fpt_kfpu_begin=5, bt_kfpu_begin=4, fpt_kfpu_end=4, bt_kfpu_end=4, model_kfpu_sections=4)
            r["tgid"] = 9 if tracer else 0
        r["mode"] = mode
    res["guest"]["bpftrace"]["pid"] = 9
    res["modes"][mode] = res["modes"].pop("fentry")
    res["modes_run"] = [mode]
    if drops:
        skips, twins = _drop_snapshots(entry=(drops[0], 0), int3=(drops[1], 0))
        res["ftrace_drops"] = analysis.ftrace_drops(skips, twins)
    return res


def _kfpu_begin(res: dict, mode: str = "fentry") -> dict:
    rows = [r for r in res["rows"] if r["mode"] == mode]
    return analysis.compare(res, mode, rows, [("fpt_kfpu_begin", "bt_kfpu_begin")])[0]


def test_only_measured_reasons_explain_a_difference_in_a_tracer_too():
    # no slack for the tracers' own rows: the one extra begin is unexplained without a measurement
    c = _kfpu_begin(_one_over(tracer=True))
    assert (c["counted"], c["over"], c["in_tracers"], c["bpftrace_missed"], c["explained"]) == ((1, 0), 1, 1, 0, False)
    # an ftrace-layer drop on that function is a miss of bpftrace's kprobe: fentry may be 1 over
    c = _kfpu_begin(_one_over(drops=(500, 501)))
    assert (c["bpftrace_missed"], c["ftrace_dropped"], c["explained"]) == (1, 1, True)
    # the int3 counter short of the entry (a call crossing a snapshot) explains nothing
    assert not _kfpu_begin(_one_over(drops=(501, 500)))["explained"]
    # ...and a drop never lets fentry fall short: only fputrace's own misses do
    res = _one_over(drops=(500, 501))
    res["rows"][[r["tgid"] for r in res["rows"]].index(9)].update(fpt_kfpu_begin=3)
    c = _kfpu_begin(res)
    assert (c["counted"], c["under"], c["fputrace_missed"], c["explained"]) == ((0, 1), 1, 0, False)
    res["bpftool"]["misses"]["fentry"] = {"kfpu_begin": 1}
    assert _kfpu_begin(res)["explained"]


def test_a_drop_is_a_miss_of_both_kprobe_tools():
    res = _one_over(drops=(500, 501), mode="kprobe")
    bt, own = analysis.misses(res, "kprobe")
    assert bt["kfpu_begin"] == 1 and own["kfpu_begin"] == 1       # the kprobe recorder sat on the same address
    assert analysis.misses(_one_over(drops=(500, 501)), "fentry")[1].get("kfpu_begin", 0) == 0


def test_window_edge_events_explain_only_their_own_process():
    res = _one_over(tracer=False)
    res["modes"]["fentry"]["edge_by_tgid"] = {"1": {"7": {"kfpu_begin": 1}}}      # another process's edge event
    assert not _kfpu_begin(res)["explained"]
    res["modes"]["fentry"]["edge_by_tgid"] = {"1": {"0": {"kfpu_begin": 1}}}
    c = _kfpu_begin(res)
    assert (c["at_edge"], c["over"], c["explained"]) == (1, 0, True)


def test_results_show_ftrace_drops_and_what_is_unexplained():
    text = report.render_results({"6.1": _one_over(drops=(500, 501))})
    assert "| 6.1 | kfpu_begin | kernel_fpu_begin_mask [FTRACE] | kernel_fpu_begin_mask+5  | 500 + 0 | 501 + 0 | +1 |" in text
    assert "| 6.1 | xsave | no instruction boundary" in text
    # the model's sections agree (4 / 4): only the events' count is listed, with the misses the rule used
    assert ("| 6.1 | fentry | 2 | 1 | kfpu_begin +1/−0 (1 in the tracers' own processes; bpftrace missed 1; "
            "1 ftrace-layer drops among the kprobes' misses) | kfpu_begin 1 | 0 |") in text
    text = report.render_results({"6.1": _one_over()})
    assert "kfpu_begin +1/−0 (1 in the tracers' own processes; **unexplained**: +1/−0 beyond the edges and misses)" in text


def test_trace_pairing_finds_int3_hits_without_an_entry_hit():
    import importlib.util, sys
    spec = importlib.util.spec_from_file_location("guest_lab", lab.GUEST_DIR / "lab.py")
    guest = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(lab.GUEST_DIR))
    spec.loader.exec_module(guest)
    twins = {"kfpu_begin": {"name": "vmlab_kfpu_begin_int3"}, "xsave": {"name": "vmlab_xsave_int3"}}
    lines = [
        "# tracer: nop",
        "          python3-354     [001] d..1.   100.000001: vmlab_kfpu_begin: (kernel_fpu_begin_mask+0x0/0x130)",
        "           <idle>-0       [000] d.h1.   100.000002: vmlab_xsave: (save_fpregs_to_fpstate+0x0/0x90)",
        # an interrupt's call nested between the entry and the int3 site of the task's own call
        "          python3-354     [001] d.h2.   100.000003: vmlab_kfpu_begin: (kernel_fpu_begin_mask+0x0/0x130)",
        "          python3-354     [001] d.h2.   100.000004: vmlab_kfpu_begin_int3: (kernel_fpu_begin_mask+0x5/0x130)",
        "          python3-354     [001] d..1.   100.000005: vmlab_kfpu_begin_int3: (kernel_fpu_begin_mask+0x5/0x130)",
        "           <idle>-0       [001] d.h1.   100.000006: vmlab_xsave_int3: (save_fpregs_to_fpstate+0x5/0x90)",
        "   fputrace-281   [000] ....   100.000007: vmlab_kfpu_begin_int3: (kernel_fpu_begin_mask+0x5/0x130)",
        "           <idle>-0       [000] d.h1.   100.000008: vmlab_xsave_int3: (save_fpregs_to_fpstate+0x5/0x90)",
    ]
    got = guest.unpaired_calls(lines, twins)
    # fputrace's int3 hit had no entry hit; the idle task's xsave entry on CPU 0 pairs with the int3
    # hit on CPU 0, not with the one on CPU 1
    assert got["events"] == 8 and got["entries_left"] == 0
    assert got["drops"] == [{"fact": "xsave", "ts": 100.000006, "cpu": 1, "pid": 0, "comm": "<idle>"},
                            {"fact": "kfpu_begin", "ts": 100.000007, "cpu": 0, "pid": 281, "comm": "fputrace"}]
    traced = analysis.traced_drops(got, {3: {"lo": 100_000_006_500, "hi": 100_000_010_000}})
    assert [d["window"] for d in traced["drops"]] == [0, 3]


def test_a_boot_without_reference_counts_is_booted_once_more(tmp_path):
    """lab.failed_boot: a panic or stall, or bpftrace ending without its counts (killed after
    SIGINT), makes run_lab boot once more; a boot that finished with bpftrace's counts does not."""
    import json
    from tests.vmlab import qemu
    (tmp_path / "out").mkdir()
    done = qemu.GuestResult(returncode=0, output="", console="", run_dir=tmp_path, accel="tcg", wall_s=400.0)
    bt = {"ready": True, "returncode": -9, "counts": {}, "error": "no counts: WINDOW 0 161893761135 1"}
    (tmp_path / "out" / "lab.json").write_text(json.dumps({"bpftrace": bt}))
    got = lab.failed_boot(done, tmp_path)
    assert got["bug"] == ("bpftrace (the reference) printed no counts, exit status -9: "
                          "no counts: WINDOW 0 161893761135 1")
    bt["counts"] = {"1": {"7": {"kfpu_begin": 18}}}
    (tmp_path / "out" / "lab.json").write_text(json.dumps({"bpftrace": bt}))
    assert lab.failed_boot(done, tmp_path) is None
    stalled = qemu.GuestResult(returncode=None, output="", console="", run_dir=tmp_path, accel="tcg",
                               wall_s=200.0, stalled=True, stalled_s=181.0)
    assert "guest stalled" in lab.failed_boot(stalled, tmp_path)["bug"]
    (tmp_path / "out" / "lab.json").unlink()                     # the guest lab never wrote its result
    assert lab.failed_boot(done, tmp_path) is None
