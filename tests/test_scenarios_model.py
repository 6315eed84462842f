"""Hand-computed scenarios (SPEC 5.2-5.4): each docstring works out the eager and deferred counts.

Notation: (XSAVE, XRSTOR, avoidable XRSTOR). "Valid" = the CPU's registers still hold the task's
state (owner == task and task's last CPU == this CPU). Unless said otherwise a trace is recorded on
a deferred kernel with probes (USER_RETURN events = switch_fpu_return).
"""
from __future__ import annotations

import pytest

from fputrace.model import Model
from tests.scenario_builder import build

PROBES = {"recorded_policy": "deferred", "kernel_release": "6.12.0",
          "modes": {e: {"attach": "fentry", "exact": True}
                    for e in ("kfpu_begin", "kfpu_end", "xsave", "xrstor", "user_return")}}
TRACEPOINT = {"recorded_policy": "deferred", "kernel_release": "6.18.0",
              "modes": {"kfpu_begin": {"attach": "inferred", "exact": False},
                        "kfpu_end": {"attach": "inferred", "exact": False},
                        "xsave": {"attach": "tracepoint", "exact": False},
                        "xrstor": {"attach": "tracepoint", "exact": False},
                        "user_return": {"attach": "none", "exact": False},
                        "switch": {"attach": "tracepoint", "exact": True}}}
EAGER = {"recorded_policy": "eager", "kernel_release": "4.19.0",
         "modes": {e: {"attach": "kprobe", "exact": True}
                   for e in ("kfpu_begin", "kfpu_end", "xsave", "xrstor")}}


def analyse(text: str, meta: dict = PROBES):
    m = Model(meta, policies=("eager", "deferred", "deferred-novalid"))
    m.feed(build(text))
    return m, m.report(), m.estimate()


def counts(est, policy: str) -> tuple[int, int, int]:
    r = est.policies.loc[policy]
    return int(r.xsave), int(r.xrstor), int(r.avoidable_xrstor)


def measured(rep) -> tuple[int, int, int]:
    t = rep.totals
    return t["xsave"], t["xrstor"], t["avoidable_xrstor"]


def task(rep, tid: int, generation: int = 0):
    rows = rep.per_task[(rep.per_task.tid == tid) & (rep.per_task.generation == generation)]
    assert len(rows) == 1, rep.per_task
    return rows.iloc[0]


def test_spec_5_3_worked_example():
    """A in user mode with live registers: syscall; kfpu_begin; kfpu_end; kfpu_begin; kfpu_end;
    return to user.
    eager: begin saves (1), end restores (1), begin saves again (2) -> restore 1 thrown away unused:
    avoidable; end restores (2), used by user mode. (2, 2, 1).
    deferred: begin saves (1) and sets NEED_FPU_LOAD; second begin: flag set, no save; return to
    user: registers clobbered by the kernel -> restore (1). (1, 1, 0)."""
    _, rep, est = analyse("""
        task A 100
        0 A KFPU_BEGIN caller=0xffffffff81a00010
        0 A XSAVE
        0 A KFPU_END
        0 A KFPU_BEGIN caller=0xffffffff81a00010
        0 A KFPU_END
        0 A USER_RETURN
        0 A XRSTOR
    """)
    assert counts(est, "eager") == (2, 2, 1)
    assert counts(est, "deferred") == (1, 1, 0)
    assert measured(rep) == (1, 1, 0)
    assert rep.totals["kfpu_sections"] == 2
    assert est.self_check == 1.0
    assert task(rep, 100).xsave_kfpu == 1 and task(rep, 100).xrstor_user_return == 1


def test_three_sections_in_one_syscall():
    """Three kernel FPU sections in one syscall (e.g. a multi-buffer crypto request).
    eager: 3 saves, 3 restores; the first two restores are saved again before user mode: (3, 3, 2).
    deferred: one save at the first begin, one restore on return: (1, 1, 0).
    deferred-novalid: the same (the registers are clobbered anyway): (1, 1, 0)."""
    _, rep, est = analyse("""
        task A 100
        0 A KFPU_BEGIN
        0 A XSAVE
        0 A KFPU_END
        0 A KFPU_BEGIN
        0 A KFPU_END
        0 A KFPU_BEGIN
        0 A KFPU_END
        0 A USER_RETURN
        0 A XRSTOR
    """)
    assert counts(est, "eager") == (3, 3, 2)
    assert counts(est, "deferred") == (1, 1, 0)
    assert counts(est, "deferred-novalid") == (1, 1, 0)
    assert rep.totals["kfpu_sections"] == 3 and est.self_check == 1.0


def test_switch_in_task_blocks_again_in_kernel():
    """A (live, user) blocks: switch-out save. B wakes in the kernel and blocks again without
    returning to user; A comes back and returns to user, registers untouched.
    eager: save A (1); restore B at switch-in (1); B blocks: save B (2), its restore unused ->
    avoidable; A switch-in: registers hold B -> restore A (2). (2, 2, 1).
    deferred: save A (1); B never goes to user: no restore, no save; A returns with valid
    registers: no restore. (1, 0, 0).  deferred-novalid: A restores on return: (1, 1, 0)."""
    _, rep, est = analyse("""
        task A 100
        task B 200
        0 A SWITCH B blocked
        0 A XSAVE
        0 B SWITCH A blocked
        0 A USER_RETURN
    """)
    assert counts(est, "eager") == (2, 2, 1)
    assert counts(est, "deferred") == (1, 0, 0)
    assert counts(est, "deferred-novalid") == (1, 1, 0)
    assert measured(rep) == (1, 0, 0) and est.self_check == 1.0
    assert task(rep, 100).xsave_switch == 1


def test_migration_forces_restore():
    """A preempted on CPU 0 (save), runs on CPU 1 (restore: not valid there), preempted (save),
    back on CPU 0: owner ctx of CPU 0 is still A but A's last CPU is 1 -> not valid -> restore.
    eager: (2, 2, 0) (both restores used in user mode). deferred: (2, 2, 0). Owners at the end:
    CPU 0 holds A; CPU 1's copy is stale, so CPU 1 owns nothing valid."""
    _, rep, est = analyse("""
        task A 100
        0 A USER_RETURN
        0 A SWITCH idle preempted
        0 A XSAVE
        1 idle SWITCH A
        1 A USER_RETURN
        1 A XRSTOR
        1 A SWITCH idle preempted
        1 A XSAVE
        0 idle SWITCH A
        0 A USER_RETURN
        0 A XRSTOR
    """)
    assert counts(est, "eager") == (2, 2, 0)
    assert counts(est, "deferred") == (2, 2, 0)
    assert measured(rep) == (2, 2, 0) and est.self_check == 1.0
    cpus = rep.per_cpu.set_index("cpu")
    assert (cpus.loc[0, "owner"], cpus.loc[0, "owner_tid"]) == ("TASK", 100)
    assert cpus.loc[1, "owner"] == "NONE"


def test_kernel_thread_simd_invalidates():
    """A blocks (save); kernel thread K runs a SIMD section (no save: no user state; the CPU's
    registers are invalidated); A returns to user: restore.
    eager: save A (1); K's section invalidates; A's switch-in restores (1). (1, 1, 0).
    deferred: (1, 1, 0). K is counted with one kernel FPU section, zero saves/restores."""
    _, rep, est = analyse("""
        task A 100
        kthread K 7
        0 A USER_RETURN
        0 A SWITCH K blocked
        0 A XSAVE
        0 K KFPU_BEGIN caller=0xffffffff81b00000
        0 K KFPU_END
        0 K SWITCH A blocked
        0 A USER_RETURN
        0 A XRSTOR
    """)
    assert counts(est, "eager") == (1, 1, 0)
    assert counts(est, "deferred") == (1, 1, 0)
    assert measured(rep) == (1, 1, 0) and est.self_check == 1.0
    k = task(rep, 7)
    assert (k.kthread, k.kfpu_sections, k.xsave, k.xrstor) == (True, 1, 0, 0)


def test_idle_period_leaves_registers_valid():
    """A blocks (save); the CPU idles (idle = kernel thread, no FPU); A wakes and returns to user.
    eager: save (1); switch-in: valid -> no restore. (1, 0, 0).
    deferred: (1, 0, 0). deferred-novalid: restores on return: (1, 1, 0)."""
    _, rep, est = analyse("""
        task A 100
        0 A USER_RETURN
        0 A SWITCH idle blocked
        0 A XSAVE
        @9000000 0 idle SWITCH A
        0 A USER_RETURN
    """)
    assert counts(est, "eager") == (1, 0, 0)
    assert counts(est, "deferred") == (1, 0, 0)
    assert counts(est, "deferred-novalid") == (1, 1, 0)
    assert measured(rep) == (1, 0, 0) and est.self_check == 1.0


def test_fork_child_restores_on_first_return():
    """P forks C: the kernel copies P's registers into C's buffer (XSAVE, cause fork: the same under
    every policy). C first runs on CPU 1 and returns to user: restore.
    eager: fork save (1); C's switch-in restores (1), used. (1, 1, 0).
    deferred: fork save (1); C restores on return (1). (1, 1, 0). C inherits P's name."""
    _, rep, est = analyse("""
        task P 100
        task C 101 100
        0 P USER_RETURN
        0 P FORK C
        0 P XSAVE
        1 idle SWITCH C
        1 C USER_RETURN
        1 C XRSTOR
    """)
    assert counts(est, "eager") == (1, 1, 0)
    assert counts(est, "deferred") == (1, 1, 0)
    assert est.self_check == 1.0
    assert task(rep, 100).xsave_fork == 1
    assert task(rep, 101).xrstor_user_return == 1


def test_exec_restores_init_state():
    """A execs: its registers are reset and the kernel loads the init state (XRSTOR, cause init,
    the same under every policy). eager: (0, 1, 0). deferred: (0, 1, 0)."""
    _, rep, est = analyse("""
        task A 100
        0 A USER_RETURN
        0 A EXEC
        0 A XRSTOR
    """)
    assert counts(est, "eager") == (0, 1, 0)
    assert counts(est, "deferred") == (0, 1, 0)
    assert task(rep, 100).xrstor_init == 1 and est.self_check == 1.0


def test_exit_drops_state():
    """A uses the kernel FPU in a syscall (save), then exits; its last switch-out saves nothing.
    eager: save (1), restore at kernel_fpu_end (1), never used but dying is not "thrown away":
    (1, 1, 0). deferred: save (1), no restore: (1, 0, 0)."""
    _, rep, est = analyse("""
        task A 100
        0 A USER_RETURN
        0 A KFPU_BEGIN
        0 A XSAVE
        0 A KFPU_END
        0 A EXIT
        0 A SWITCH idle blocked
    """)
    assert counts(est, "eager") == (1, 1, 0)
    assert counts(est, "deferred") == (1, 0, 0)
    assert est.self_check == 1.0
    assert task(rep, 100).state == "exited"


def test_pid_reuse_counts_two_tasks():
    """tid 200 ("old") uses the kernel FPU and exits; P forks a new task that gets tid 200 again.
    old: save (1). P switches in (not valid: restore on return), forks (save, cause fork), is
    preempted (switch save); new restores on its first return.
    eager: old save 1 + restore at end 1; P switch-in restore 2; fork save 2; P switch save 3;
    new switch-in restore 3. (3, 3, 0).  deferred: old 1; P restore 1; fork 2; P switch 3; new
    restore 2. (3, 2, 0). tid 200 appears twice (generations 0 and 1) with separate counts."""
    _, rep, est = analyse("""
        task P 100
        task old 200
        0 old USER_RETURN
        0 old KFPU_BEGIN
        0 old XSAVE
        0 old KFPU_END
        0 old EXIT
        0 old SWITCH P blocked
        0 P USER_RETURN
        0 P XRSTOR
        0 P FORK 200
        0 P XSAVE
        0 P SWITCH 200 preempted
        0 P XSAVE
        0 200 USER_RETURN
        0 200 XRSTOR
    """)
    assert counts(est, "eager") == (3, 3, 0)
    assert counts(est, "deferred") == (3, 2, 0)
    assert est.self_check == 1.0
    old, new = task(rep, 200, 0), task(rep, 200, 1)
    assert (old.xsave, old.xrstor, old.comm) == (1, 0, "old")
    assert (new.xsave, new.xrstor, new.comm) == (0, 1, "P")


def test_lost_events_flag_the_gap():
    """A runs; 5 events are lost on CPU 0 (owner UNKNOWN); A's switch-out save re-synchronises the
    owner; B then restores. eager: A save (1), B's switch-in restore (1): (1, 1, 0).
    deferred: (1, 1, 0). A crossed the gap (flagged), B did not; lost_events = 5."""
    _, rep, est = analyse("""
        task A 100
        task B 200
        0 A USER_RETURN
        0 A LOST 5
        0 A SWITCH B preempted
        0 A XSAVE
        0 B USER_RETURN
        0 B XRSTOR
    """)
    assert counts(est, "eager") == (1, 1, 0)
    assert counts(est, "deferred") == (1, 1, 0)
    assert rep.lost_events == 5 and rep.totals["gap_flagged"]
    assert bool(task(rep, 100).gap) and not bool(task(rep, 200).gap)
    assert rep.to_dict()["lost_per_cpu"] == {"0": 5}
    assert "lost" in rep.exactness


def test_kvm_guest_entry_and_exit():
    """A vCPU thread V loads the guest FPU (host state saved, guest restored) and puts it back
    (guest saved, host restored): KVM traffic is the same under every policy. V then returns to
    user with its state valid. eager: (2, 2, 0). deferred: (2, 2, 0). Causes: kvm (inferred from
    KVM_FPU for the first save, given by the source for the rest)."""
    _, rep, est = analyse("""
        task V 300
        0 V USER_RETURN
        0 V KVM_FPU 1
        0 V XSAVE
        0 V XRSTOR cause=kvm
        0 V KVM_FPU 0
        0 V XSAVE cause=kvm
        0 V XRSTOR cause=kvm
        0 V USER_RETURN
    """)
    assert counts(est, "eager") == (2, 2, 0)
    assert counts(est, "deferred") == (2, 2, 0)
    v = task(rep, 300)
    assert (v.xsave_kvm, v.xrstor_kvm) == (2, 2) and est.self_check == 1.0


def test_tracepoint_mode_inferred_kfpu():
    """Tracepoint mode: a syscall with (say) three kernel FPU sections shows as ONE inferred
    KFPU_BEGIN/XSAVE/KFPU_END triple, then the return-path restore (regs_activated).
    eager (from what is visible): save (1), restore at end (1), used: (1, 1, 0) -- a lower bound.
    deferred: (1, 1, 0). The report says the sections are inferred and a lower bound."""
    _, rep, est = analyse("""
        task A 100
        0 A KFPU_BEGIN inferred
        0 A XSAVE inferred
        0 A KFPU_END inferred
        0 A XRSTOR
    """, TRACEPOINT)
    assert counts(est, "eager") == (1, 1, 0)
    assert counts(est, "deferred") == (1, 1, 0)
    assert rep.totals["kfpu_sections_inferred"] == 1
    assert "inferred" in rep.exactness["kfpu_sections"]
    assert "lower bound" in rep.exactness["kfpu_sections"]
    assert rep.exactness["kfpu_durations"].startswith("unavailable")
    assert task(rep, 100).xrstor_user_return == 1 and est.self_check == 1.0
    assert any("lower bound" in n for n in est.notes)


def test_tracepoint_mode_switch_save_is_evidence_of_user_mode():
    """Tracepoint mode (no USER_RETURN): A restores on return (visible), is preempted (save: its
    flag was clear, so it had been in user mode); B wakes and blocks again inside the kernel (no
    save); A returns to user with valid registers (invisible) and blocks (save: evidence).
    eager: A switch-in restore 1, A save 1, B restore 2, B save 2 (B's restore unused: avoidable),
    A restore 3 (registers hold B), A save 3. (3, 3, 1).
    deferred: A restore 1, A save 1, A save 2. (2, 1, 0). deferred-novalid: (2, 2, 0)."""
    _, rep, est = analyse("""
        task A 100
        task B 200
        0 idle SWITCH A
        0 A XRSTOR
        0 A SWITCH B preempted
        0 A XSAVE
        0 B SWITCH A blocked
        0 A SWITCH idle blocked
        0 A XSAVE
    """, TRACEPOINT)
    assert counts(est, "eager") == (3, 3, 1)
    assert counts(est, "deferred") == (2, 1, 0)
    assert counts(est, "deferred-novalid") == (2, 2, 0)
    assert measured(rep) == (2, 1, 0) and est.self_check == 1.0


def test_unseen_kernel_simd_user_is_reported():
    """Tracepoint mode: A is preempted by kernel thread K, whose SIMD use no tracepoint shows; A's
    return-path restore proves its registers were clobbered. The model counts one unexplained
    restore and tells every policy. eager: first restore 1, save 1, the clobbering repaired at
    once 2: (1, 2, 0). deferred: restore 1, save 1, restore 2: (1, 2, 0)."""
    _, rep, est = analyse("""
        task A 100
        kthread K 7
        0 A XRSTOR
        0 A SWITCH K preempted
        0 A XSAVE
        0 K SWITCH A blocked
        0 A XRSTOR
    """, TRACEPOINT)
    assert counts(est, "eager") == (1, 2, 0)
    assert counts(est, "deferred") == (1, 2, 0)
    assert rep.totals["unexplained_xrstor"] == 1
    assert "ownership" in rep.exactness and est.self_check == 1.0


def test_eager_kernel_trace_assumes_user_returns():
    """The SPEC 5.3 example recorded on an eager kernel (probes, no switch_fpu_return to watch):
    measured (2, 2). The replay must assume a return to user mode before each kernel FPU use, so
    eager replays as (2, 2, 0) -- avoidable is a lower bound -- and deferred as (2, 1, 0): one
    restore assumed between the sections, the final return not yet seen. The estimate says so."""
    _, rep, est = analyse("""
        task A 100
        0 A KFPU_BEGIN
        0 A XSAVE
        0 A KFPU_END
        0 A XRSTOR
        0 A KFPU_BEGIN
        0 A XSAVE
        0 A KFPU_END
        0 A XRSTOR
    """, EAGER)
    assert measured(rep)[:2] == (2, 2)
    assert counts(est, "eager") == (2, 2, 0)
    assert counts(est, "deferred") == (2, 1, 0)
    assert est.recorded_policy == "eager" and est.self_check == 1.0
    assert task(rep, 100).xrstor_kfpu_end == 2
    assert "lower bound" in rep.exactness["avoidable_xrstor"]
    assert any("not observable" in n for n in est.notes)


def test_eager_kernel_switch_in_restore():
    """Eager kernel: A blocks (save), B runs and returns to user (switch-in restore), B blocks
    (save), A switches in: registers hold B -> restore. measured (2, 2); eager replay (2, 2, 0);
    deferred: A save, B restore on (assumed) return, B save, A restore assumed at its next switch-out
    -- not reached in this trace: (2, 1, 0)."""
    _, rep, est = analyse("""
        task A 100
        task B 200
        0 A SWITCH B blocked
        0 A XSAVE
        0 B XRSTOR
        0 B SWITCH A blocked
        0 B XSAVE
        0 A XRSTOR
    """, EAGER)
    assert measured(rep)[:2] == (2, 2)
    assert counts(est, "eager") == (2, 2, 0)
    assert counts(est, "deferred") == (2, 1, 0)
    assert task(rep, 200).xrstor_switch_in == 1 and est.self_check == 1.0


def test_kfpu_callers_symbolised_with_durations():
    """Two sections of 3 us and 5 us by one caller named in the metadata: both counted, max 5000 ns,
    p99 bucket upper bound 8192 ns. (Counts: eager (2, 2, 1), deferred (1, 1, 0) as in 5.3.)"""
    meta = dict(PROBES, symbols={"0xffffffff81a00010": "sha256_update+0x10"})
    m = Model(meta)
    m.feed(build("""
        task A 100
        @1000 0 A KFPU_BEGIN caller=0xffffffff81a00010
        @1500 0 A XSAVE
        @4000 0 A KFPU_END caller=0xffffffff81a00010
        @5000 0 A KFPU_BEGIN caller=0xffffffff81a00010
        @10000 0 A KFPU_END caller=0xffffffff81a00010
        @11000 0 A USER_RETURN
        @11500 0 A XRSTOR
    """))
    rep, est = m.report(), m.estimate()
    c = rep.kfpu_callers.iloc[0]
    assert (c.caller, c.sections, c.max_ns, c.total_ns) == ("sha256_update+0x10", 2, 5000, 8000)
    assert c.p99_ns == 8192 and rep.totals["kfpu_max_ns"] == 5000
    assert counts(est, "eager") == (2, 2, 1) and counts(est, "deferred") == (1, 1, 0)
