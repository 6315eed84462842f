"""Import the text of ``perf script`` (hosts where only perf is allowed; SPEC 2).

Record and convert (the -F layout gives nanoseconds and the tgid; the default layout also works,
with microsecond times and tgid = tid):

    perf record -e 'x86_fpu:*' -e sched:sched_switch -e 'sched:sched_process_*' -a -k mono -- sleep 10
    perf script -F comm,tid,pid,cpu,time,event,trace --ns --show-lost-events --header > run.txt
    fputrace import run.txt -o run.fpt

Mapping to the event model (SPEC 5.1; ``tid`` is the task running on the line's CPU unless said):
  x86_fpu_regs_deactivated   XSAVE  a0 xfeatures, a1 cause SWITCH (the outgoing task's save),
                             except when x86_fpu_dropped of the same task and fpu follows it at
                             once on that CPU: fpu__drop() (exit, exec) deactivates without saving
                             (counted in meta ``deactivated_not_save``, as the live capture does)
  x86_fpu_regs_activated     XRSTOR a0 xfeatures, a1 cause UNKNOWN (return path, sigreturn or
                             KVM: the tracepoint does not say which; the model infers it)
  x86_fpu_before_save        XSAVE cause SYNC when its ``load`` field is 0 (or
                             absent: < 5.2 kernels always save): fpu_sync_fpstate() saves only live
                             registers. x86_fpu_after_save closes the same save: not counted again.
  x86_fpu_copy_dst           XSAVE cause FORK, same ``load`` rule: fpu_clone() saves the
                             parent's registers into the child (6.x: always, after restoring them
                             if they were not live, so ``load`` is 0; 5.x: only live ones).
  other x86_fpu events       not FPU traffic by themselves (dropped, copy_src, init_state,
                             xstate_check_failed, before/after_restore of old kernels): counted in
                             meta ``ignored_events``, not events.
  sched_switch               SWITCH tid = prev_pid, a0 = next_pid, a1 = prev_state as the kernel's
                             TASK_REPORT bits (S 0x1, D 0x2, T 0x4, t 0x8, X 0x10, Z 0x20, P 0x40,
                             I 0x80; R and R+ (preempted) = 0)
  sched_process_fork         FORK tid = parent, a0 = child_pid, a1 = child tgid (from the child's
                             own lines when the pid field is there, else child_pid)
  sched_process_exec / exit  EXEC / EXIT of ``pid``
  kvm:kvm_fpu                KVM_FPU a0 = 1 (load) / 0 (unload)
  PERF_RECORD_LOST[_SAMPLES] LOST on the line's CPU, a0 = the count (perf script --show-lost-events)
  raw_syscalls:*, others     ignored (counted in meta ``ignored_events``)

Task names become COMM records (from the comm column, prev_comm/next_comm, exec); kernel threads
are marked with TASK records by evidence: the idle task (tid 0), kthreadd (2) and its children, and
tasks named like kernel threads that never appear in an x86_fpu event (kernel threads have no user
FPU state). meta ``import_notes`` says what was approximated. meta ``xstate``: the components the
trace names (xcomp_bv, xfeatures) with their architectural sizes, for the bytes and classes.
"""
from __future__ import annotations

import functools
import operator
import re
from collections import Counter, defaultdict

import numpy as np

from ..capture import xstate
from ..errors import FileFormatError
from ..events import TASK_KTHREAD, Kind, XrstorCause, XsaveCause, comm_to_args
from . import EventRows

LINE = re.compile(
    r"^\s*(?P<comm>.*?)\s+(?:(?P<pid>-?\d+)/)?(?P<tid>-?\d+)\s+\[(?P<cpu>\d+)\]\s+"
    r"(?P<sec>\d+)\.(?P<frac>\d+):\s+"
    r"(?:(?P<event>[^\s:]+:[^\s:]+):|(?P<record>PERF_RECORD_\w+))\s*(?P<trace>.*)$")
NO_CPU_LINE = re.compile(r"^\s*.*?\s+(?:-?\d+/)?-?\d+\s+\d+\.\d+:\s+[^\s:]+:[^\s:]+:")
HEADER = re.compile(r"^#\s*(?P<key>[\w ]+?)\s*:\s*(?P<value>.*)$")
STACK_FRAME = re.compile(r"^\s+[0-9a-f]+\s")
XFEATURES = re.compile(r"xfeatures: ([0-9a-fA-F]+)")
FPU_PTR = re.compile(r"x86/fpu: (?:0x)?([0-9a-fA-F]+)")
LOAD = re.compile(r"load: (\d+)")
XCOMP = re.compile(r"xcomp_bv: ([0-9a-fA-F]+)")
SWITCH = re.compile(r"prev_comm=(?P<pc>.*?) prev_pid=(?P<pp>-?\d+) prev_prio=-?\d+ prev_state=(?P<ps>\S+)"
                    r" ==> next_comm=(?P<nc>.*?) next_pid=(?P<np>-?\d+) next_prio=-?\d+")
FORK = re.compile(r"comm=(?P<pc>.*?) pid=(?P<pp>\d+)(?: child_comm=(?P<cc>.*?))? child_pid=(?P<cp>\d+)")
PID_FIELD = re.compile(r"\bpid=(\d+)")
LOST = re.compile(r"lost (\d+)")
PLACEHOLDER_COMM = re.compile(r"^:-?\d+$")      # perf's name for a thread whose comm it never saw
CLOCKID = re.compile(r"use_clockid = 1.*?clockid = (\d+)")

# sched_switch prev_state letters -> the kernel's TASK_REPORT bits (include/linux/sched.h)
STATE_BITS = {"S": 0x1, "D": 0x2, "T": 0x4, "t": 0x8, "X": 0x10, "Z": 0x20, "P": 0x40, "I": 0x80,
              "K": 0x100, "W": 0x200, "N": 0x400}
CLOCK_NAMES = {0: "CLOCK_REALTIME", 1: "CLOCK_MONOTONIC", 4: "CLOCK_MONOTONIC_RAW", 7: "CLOCK_BOOTTIME",
               11: "CLOCK_TAI"}
KTHREAD_NAME = re.compile(
    r"^(swapper|kthreadd|kworker/|ksoftirqd/|migration/|rcu_|rcuo|rcub/|cpuhp/|idle_inject/|watchdog"
    r"|irq/|kcompactd|kswapd|khugepaged|kdevtmpfs|kauditd|oom_reaper|writeback|kblockd|jbd2/|ext4-"
    r"|scsi_|khungtaskd|ksmd|kintegrityd|kthrotld|mm_percpu_wq|napi/|hwrng|psimon|zswap|ttm|nvme"
    r"|xfs|btrfs-|card\d+-|pool_workqueue|kstrp|ipv6_addrconf|netns|inet_frag|blkcg_punt|md$|loop\d)")
# logical events (fputrace.capture.plan) and the tracepoints that show them
LOGICAL_TRACEPOINTS = {
    "xsave": "x86_fpu:x86_fpu_regs_deactivated", "xrstor": "x86_fpu:x86_fpu_regs_activated",
    "fork_save": "x86_fpu:x86_fpu_copy_dst",
    "switch": "sched:sched_switch", "fork": "sched:sched_process_fork",
    "exec": "sched:sched_process_exec", "exit": "sched:sched_process_exit", "kvm": "kvm:kvm_fpu",
}

# plain ints: IntEnum attribute access costs ~0.2 us per use in the per-line path
K_SWITCH, K_XSAVE, K_XRSTOR, K_FORK, K_EXEC, K_EXIT, K_KVM, K_LOST, K_COMM, K_TASK = (
    int(k) for k in (Kind.SWITCH, Kind.XSAVE, Kind.XRSTOR, Kind.FORK, Kind.EXEC, Kind.EXIT, Kind.KVM_FPU,
                     Kind.LOST, Kind.COMM, Kind.TASK))
SAVE_SWITCH, SAVE_SYNC, SAVE_FORK = int(XsaveCause.SWITCH), int(XsaveCause.SYNC), int(XsaveCause.FORK)
RESTORE_UNKNOWN = int(XrstorCause.UNKNOWN)

HINT = "make it with: perf script -F comm,tid,pid,cpu,time,event,trace --ns --show-lost-events --header"


def looks_like_event(line: str) -> bool:
    return LINE.match(line) is not None


def is_header_line(line: str) -> bool:
    return line.startswith("# ") and HEADER.match(line) is not None and (
        "os release" in line or "perf version" in line or line.startswith("# event :"))


def recorded_policy_of(release: str) -> str | None:
    m = re.match(r"(\d+)\.(\d+)", release or "")
    if not m:
        return None
    return "deferred" if (int(m.group(1)), int(m.group(2))) >= (5, 2) else "eager"


class PerfScriptImporter:
    def __init__(self, src: str, kernel_release: str | None = None):
        self.src = src
        self.kernel_release = kernel_release
        self.rows = EventRows()
        self.header: dict[str, str] = {}
        self.header_events: list[str] = []
        self.clockid: int | None = None
        self.counts: Counter = Counter()           # tracepoint lines seen, by event name
        self.ignored: Counter = Counter()
        self.lost_per_cpu: Counter = Counter()
        self.comm_of: dict[int, str] = {}
        self.tgid_of: dict[int, int] = {}
        self.first_ts: dict[int, int] = {}
        self.fpu_tasks: set[int] = set()          # seen as current in an x86_fpu event: user tasks
        self.kthread_children: set[int] = set()
        self.forks: list[int] = []                # row numbers of FORK events, fixed up in finish()
        self.has_pid_field = None
        self.frac_digits = 9
        self.xcomp_bv: set[int] = set()
        self.xfeatures_seen = 0
        self.last_ts = 0
        self.current: dict[int, int] = {}        # cpu -> task switched to last
        self.switch_prev: dict[int, int] = {}    # cpu -> task switched from last
        self.tid_recovered = 0
        self.in_header = False
        self.last_deact: dict[int, tuple[int, int, str | None]] = {}   # cpu -> (row, tid, fpu) of a
        self.drop_rows: list[int] = []           # regs_deactivated that fpu__drop() made: no save

    # -------------------------------------------------------------------- parsing
    def feed_lines(self, lines) -> None:
        in_event = False
        for lineno, line in enumerate(lines, 1):
            if line.startswith("# ========"):      # perf's header block starts and ends with this
                self.in_header = not self.in_header
                continue
            if not line.strip():
                in_event = False
                continue
            if line.startswith("#"):
                self._header_line(line)
                continue
            if self.in_header:
                continue                           # a header value spanning lines (a cmdline with newlines)
            m = LINE.match(line)
            if m is None:
                if in_event and STACK_FRAME.match(line):
                    continue                       # a call chain under the event (perf script -G)
                if NO_CPU_LINE.match(line):
                    raise FileFormatError(f"{self.src}:{lineno}: no [cpu] column: record system-wide with "
                                          f"`perf record -a` (FPU ownership is followed per CPU) and keep "
                                          f"cpu in perf script -F")
                raise FileFormatError(f"{self.src}:{lineno}: not a perf script event line: "
                                      f"{line.strip()[:100]!r}; {HINT}")
            in_event = True
            try:
                self._event(m)
            except (ValueError, KeyError) as err:
                raise FileFormatError(f"{self.src}:{lineno}: cannot read the fields of "
                                      f"{m.group('event') or m.group('record')}: {err}") from None

    def _header_line(self, line: str) -> None:
        m = HEADER.match(line)
        if not m:
            return
        key, value = m.group("key").strip(), m.group("value").strip()
        if key == "event":
            name = re.search(r"name = ([^,]+)", value)
            if name:
                self.header_events.append(name.group(1).strip())
            c = CLOCKID.search(value)
            if c:
                self.clockid = int(c.group(1))
        else:
            self.header.setdefault(key, value)

    def _task(self, ts: int, tid: int, tgid: int | None, comm: str | None) -> None:
        if tid not in self.first_ts:
            self.first_ts[tid] = ts
        if tgid is not None and tgid > 0:
            self.tgid_of[tid] = tgid
        if comm and self.comm_of.get(tid) != comm and not PLACEHOLDER_COMM.match(comm):
            self.comm_of[tid] = comm
            a0, a1 = comm_to_args(comm)
            self.rows.add(ts, 0, tid, self.tgid_of.get(tid, tid), K_COMM, 0, a0, a1)

    def _event(self, m: re.Match) -> None:
        frac = m.group("frac")
        self.frac_digits = min(self.frac_digits, len(frac))
        ts = int(m.group("sec")) * 1_000_000_000 + int(frac[:9].ljust(9, "0"))
        cpu = int(m.group("cpu"))
        tid = int(m.group("tid"))
        pid = m.group("pid")
        if self.has_pid_field is None:
            self.has_pid_field = pid is not None
        tgid = int(pid) if pid is not None else None
        trace = m.group("trace")
        self.last_ts = max(self.last_ts, ts)
        record = m.group("record")
        if record:
            if record.startswith("PERF_RECORD_LOST"):
                n = int(LOST.search(trace).group(1)) if LOST.search(trace) else 0
                self.lost_per_cpu[cpu] += n
                self.rows.add(ts, cpu, 0, 0, K_LOST, 0, n, 0)
            else:
                self.ignored[record] += 1
            return
        event = m.group("event")
        self.counts[event] += 1
        if tid < 0 and event.startswith("x86_fpu:"):
            # perf prints tid -1 for a task that is exiting (its pid is already unhashed): it is
            # the task the scheduler last switched from (save at switch-out) or to, on this CPU
            known = (self.switch_prev if event.endswith("regs_deactivated") else self.current).get(cpu)
            if known is None:
                self.ignored["unattributable (tid -1)"] += 1
                return
            tid = known
            self.tid_recovered += 1
        if tid >= 0:
            self._task(ts, tid, tgid, m.group("comm").strip())
        g = tgid if tgid is not None and tgid > 0 else self.tgid_of.get(tid, tid)
        add = self.rows.add
        if event.startswith("x86_fpu:"):
            name = event[8:]
            if tid > 0:
                self.fpu_tasks.add(tid)
            xf = XFEATURES.search(trace)
            xfeatures = int(xf.group(1), 16) if xf else 0
            self.xfeatures_seen |= xfeatures
            xc = XCOMP.search(trace)
            if xc:
                self.xcomp_bv.add(int(xc.group(1), 16))
            load = LOAD.search(trace)
            regs_were_live = load is None or load.group(1) == "0"
            fpu = FPU_PTR.search(trace)
            fpu = fpu.group(1) if fpu else None
            deact = self.last_deact.pop(cpu, None)
            if name == "x86_fpu_regs_deactivated":
                self.last_deact[cpu] = (len(self.rows), tid, fpu)
                add(ts, cpu, tid, g, K_XSAVE, 0, xfeatures, SAVE_SWITCH)
            elif name == "x86_fpu_dropped" and deact is not None and deact[1:] == (tid, fpu):
                # fpu__drop() (exit, exec): fpregs_deactivate() then this, back to back with
                # preemption off; that deactivation saved nothing (BPF: deactivated_not_save)
                self.drop_rows.append(deact[0])
                self.ignored[event] += 1
            elif name == "x86_fpu_regs_activated":
                add(ts, cpu, tid, g, K_XRSTOR, 0, xfeatures, RESTORE_UNKNOWN)
            elif name == "x86_fpu_before_save" and regs_were_live:
                add(ts, cpu, tid, g, K_XSAVE, 0, xfeatures, SAVE_SYNC)
            elif name == "x86_fpu_copy_dst" and regs_were_live:
                add(ts, cpu, tid, g, K_XSAVE, 0, xfeatures, SAVE_FORK)
            elif name not in ("x86_fpu_before_save", "x86_fpu_copy_dst"):
                self.ignored[event] += 1
        elif event == "sched:sched_switch":
            s = SWITCH.search(trace)
            if s is None:
                raise ValueError("expected prev_comm=.. prev_pid=.. prev_state=.. ==> next_comm=.. next_pid=..")
            prev, nxt = int(s.group("pp")), int(s.group("np"))
            self._task(ts, prev, tgid if prev == tid else None, s.group("pc"))
            self._task(ts, nxt, None, s.group("nc"))
            state = s.group("ps")
            bits = 0
            if not state.startswith("R"):
                for letter in state.replace("|", ""):
                    bits |= STATE_BITS.get(letter, 0x8000)
            self.last_deact.pop(cpu, None)
            add(ts, cpu, prev, self.tgid_of.get(prev, prev), K_SWITCH, 0, nxt, bits)
            self.switch_prev[cpu], self.current[cpu] = prev, nxt
        elif event == "sched:sched_process_fork":
            f = FORK.search(trace)
            if f is None:
                raise ValueError("expected comm=.. pid=.. child_comm=.. child_pid=..")
            parent, child = int(f.group("pp")), int(f.group("cp"))
            if parent == 2 or parent in self.kthread_children:
                self.kthread_children.add(child)
            self.forks.append(len(self.rows))
            add(ts, cpu, parent, self.tgid_of.get(parent, parent), K_FORK, 0, child, 0)
            self._task(ts, child, None, f.group("cc") or f.group("pc"))
        elif event in ("sched:sched_process_exec", "sched:sched_process_exit"):
            p = PID_FIELD.search(trace)
            who = int(p.group(1)) if p else tid
            kind = K_EXEC if event.endswith("exec") else K_EXIT
            add(ts, cpu, who, self.tgid_of.get(who, who), kind, 0, 0, 0)
        elif event == "kvm:kvm_fpu":
            add(ts, cpu, tid, g, K_KVM, 0, 0 if "unload" in trace else 1, 0)
        else:
            self.ignored[event] += 1

    # -------------------------------------------------------------------- result
    def finish(self):
        if len(self.rows) == 0 or not self.counts:
            raise FileFormatError(f"{self.src}: no perf script events found (empty recording?); {HINT}")
        notes = []
        # kernel threads: evidence only (see module docstring)
        kthreads = {0, 2} | self.kthread_children
        kthreads |= {t for t, c in self.comm_of.items() if KTHREAD_NAME.match(c) and t not in self.fpu_tasks}
        kthreads -= self.fpu_tasks - {0}
        for tid in sorted(kthreads & set(self.first_ts)):
            self.rows.add(self.first_ts[tid], 0, tid, self.tgid_of.get(tid, tid), Kind.TASK, 0, TASK_KTHREAD, 0)
        ev = self.rows.array_unsorted()
        if self.drop_rows:
            fork_rows = np.zeros(len(ev), bool)
            fork_rows[self.forks] = True
            keep = np.ones(len(ev), bool)
            keep[self.drop_rows] = False
            ev, self.forks = ev[keep], list(np.flatnonzero(fork_rows[keep]))
        if self.forks:
            idx = self.forks
            children = ev["a0"][idx].astype(int)
            ev["a1"][idx] = [self.tgid_of.get(c, c) for c in children]
        if not self.has_pid_field:
            ev["tgid"] = ev["tid"]
            notes.append("no pid column (perf script without -F ...pid...): tgid set to tid")
        if self.tid_recovered:
            notes.append(f"{self.tid_recovered} x86_fpu events of exiting tasks had tid -1 in perf script: "
                         "attributed to the task the scheduler switched from/to on that CPU")
        resolution_ns = 10 ** (9 - self.frac_digits)
        if resolution_ns > 1:
            notes.append(f"times have {resolution_ns} ns resolution (perf script without --ns)")
        ev = self.rows.sort_task_records_first(ev)

        release = self.kernel_release or self.header.get("os release")
        recorded = set(self.header_events) or set(self.counts)
        modes = {}
        for logical, tp in LOGICAL_TRACEPOINTS.items():
            if tp in recorded:
                exact = logical not in ("xsave", "xrstor") or (
                    logical == "xrstor" and recorded_policy_of(release) == "deferred")
                modes[logical] = {"attach": f"tracepoint:{tp}", "exact": exact, "refused": {}}
            else:
                modes[logical] = {"attach": "unavailable", "exact": False,
                                  "refused": {"tracepoint": f"{tp} not in the perf recording"}}
        modes["xsave"]["note"] = "context-switch, sync and fork saves exact; kernel-FPU saves not seen"
        for logical in ("kfpu_begin", "kfpu_end", "user_return"):
            modes[logical] = {"attach": "unavailable", "exact": False,
                              "refused": {"probe": "perf import: tracepoints only",
                                          "inferred": "perf cannot sample TIF_NEED_FPU_LOAD"}}
        cmdline = self.header.get("cmdline")
        if cmdline and not re.search(r"\s(-a|--all-cpus)\b|\s-[a-zA-Z]*a[a-zA-Z]*\s", f" {cmdline} "):
            notes.append("perf record ran without -a: other tasks on the same CPUs were not traced, so "
                         "register ownership between the traced tasks' events is unknown")
        if "raw_syscalls:sys_enter" in recorded:
            notes.append("raw_syscalls events are not used: inference needs TIF_NEED_FPU_LOAD, which perf cannot read")
        if recorded_policy_of(release) == "eager":
            notes.append("kernel < 5.2: x86_fpu_regs_activated fires at switch-in even without a restore, "
                         "so XRSTOR counts are an upper bound")
        events = ev[ev["kind"] != Kind.COMM]
        meta = {
            "source": "perf-script",
            "source_file": self.src,
            "host": self.header.get("hostname"),
            "kernel_release": release,
            "cpu_model": self.header.get("cpudesc"),
            "nr_cpus": int(self.header["nrcpus online"]) if self.header.get("nrcpus online", "").isdigit()
            else (int(ev["cpu"].max()) + 1 if len(ev) else None),
            "clock": CLOCK_NAMES.get(self.clockid, f"clockid {self.clockid}") if self.clockid is not None
            else "perf (perf record default: local_clock; use perf record -k mono for CLOCK_MONOTONIC)",
            "time_resolution_ns": resolution_ns,
            "start_ns": int(events["ts_ns"].min()) if len(events) else None,
            "end_ns": int(events["ts_ns"].max()) if len(events) else None,
            "capture_mode": "tracepoint",
            "modes": modes,
            "lost_per_cpu": {str(c): n for c, n in sorted(self.lost_per_cpu.items())},
            "tracepoint_counts": dict(sorted(self.counts.items())),
            "ignored_events": dict(sorted(self.ignored.items())),
            "deactivated_not_save": len(self.drop_rows),
            "perf_cmdline": self.header.get("cmdline"),
            "perf_version": self.header.get("perf version"),
            "captured_on": self.header.get("captured on"),
            "import_notes": notes,
            "kthread_detection": "evidence: the idle task, kthreadd and its children, kernel-thread names "
                                 "of tasks never seen saving or restoring FPU state",
        }
        if self.xcomp_bv:
            meta["xcomp_bv_seen"] = sorted(f"{x:#x}" for x in self.xcomp_bv)
        # perf has no XSAVE layout: the components come from the trace (a compacted buffer's
        # xcomp_bv names every enabled one; xfeatures the live ones), their sizes from the
        # architecture, so a trace from an AVX-512 or AMX machine keeps those bytes and classes
        enabled = functools.reduce(operator.or_, self.xcomp_bv, 0) & ~(1 << 63) | self.xfeatures_seen
        if enabled:
            meta["xstate"] = xstate.layout_of_mask(
                enabled, "perf import: components from the trace's xcomp_bv and xfeatures, architectural sizes")
        policy = recorded_policy_of(release)
        if policy:
            meta["recorded_policy"] = policy
        else:
            meta["import_notes"].append("kernel release unknown (no perf script --header, no --kernel-release): "
                                        "recorded policy unknown")
        return ev, {k: v for k, v in meta.items() if v is not None}
