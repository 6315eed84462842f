"""Attach strategy: for each logical event, the best attach point this host allows (SPEC 4).

Order per event: fentry -> kprobe -> tracepoint -> inference. Every refused better option is kept
with its reason, so ``doctor`` and each recording's ``meta["modes"]`` say exactly what was used
and why. The plan also yields the ``-D`` flags that select the ``#ifdef`` variants of
bpf/fputrace.bpf.c; nothing edits the BPF text.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import CaptureError
from .features import Features
from .hot import HotPlan, plan_hot

MODES = ("auto", "fentry", "kprobe", "tracepoint")

# logical event -> candidate kernel functions, best first (the first real symbol wins: probing
# two of them would count one save twice where one calls the other)
PROBE_SYMBOLS = {
    "kfpu_begin": ("kernel_fpu_begin_mask", "kernel_fpu_begin"),
    "kfpu_end": ("kernel_fpu_end",),
    "xsave": ("save_fpregs_to_fpstate", "copy_fpregs_to_fpstate"),
    "xrstor": ("restore_fpregs_from_fpstate", "__restore_fpregs_from_fpstate"),
    "user_return": ("switch_fpu_return",),
    "fork_save": ("fpu_clone", "fpu__copy"),      # marks fork's save for the save probe
}
CFLAG_PREFIX = {"kfpu_begin": "KFPU", "kfpu_end": "KFPU", "xsave": "XSAVE", "xrstor": "XRSTOR",
                "user_return": "URET", "fork_save": "FORKSAVE"}
# logical events observed only through tracepoints
TRACEPOINTS = {
    "switch": "sched:sched_switch",
    "fork": "sched:sched_process_fork",
    "exec": "sched:sched_process_exec",
    "exit": "sched:sched_process_exit",
    "kvm": "kvm:kvm_fpu",
}
TP_DEACTIVATED = "x86_fpu:x86_fpu_regs_deactivated"
TP_ACTIVATED = "x86_fpu:x86_fpu_regs_activated"
TP_COPY_DST = "x86_fpu:x86_fpu_copy_dst"
LOGICAL_EVENTS = ("kfpu_begin", "kfpu_end", "xsave", "xrstor", "user_return", "fork_save",
                  "switch", "fork", "exec", "exit", "kvm")


@dataclass
class Choice:
    attach: str                       # "fentry:fn" | "kprobe:fn" | "tracepoint:cat:ev" | "inferred:raw_syscalls" | "unavailable"
    exact: bool
    refused: dict[str, str] = field(default_factory=dict)
    note: str = ""

    def as_meta(self) -> dict:
        d = {"attach": self.attach, "exact": self.exact, "refused": dict(self.refused)}
        if self.note:
            d["note"] = self.note
        return d


@dataclass
class Plan:
    mode: str                               # requested mode
    choices: dict[str, Choice]
    cflags: list[str]
    kprobes: list[tuple[str, str]]          # (kernel symbol, BPF function name)
    infer: bool
    hot: HotPlan = None                     # how the per-switch/per-syscall tracepoints are read

    @property
    def effective_mode(self) -> str:
        """The attach mode of the kernel-FPU events: what a user means by 'the mode'."""
        return self.choices["kfpu_begin"].attach.split(":", 1)[0].replace("inferred", "tracepoint")

    def modes_meta(self) -> dict:
        return {name: c.as_meta() for name, c in self.choices.items()}


def _symbol(feat: Features, event: str) -> tuple[str | None, str]:
    for sym in PROBE_SYMBOLS[event]:
        if feat.symbol(sym) is not None:
            return sym, ""
    names = "/".join(PROBE_SYMBOLS[event])
    return None, f"{names} not in kallsyms (inlined on this kernel)"


# Events whose function entry runs with preemption on. An fentry program there can be preempted
# (migrate_disable only), and while a task is preempted inside it the kernel skips the program
# for every other task entering that function on the same CPU (per-CPU recursion guard, counted
# as recursion_misses): measured in the lab on Debian 7.2 (preempt=lazy), 562 of 27k kernel FPU
# begins lost in kworkers (dm-crypt, btrfs). A kprobe handler runs with preemption off. The other
# probes run with preemption already off (inside the section, under fpregs_lock, or on the
# return to user mode with interrupts off).
PREEMPTIBLE_ENTRY = ("kfpu_begin", "kfpu_end", "fork_save")   # end: paired with begin


def _probe_choice(feat: Features, event: str, mode: str) -> tuple[Choice | None, dict[str, str], str | None]:
    """fentry or kprobe for ``event``; else (None, reasons)."""
    refused: dict[str, str] = {}
    sym, why = _symbol(feat, event)
    traceable = feat.ftrace_functions
    # fentry
    if mode in ("kprobe", "tracepoint"):
        refused["fentry"] = f"--mode {mode}"
    elif sym is None:
        refused["fentry"] = why
    elif not feat.fentry.ok:
        refused["fentry"] = feat.fentry.reason
    elif not feat.in_btf(sym):
        refused["fentry"] = f"{sym} not in BTF"
    elif traceable is not None and sym not in traceable:
        refused["fentry"] = f"{sym} not traceable (notrace)"
    elif mode == "auto" and event in PREEMPTIBLE_ENTRY and feat.preemption.ok and feat.kprobes.ok:
        refused["fentry"] = (f"{feat.preemption.reason}: an fentry program on {sym} runs preemptible, and "
                             "while a task is preempted inside it the kernel skips it for every other task "
                             "on that CPU (recursion_misses); a kprobe handler runs with preemption off")
    else:
        note = (f"{feat.preemption.reason}: runs the kernel skips while another task is preempted inside "
                "this program are counted in recursion_misses") if event in PREEMPTIBLE_ENTRY \
            and feat.preemption.ok else ""
        return Choice(f"fentry:{sym}", True, refused, note), refused, sym
    # kprobe
    if mode in ("fentry", "tracepoint"):
        refused["kprobe"] = f"--mode {mode}"
    elif sym is None:
        refused["kprobe"] = why
    elif not feat.kprobes.ok:
        refused["kprobe"] = feat.kprobes.reason
    else:
        return Choice(f"kprobe:{sym}", True, refused), refused, sym
    return None, refused, sym


def _fork_save_choice(feat: Features, mode: str, xsave: Choice) -> tuple[Choice, list[str], list]:
    """fork's save (fpu_clone() XSAVEs the parent's registers into the child): with a save probe,
    a probe on fpu_clone entry tells it the cause; else the x86_fpu_copy_dst tracepoint that
    follows the save is the save. -> (choice, cflags, kprobes)"""
    has_copy_dst = feat.has_tracepoint(TP_COPY_DST)
    flags = []
    if has_copy_dst:
        flags.append("-DFPT_TP_COPY_DST")
        if feat.tracepoint_has_field(TP_COPY_DST, "load_fpu"):
            flags.append("-DFPT_TP_COPY_DST_LOAD")
    if xsave.attach.split(":")[0] in ("fentry", "kprobe"):
        choice, refused, sym = _probe_choice(feat, "fork_save", mode)
        if choice is None:
            refused["tracepoint"] = "the save probe already sees fork's save (as cause unknown)"
            return Choice("unavailable", False, refused, "fork's saves are counted with cause unknown"), flags, []
        how = choice.attach.split(":")[0]
        choice.note = "marks the save probe's next save as fork's"
        flags += [f"-DFPT_FORKSAVE_{how.upper()}", f"-DFPT_FORKSAVE_FN={sym}"]
        return choice, flags, ([(sym, "fpt_kprobe_fork_save")] if how == "kprobe" else [])
    refused = {"fentry": "no save probe here", "kprobe": "no save probe here"}
    if has_copy_dst:
        return Choice(f"tracepoint:{TP_COPY_DST}", True, refused,
                      "fires after fpu_clone saved the parent's registers (load_fpu 0)"), flags, []
    refused["tracepoint"] = f"{TP_COPY_DST} absent"
    return Choice("unavailable", False, refused, "fork's saves are not seen"), flags, []


def make_plan(feat: Features, mode: str = "auto", programs: str = "auto") -> Plan:
    if mode not in MODES:
        raise CaptureError(f"unknown mode {mode!r}: choose one of {', '.join(MODES)}")
    if feat.tracefs is None:
        raise CaptureError(feat.tracefs_state.detail)
    if not feat.has_tracepoint("sched:sched_switch"):
        raise CaptureError("tracepoint sched:sched_switch is missing: cannot follow the scheduler")
    choices: dict[str, Choice] = {}
    cflags: list[str] = []
    kprobes: list[tuple[str, str]] = []
    has_deact = feat.has_tracepoint(TP_DEACTIVATED)
    has_act = feat.has_tracepoint(TP_ACTIVATED)
    infer_ok = (feat.has_tracepoint("raw_syscalls:sys_enter") and feat.raw_tracepoints.ok
                and feat.recorded_policy == "deferred")
    infer_why = ("raw_syscalls tracepoints absent" if not feat.has_tracepoint("raw_syscalls:sys_enter")
                 else "eager kernel (< 5.2): no TIF_NEED_FPU_LOAD" if feat.recorded_policy == "eager"
                 else feat.raw_tracepoints.reason)

    # kernel FPU sections: begin and end must use the same mechanism (they pair up)
    begin, refused_b, sym_b = _probe_choice(feat, "kfpu_begin", mode)
    end, refused_e, sym_e = _probe_choice(feat, "kfpu_end", mode)
    if begin and end and begin.attach.split(":")[0] == end.attach.split(":")[0]:
        how = begin.attach.split(":")[0]
        choices["kfpu_begin"], choices["kfpu_end"] = begin, end
        cflags += [f"-DFPT_KFPU_{how.upper()}", f"-DFPT_KFPU_BEGIN_FN={sym_b}", f"-DFPT_KFPU_END_FN={sym_e}"]
        if sym_b == "kernel_fpu_begin_mask":
            cflags.append("-DFPT_KFPU_HAS_MASK")
        if how == "fentry":
            for tag, sym in (("BEGIN", sym_b), ("END", sym_e)):
                start, stop = feat.symbol_range(sym)
                cflags += [f"-DFPT_KFPU_{tag}_START={start:#x}ULL", f"-DFPT_KFPU_{tag}_END={stop:#x}ULL"]
        else:
            kprobes += [(sym_b, "fpt_kprobe_kfpu_begin"), (sym_e, "fpt_kprobe_kfpu_end")]
    else:
        for name, refused in (("kfpu_begin", refused_b), ("kfpu_end", refused_e)):
            refused = dict(refused)
            refused["tracepoint"] = "no tracepoint marks kernel FPU sections"
            if infer_ok and mode in ("auto", "tracepoint"):
                choices[name] = Choice("inferred:raw_syscalls", False, refused,
                                       "only sections that saved a user task's registers during a syscall")
            else:
                if infer_ok:
                    refused["inferred"] = f"--mode {mode}"
                else:
                    refused["inferred"] = infer_why
                choices[name] = Choice("unavailable", False, refused)

    # saves, restores, the return-to-user path: a probe where possible, else the tracepoints
    for event, tp, present, tp_note in (
            ("xsave", TP_DEACTIVATED, has_deact, "context-switch and sync saves exact; kernel-FPU saves inferred"),
            ("xrstor", TP_ACTIVATED, has_act, "each restore of user state (5.2+)"),
            ("user_return", None, False, "")):
        choice, refused, sym = _probe_choice(feat, event, mode)
        if choice is not None:
            how = choice.attach.split(":")[0]
            prefix = CFLAG_PREFIX[event]
            cflags += [f"-DFPT_{prefix}_{how.upper()}", f"-DFPT_{prefix}_FN={sym}"]
            if how == "kprobe":
                kprobes.append((sym, f"fpt_kprobe_{event}"))
            choices[event] = choice
        elif present:
            exact = event == "xrstor" and feat.recorded_policy == "deferred"
            choices[event] = Choice(f"tracepoint:{tp}", exact, refused, tp_note)
        else:
            refused["tracepoint"] = f"{tp} absent" if tp else "no tracepoint on switch_fpu_return"
            choices[event] = Choice("unavailable", False, refused)

    choices["fork_save"], fork_cflags, fork_kprobes = _fork_save_choice(feat, mode, choices["xsave"])
    cflags += fork_cflags
    kprobes += fork_kprobes

    if has_deact:
        cflags.append("-DFPT_TP_DEACTIVATED")
    if has_act:
        cflags.append("-DFPT_TP_ACTIVATED")
    if feat.has_tracepoint("x86_fpu:x86_fpu_before_save") and feat.has_tracepoint("x86_fpu:x86_fpu_after_save"):
        cflags.append("-DFPT_TP_SYNC")
        if feat.tracepoint_has_field("x86_fpu:x86_fpu_before_save", "load_fpu"):
            cflags.append("-DFPT_TP_LOAD_FPU")

    for event, tp in TRACEPOINTS.items():
        if feat.has_tracepoint(tp):
            choices[event] = Choice(f"tracepoint:{tp}", True)
        else:
            choices[event] = Choice("unavailable", False, {"tracepoint": f"{tp} absent"})
    if choices["kvm"].attach != "unavailable":
        cflags.append("-DFPT_TP_KVM")
    if feat.has_tracepoint("task:task_newtask"):
        cflags.append("-DFPT_TP_NEWTASK")
    if feat.tracepoint_field_is_data_loc("sched:sched_process_fork", "child_comm"):
        cflags.append("-DFPT_FORK_COMM_DATA_LOC")

    infer = choices["kfpu_begin"].attach == "inferred:raw_syscalls"
    if infer and choices["xsave"].attach.split(":")[0] in ("fentry", "kprobe"):
        # the save probe already sees kernel-FPU saves: inferring them would count them twice
        for name in ("kfpu_begin", "kfpu_end"):
            choices[name].refused["inferred"] = "the save probe sees every save"
            choices[name] = Choice("unavailable", False, choices[name].refused)
        infer = False
    if infer:
        cflags.append("-DFPT_INFER")
    hot_tps = ["sched_switch"] + (["x86_fpu_regs_deactivated"] if has_deact else []) \
        + (["x86_fpu_regs_activated"] if has_act else []) + (["sys_enter", "sys_exit"] if infer else [])
    hot = plan_hot(feat, hot_tps, programs)
    cflags += hot.cflags

    if mode in ("fentry", "kprobe") and not choices["kfpu_begin"].attach.startswith(mode):
        why = choices["kfpu_begin"].refused.get(mode, "unavailable")
        raise CaptureError(f"--mode {mode} is not possible here: {why} (try --mode auto)")
    return Plan(mode, choices, cflags, kprobes, infer, hot)
