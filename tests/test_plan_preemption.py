"""Attach plan on a preemptible kernel (issue 8.2, found in the lab on Debian 7.2, preempt=lazy):
an fentry program on kernel_fpu_begin_mask runs with preemption on, and while a task is preempted
inside it the kernel skips the program for every other task on that CPU (562 of 27k kernel FPU
begins of kworkers lost, counted in recursion_misses). ``auto`` takes the kprobe there (its
handler runs with preemption off) and says why; the probes that run with preemption off stay on
fentry. Where the kernel cannot be preempted, or kprobes are refused, fentry stays."""
from __future__ import annotations

from pathlib import Path

import pytest

from fputrace.capture import features as features_mod
from fputrace.capture.features import Features, Probe
from fputrace.capture.plan import make_plan

SYMBOLS = ("kernel_fpu_begin_mask", "kernel_fpu_end", "save_fpregs_to_fpstate", "restore_fpregs_from_fpstate",
           "switch_fpu_return", "fpu_clone")


def stock_kernel(preemption: Probe, kprobes_ok: bool = True) -> Features:
    """A stock 7.x kernel as features see it (everything attachable), preemption as given."""
    f = Features(release="7.2.13+deb14-amd64")
    f.__dict__.update(
        tracefs=Path("/sys/kernel/tracing"), kallsyms={s: 0xffffffff81000000 + 0x100 * i for i, s in enumerate(SYMBOLS)},
        ftrace_functions=None, fentry=Probe(True, "fentry ok"), btf=Probe(True, ""),
        kprobes=Probe(kprobes_ok, "" if kprobes_ok else "kprobe_events absent"), raw_tracepoints=Probe(True, ""),
        preemption=preemption)
    f.has_tracepoint = lambda name: True
    f.tracepoint_has_field = lambda name, field: True
    f.tracepoint_field_is_data_loc = lambda name, field: False
    f.in_btf = lambda name: True
    f.symbol_range = lambda name: (f.kallsyms[name], f.kallsyms[name] + 0x80)
    return f


LAZY = Probe(True, "preempt=lazy (/sys/kernel/debug/sched/preempt)")
VOLUNTARY = Probe(False, "preempt=voluntary (/sys/kernel/debug/sched/preempt)")


def test_auto_takes_kprobes_for_preemptible_entries():
    plan = make_plan(stock_kernel(LAZY), "auto")
    assert plan.choices["kfpu_begin"].attach == "kprobe:kernel_fpu_begin_mask"
    assert plan.choices["kfpu_end"].attach == "kprobe:kernel_fpu_end"        # paired with begin
    assert plan.choices["fork_save"].attach == "kprobe:fpu_clone"
    why = plan.choices["kfpu_begin"].refused["fentry"]
    assert "preempt=lazy" in why and "recursion_misses" in why
    for ev in ("xsave", "xrstor", "user_return"):                           # preemption off there
        assert plan.choices[ev].attach.startswith("fentry:"), plan.choices[ev]
    assert plan.effective_mode == "kprobe"
    assert ("kernel_fpu_begin_mask", "fpt_kprobe_kfpu_begin") in plan.kprobes
    assert "-DFPT_KFPU_KPROBE" in plan.cflags and "-DFPT_XSAVE_FENTRY" in plan.cflags


def test_auto_keeps_fentry_where_the_kernel_is_not_preemptible():
    plan = make_plan(stock_kernel(VOLUNTARY), "auto")
    assert all(plan.choices[ev].attach.startswith("fentry:") for ev in ("kfpu_begin", "kfpu_end", "xsave"))
    assert plan.effective_mode == "fentry"


def test_fentry_stays_when_asked_for_or_without_kprobes_and_says_so():
    asked = make_plan(stock_kernel(LAZY), "fentry")
    assert asked.choices["kfpu_begin"].attach == "fentry:kernel_fpu_begin_mask"
    assert "recursion_misses" in asked.choices["kfpu_begin"].note
    no_kprobes = make_plan(stock_kernel(LAZY, kprobes_ok=False), "auto")
    assert no_kprobes.choices["kfpu_begin"].attach == "fentry:kernel_fpu_begin_mask"


@pytest.mark.parametrize("text,model", [("none voluntary full (lazy)\n", "lazy"), ("none (voluntary) full\n", "voluntary")])
def test_preemption_model_from_debugfs(monkeypatch, tmp_path, text, model):
    real = Path.read_text

    def fake(self, *a, **kw):
        if str(self) == "/sys/kernel/debug/sched/preempt":
            return text
        return real(self, *a, **kw)
    monkeypatch.setattr(Path, "read_text", fake)
    assert features_mod.preemption_model("x") == (model, "/sys/kernel/debug/sched/preempt")


def test_preemption_model_from_the_build_config(monkeypatch, tmp_path):
    cfg = tmp_path / "config"
    cfg.write_text("CONFIG_PREEMPT_BUILD=y\nCONFIG_PREEMPT_LAZY=y\nCONFIG_PREEMPT_DYNAMIC=y\n")
    real = Path.read_text

    def fake(self, *a, **kw):
        if str(self) in ("/sys/kernel/debug/sched/preempt", "/proc/cmdline"):
            raise OSError("absent")
        if str(self) == "/boot/config-rel":
            return cfg.read_text()
        return real(self, *a, **kw)
    monkeypatch.setattr(Path, "read_text", fake)
    assert features_mod.preemption_model("rel") == ("lazy", "/boot/config-rel")
