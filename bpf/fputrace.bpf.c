/* fputrace.bpf.c: emit FPU save/restore facts; meaning lives in Python (fputrace/model).
 *
 * Compiled by bcc at run time with -D options chosen by fputrace/capture/plan.py:
 *   FPT_RINGBUF, FPT_RINGBUF_PAGES, FPT_WAKEUP_EVERY   transport (else perf buffer)
 *   FPT_RINGBUF_PERCPU, FPT_NR_CPUS                      one ring per CPU (ringbuf.py)
 *   FPT_KFPU_{FENTRY,KPROBE}, FPT_KFPU_BEGIN_FN, FPT_KFPU_END_FN, FPT_KFPU_HAS_MASK
 *   FPT_KFPU_BEGIN_START/_END, FPT_KFPU_END_START/_END   text ranges (fentry caller search)
 *   FPT_XSAVE_{FENTRY,KPROBE}, FPT_XSAVE_FN             real save function
 *   FPT_XRSTOR_{FENTRY,KPROBE}, FPT_XRSTOR_FN           real restore function
 *   FPT_URET_{FENTRY,KPROBE}, FPT_URET_FN               switch_fpu_return
 *   FPT_FORKSAVE_{FENTRY,KPROBE}, FPT_FORKSAVE_FN       fpu_clone / fpu__copy (fork's save)
 *   FPT_TP_DEACTIVATED, FPT_TP_ACTIVATED, FPT_TP_SYNC, FPT_TP_LOAD_FPU, FPT_TP_KVM,
 *   FPT_TP_COPY_DST, FPT_TP_COPY_DST_LOAD,
 *   FPT_TP_NEWTASK, FPT_FORK_COMM_DATA_LOC               tracepoints present here
 *   FPT_INFER                                            raw_syscalls inference (SPEC 5.4)
 *   FPT_HOT_BTF | FPT_HOT_RAW                            how the hot tracepoints are read (below)
 *   FPT_OFF_TASK_PID, FPT_OFF_TASK_TGID, FPT_OFF_TASK_EXIT_STATE, FPT_OFF_FPU_FPSTATE,
 *   FPT_OFF_XFEATURES                                    their kernel struct offsets (BTF)
 *   FPT_FILTER_TGID, FPT_FILTER_COMM                     --pid / --comm
 *   FPT_SYNTHETIC                                        benchmark only: K records per sys_enter
 * Kernel structs: task->thread_info.flags at offset 0 of task_struct (SPEC 4), and with
 * FPT_HOT_* a few fields at offsets taken from the running kernel's BTF (plan.py, btf.py); no
 * kernel header layout is used, so this compiles against any x86-64 header tree.
 *
 * The hot tracepoints (sched_switch, x86_fpu_regs_{de,}activated, raw_syscalls) fire on every
 * context switch or syscall; what one run costs is what tracing costs (bpf_prog_info run_time_ns).
 *   FPT_HOT_BTF  BTF-typed raw tracepoints (tp_btf, loaded by loader.py: bcc cannot): the raw
 *                arguments with their kernel types, fields loaded directly (no helper call)
 *   FPT_HOT_RAW  raw tracepoints: the same fields through bpf_probe_read_kernel
 *   neither      perf-event tracepoints (TRACEPOINT_PROBE): the fields the tracepoint copied, after
 *                the perf tracepoint machinery ran (tens of ns before the program starts)
 */
#include <uapi/linux/ptrace.h>
#include "fputrace.h"

#ifndef FPT_RINGBUF_PAGES
#define FPT_RINGBUF_PAGES 1024
#endif
#ifndef FPT_WAKEUP_EVERY
#define FPT_WAKEUP_EVERY 1024   /* power of two: wake the consumer every N records per CPU */
#endif
#define FPT_CALLER_DEPTH 8
/* indirection so that -DFPT_*_FN=name is expanded before KFUNC_PROBE pastes it */
#define FPT_KFUNC(fn, ...) KFUNC_PROBE(fn, ##__VA_ARGS__)

#if defined(FPT_RINGBUF_PERCPU)
/* One ring per CPU, created by user space (ringbuf.py) and put in this array: a program reserves
 * in its own CPU's ring, so no lock or cache line is shared between CPUs. The template only
 * gives the array its inner map type (one page: never written). */
BPF_RINGBUF_OUTPUT(events_inner, 1);
BPF_ARRAY_OF_MAPS(events, "events_inner", FPT_NR_CPUS);
#elif defined(FPT_RINGBUF)
BPF_RINGBUF_OUTPUT(events, FPT_RINGBUF_PAGES);
#else
BPF_PERF_OUTPUT(events);
#endif
BPF_PERCPU_ARRAY(counters, u64, FPT_CTR_MAX);
BPF_PERCPU_ARRAY(calib, u64, FPT_CAL_MAX);
BPF_ARRAY(config, u64, FPT_CFG_MAX);

/* What happens on this CPU right now: pairs a probe with the tracepoint that follows it, so
 * that each real save/restore is emitted exactly once. Preemption is off across each pair. */
struct cpu_state {
	u32 switch_prev;   /* prev tid between sched_switch and its regs_deactivated */
	u32 kfpu_tid;      /* tid + 1 inside kernel_fpu_begin .. kernel_fpu_end */
	u32 sync_tid;      /* tid inside x86_fpu_before_save .. after_save */
	u32 sync_live;     /* regs were live at before_save: a real save follows */
	u32 uret_tid;      /* tid inside switch_fpu_return */
	u32 restore_tid;   /* restore probe seen, waiting for regs_activated */
	u32 restore_tgid;
	u32 restore_cause;
	u64 restore_ts;
	u32 fork_tid;      /* tid + 1 inside fpu_clone (probe modes): its save has cause FORK */
	u32 switch_tgid;
	u64 switch_ts;     /* time of the last sched_switch here: its switch-out save gets it too */
	u32 pend_tid;      /* FPT_MERGE_SWITCH_SAVE: a SWITCH left for its regs_deactivated to emit */
	u32 pend_next;
	u64 pend_blocked;
};
BPF_PERCPU_ARRAY(cpu_states, struct cpu_state, 1);

static __always_inline void ctr_add(u32 id, u64 n)
{
	u64 *c = counters.lookup(&id);
	if (c)
		*c += n;
}

#if defined(FPT_HOT_BTF)
#define KREAD(type, addr) (*(type *)(addr))       /* typed pointers: a plain load */
#elif defined(FPT_HOT_RAW)
#define KREAD(type, addr) ({ type _v = 0; bpf_probe_read_kernel(&_v, sizeof(_v), (void *)(addr)); _v; })
#endif

static __always_inline u64 task_flags(void)
{
	/* thread_info is the first member of task_struct on x86-64; flags its first field */
#ifdef FPT_HOT_BTF
	return *(u64 *)bpf_get_current_task_btf();
#else
	u64 flags = 0;
	bpf_probe_read_kernel(&flags, sizeof(flags), (void *)bpf_get_current_task());
	return flags;
#endif
}

/* The TIF calibration samples task flags until user space has decided (tif.py), then stops
 * costing anything but this one array read (inlined by the verifier). */
static __always_inline int calibrating(void)
{
	u32 key = FPT_CFG_CALIBRATING;
	u64 *on = config.lookup(&key);
	return on && *on;
}

static __always_inline int filtered_out(u32 tgid)
{
#ifdef FPT_FILTER_TGID
	if (tgid != FPT_FILTER_TGID)
		return 1;
#endif
#ifdef FPT_FILTER_COMM
	char want[16] = FPT_FILTER_COMM;
	char comm[16] = {};
	bpf_get_current_comm(&comm, sizeof(comm));
#pragma unroll
	for (int i = 0; i < 16; i++) {
		if (comm[i] != want[i])
			return 1;
		if (want[i] == 0)
			break;
	}
#endif
	return 0;
}

/* One record of `n` events (2 for FPT_SWITCH_SAVE, which user space splits: abi.py); the
 * counters count events, so delivered + lost = emitted holds per CPU whatever the record. */
static __always_inline void emit_rec(void *ctx, u64 ts, u8 kind, u8 flags, u32 tid, u32 tgid,
				     u64 a0, u64 a1, u32 pad, u32 n)
{
	u32 cpu = bpf_get_smp_processor_id();
#if defined(FPT_RINGBUF_PERCPU)
	void *ring = events.lookup(&cpu);
	if (!ring) {             /* before user space put the rings in: not yet capturing */
		ctr_add(FPT_CTR_NO_RING, n);
		return;
	}
#endif
	u32 key = FPT_CTR_EVENTS;
	u64 *nr = counters.lookup(&key);
	u64 seq = 0;
	if (nr)
		seq = *nr += n;
#if defined(FPT_RINGBUF_PERCPU)
	struct fpt_event *e = bpf_ringbuf_reserve(ring, sizeof(struct fpt_event), 0);
	if (!e) {
		ctr_add(FPT_CTR_LOST, n);
		return;
	}
#elif defined(FPT_RINGBUF)
	struct fpt_event *e = events.ringbuf_reserve(sizeof(struct fpt_event));
	if (!e) {
		ctr_add(FPT_CTR_LOST, n);
		return;
	}
#else
	struct fpt_event ev = {};
	struct fpt_event *e = &ev;
#endif
	e->ts_ns = ts;
	e->a0 = a0;
	e->a1 = a1;
	e->tid = tid;
	e->tgid = tgid;
	e->cpu = cpu;
	e->kind = kind;
	e->flags = flags;
	e->_pad = pad;
#ifdef FPT_RINGBUF
	/* Wake the consumer only when the count passes a multiple of FPT_WAKEUP_EVERY events (a
	 * wakeup is an irq_work and a context switch); it also polls with a timeout, so nothing
	 * waits longer than that. */
	bpf_ringbuf_submit(e, ((seq ^ (seq - n)) & ~(u64)(FPT_WAKEUP_EVERY - 1)) ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP);
#else
	if (events.perf_submit(ctx, e, sizeof(*e)) < 0)
		ctr_add(FPT_CTR_LOST, n);
#endif
}

static __always_inline void emit_at(void *ctx, u64 ts, u8 kind, u8 flags, u32 tid, u32 tgid,
				    u64 a0, u64 a1)
{
	emit_rec(ctx, ts, kind, flags, tid, tgid, a0, a1, 0, 1);
}

static __always_inline void emit(void *ctx, u8 kind, u8 flags, u64 a0, u64 a1)
{
	u64 id = bpf_get_current_pid_tgid();
	emit_at(ctx, bpf_ktime_get_ns(), kind, flags, (u32)id, id >> 32, a0, a1);
}

static __always_inline struct cpu_state *cpu_state(void)
{
	u32 zero = 0;
	return cpu_states.lookup(&zero);
}

static __always_inline u64 tif_mask(void)
{
	u32 key = FPT_CFG_TIF_MASK;
	u64 *mask = config.lookup(&key);
	return mask ? *mask : 0;
}

/* A SWITCH left for regs_deactivated whose save did not come (the prediction below was wrong):
 * emitted at the next switch or restore on this CPU, with its own time, and counted. */
static __always_inline void flush_switch(void *ctx, struct cpu_state *cs)
{
	if (!cs->pend_tid)
		return;
	emit_at(ctx, cs->switch_ts, FPT_SWITCH, 0, cs->pend_tid, cs->switch_tgid, cs->pend_next, cs->pend_blocked);
	ctr_add(FPT_CTR_SWITCH_UNSAVED, 1);
	cs->pend_tid = 0;
}

static __always_inline void calib_sample(u32 and_slot, u32 n_slot, u64 flags, int is_or)
{
	u32 n_key = n_slot, v_key = and_slot;
	u64 *n = calib.lookup(&n_key);
	u64 *v = calib.lookup(&v_key);
	if (!n || !v || *n >= FPT_CAL_SAMPLES)
		return;
	if (is_or)
		*v |= flags;
	else
		*v = *n ? (*v & flags) : flags;
	*n += 1;
}

/* ---------------------------------------------------------------- inference (SPEC 5.4) ---- */
#ifdef FPT_INFER
#define SYS_ACTIVE    1
#define SYS_SWITCHED  2
#define SYS_EXEC      4
#define NR_RT_SIGRETURN 15
/* The syscall in progress on this CPU. Per CPU, not per task: a syscall that stays on its CPU
 * without a switch-out is exactly what inference wants, and any switch-out either marks the slot
 * (sched_switch) or lets another task overwrite it, so a mismatching tid at sys_exit means
 * "switched out meanwhile": skip. No hash map update on the syscall hot path. */
struct sys_state {
	u32 tid;
	u32 nr;
	u32 state;
	u32 _pad;
};
BPF_PERCPU_ARRAY(sys_states, struct sys_state, 1);

static __always_inline struct sys_state *sys_slot(void)
{
	u32 zero = 0;
	return sys_states.lookup(&zero);
}

static __always_inline void sys_mark(u32 tid, u32 what)
{
	struct sys_state *s = sys_slot();
	if (s && s->tid == tid && (s->state & SYS_ACTIVE))
		s->state |= what;
}

/* args: (struct pt_regs *regs, long id) at sys_enter, (struct pt_regs *regs, long ret) at sys_exit */
static __always_inline int on_sys_enter(void *ctx, u64 *args)
{
	u64 id = bpf_get_current_pid_tgid();
	u64 flags = task_flags();
	if (calibrating())
		calib_sample(FPT_CAL_OR_ENTER, FPT_CAL_N_ENTER, flags, 1);
#ifdef FPT_SYNTHETIC
#pragma unroll
	for (int i = 0; i < FPT_SYNTHETIC; i++)
		emit(ctx, FPT_USER_RETURN, 0, 0, i);
#endif
	struct sys_state *s = sys_slot();
	if (!s)
		return 0;
	u64 mask = tif_mask();
	if (!mask || (flags & mask) || filtered_out(id >> 32)) {
		s->state = 0;
		return 0;
	}
	s->tid = (u32)id;
	s->nr = (u32)args[1];
	s->state = SYS_ACTIVE;
	return 0;
}

static __always_inline int on_sys_exit(void *ctx)
{
	u64 id = bpf_get_current_pid_tgid();
	u32 tid = (u32)id;
	struct sys_state *s = sys_slot();
	if (!s || s->tid != tid || !(s->state & SYS_ACTIVE))
		return 0;
	u32 state = s->state;
	u32 nr = s->nr;
	s->state = 0;
	u64 mask = tif_mask();
	if (!mask || (state & (SYS_SWITCHED | SYS_EXEC)) || nr == NR_RT_SIGRETURN)
		return 0;
	if (!(task_flags() & mask))
		return 0;
	/* TIF_NEED_FPU_LOAD turned on inside this syscall without a switch-out: a kernel FPU
	 * section saved the user registers. Timing inside the syscall is unknown: stamp all three
	 * at sys_exit (user space keeps their order). */
	u64 ts = bpf_ktime_get_ns();
	emit_at(ctx, ts, FPT_KFPU_BEGIN, FPT_FLAG_INFERRED, tid, id >> 32, 0, 0);
	emit_at(ctx, ts, FPT_XSAVE, FPT_FLAG_INFERRED, tid, id >> 32, 0, FPT_XS_KFPU);
	emit_at(ctx, ts, FPT_KFPU_END, FPT_FLAG_INFERRED, tid, id >> 32, 0, 0);
	ctr_add(FPT_CTR_INFERRED_KFPU, 1);
	return 0;
}

#ifdef FPT_HOT_BTF
int fpt_btf__sys_enter(u64 *ctx)
{
	return on_sys_enter(ctx, ctx);
}

int fpt_btf__sys_exit(u64 *ctx)
{
	return on_sys_exit(ctx);
}
#else
RAW_TRACEPOINT_PROBE(sys_enter)
{
	return on_sys_enter(ctx, (u64 *)ctx->args);
}

RAW_TRACEPOINT_PROBE(sys_exit)
{
	return on_sys_exit(ctx);
}
#endif
#endif /* FPT_INFER */

/* A tracepoint program's return value decides whether perf keeps its samples of the same
 * tracepoint: 0 drops them for every perf user (perf_trace_run_bpf_submit). Return 1 so that
 * `perf record` and fputrace can watch the same events at once. */
#define FPT_TP_KEEP 1

/* ---------------------------------------------------------------- scheduler ---------------- */
static __always_inline void on_switch(void *ctx, u32 prev, u32 tgid, u32 next, u64 blocked, int save_follows)
{
	struct cpu_state *cs = cpu_state();
	if (cs) {
		flush_switch(ctx, cs);
		if (cs->restore_tid) {   /* a restore probe whose activated never came: emit it now */
			emit_at(ctx, cs->restore_ts, FPT_XRSTOR, 0, cs->restore_tid, cs->restore_tgid,
				0, cs->restore_cause);
			ctr_add(FPT_CTR_RESTORE_UNPAIRED, 1);
			cs->restore_tid = 0;
		}
		cs->switch_prev = prev;
		cs->uret_tid = 0;
	}
#ifdef FPT_INFER
	sys_mark(prev, SYS_SWITCHED);
#endif
	if (filtered_out(tgid))
		return;
	u64 ts = bpf_ktime_get_ns();
	if (cs) {                /* the switch-out save that follows is stamped with this switch */
		cs->switch_ts = ts;
		cs->switch_tgid = tgid;
		if (save_follows) {  /* ... and emits this switch with it, in one record */
			cs->pend_tid = prev;
			cs->pend_next = next;
			cs->pend_blocked = blocked;
			return;
		}
	}
	emit_at(ctx, ts, FPT_SWITCH, 0, prev, tgid, next, blocked);
}

#if defined(FPT_HOT_BTF) || defined(FPT_HOT_RAW)
/* The raw arguments: (bool preempt, struct task_struct *prev, struct task_struct *next,
 * unsigned int prev_state) (5.18+). prev_state in the tracepoint's TASK_REPORT form, as
 * __trace_sched_switch_state() makes it: preempted -> runnable; else the highest bit of
 * (state | exit_state) & TASK_REPORT, TASK_IDLE -> TASK_REPORT_IDLE, RTLOCK_WAIT/FROZEN -> D. */
static __always_inline u64 report_state(u64 preempt, u32 state, void *prev)
{
	if (preempt)
		return 0;
	u32 exit_state = 0;
	if (state & 0x80)        /* TASK_DEAD: the last switch of an exiting task */
		exit_state = KREAD(u32, prev + FPT_OFF_TASK_EXIT_STATE);
	u32 r = (state | exit_state) & 0x7f;
	if ((state & 0x402) == 0x402)
		r = 0x80;
	if (state & (0x1000 | 0x8000))
		r = 0x2;
	u32 top = 0;
#pragma unroll
	for (int b = 0; b < 8; b++)
		if (r & (1u << b))
			top = 1u << b;
	return top;
}

#if defined(FPT_HOT_BTF) && defined(FPT_TP_DEACTIVATED) && defined(FPT_OFF_TASK_FLAGS)
#define FPT_MERGE_SWITCH_SAVE
#define PF_IO_WORKER    0x00000010
#define PF_USER_WORKER  0x00004000
#define PF_KTHREAD      0x00200000
/* Will switch_fpu() save prev's registers right after this tracepoint (regs_deactivated, same
 * switch, interrupts off)? It does exactly when TIF_NEED_FPU_LOAD is clear and prev is no kernel
 * thread or user worker (6.x). Then that program emits this SWITCH and its save as one record:
 * one ring reserve per switch less. A wrong guess costs nothing but order: flush_switch(). */
static __always_inline int switch_save_follows(void *prev)
{
	u64 mask = tif_mask();
	if (!mask || calibrating())        /* the TIF bit is not settled yet */
		return 0;
	u64 tflags = KREAD(u64, prev);     /* thread_info.flags: offset 0 of task_struct */
	u32 pflags = KREAD(u32, prev + FPT_OFF_TASK_FLAGS);
	return !(tflags & mask) && !(pflags & (PF_KTHREAD | PF_USER_WORKER | PF_IO_WORKER));
}
#else
#define switch_save_follows(prev) 0
#endif

static __always_inline int hot_sched_switch(void *ctx, u64 *args)
{
	void *prev = (void *)args[1];
	void *next = (void *)args[2];
#ifdef FPT_HOT_BTF
	u32 pid = KREAD(u32, prev + FPT_OFF_TASK_PID), tgid = KREAD(u32, prev + FPT_OFF_TASK_TGID);
#else
	u64 id = bpf_get_current_pid_tgid();        /* prev is current: one helper, not two reads */
	u32 pid = (u32)id, tgid = id >> 32;
#endif
	on_switch(ctx, pid, tgid, KREAD(u32, next + FPT_OFF_TASK_PID), report_state(args[0], (u32)args[3], prev),
		  switch_save_follows(prev));
	return 0;
}
#endif

#if defined(FPT_HOT_BTF)
int fpt_btf__sched_switch(u64 *ctx)
{
	return hot_sched_switch(ctx, ctx);
}
#elif defined(FPT_HOT_RAW)
RAW_TRACEPOINT_PROBE(sched_switch)
{
	return hot_sched_switch(ctx, (u64 *)ctx->args);
}
#else
TRACEPOINT_PROBE(sched, sched_switch)
{
	long state = args->prev_state;
	/* TASK_REPORT_MAX (0x100) marks a preempted task: runnable */
	u64 blocked = (state & 0x100) ? 0 : (state & 0xff);
	on_switch(args, args->prev_pid, bpf_get_current_pid_tgid() >> 32, (u32)args->next_pid, blocked, 0);
	return FPT_TP_KEEP;
}
#endif

#ifdef FPT_TP_NEWTASK
/* child pid -> clone flags, from task_newtask (end of copy_process) to sched_process_fork (after
 * wake_up_new_task): keyed by the child, not by CPU, since the parent may be preempted and
 * migrate in between (preemptible kernels: 7.x's lazy preemption, or any wake-up of the child) */
BPF_TABLE("lru_hash", u32, u64, newtasks, 4096);   /* LRU: io threads get no sched_process_fork */

TRACEPOINT_PROBE(task, task_newtask)
{
	u32 pid = args->pid;
	u64 flags = args->clone_flags;
	newtasks.update(&pid, &flags);
	return FPT_TP_KEEP;
}
#endif

TRACEPOINT_PROBE(sched, sched_process_fork)
{
	u64 id = bpf_get_current_pid_tgid();
	u32 tgid = id >> 32;
	u32 child = args->child_pid;
	u32 child_tgid = 0;
	struct cpu_state *cs = cpu_state();
#ifdef FPT_TP_NEWTASK
	u64 *clone_flags = newtasks.lookup(&child);
	if (clone_flags) {
		child_tgid = (*clone_flags & 0x00010000 /* CLONE_THREAD */) ? tgid : child;
		newtasks.delete(&child);
	}
#endif
	if (cs)
		cs->fork_tid = 0;   /* fpu_clone returned early (kernel threads, io workers): no save */
	if (filtered_out(tgid))
		return FPT_TP_KEEP;
	u64 ts = bpf_ktime_get_ns();
	emit_at(args, ts, FPT_FORK, 0, (u32)id, tgid, child, child_tgid);
	char comm[16] = {};
#ifdef FPT_FORK_COMM_DATA_LOC
	TP_DATA_LOC_READ_CONST(comm, child_comm, sizeof(comm));
#else
	bpf_probe_read_kernel(comm, sizeof(comm), args->child_comm);
#endif
	u64 c0 = 0, c1 = 0;
	__builtin_memcpy(&c0, comm, 8);
	__builtin_memcpy(&c1, comm + 8, 8);
	emit_at(args, ts, FPT_COMM, 0, child, child_tgid, c0, c1);
	if (tgid == 2)   /* children of kthreadd are kernel threads */
		emit_at(args, ts, FPT_TASK, 0, child, child_tgid, FPT_TASK_KTHREAD, 0);
	return FPT_TP_KEEP;
}

TRACEPOINT_PROBE(sched, sched_process_exec)
{
	u64 id = bpf_get_current_pid_tgid();
#ifdef FPT_INFER
	sys_mark((u32)id, SYS_EXEC);
#endif
	if (filtered_out(id >> 32))
		return FPT_TP_KEEP;
	char comm[16] = {};
	bpf_get_current_comm(&comm, sizeof(comm));
	u64 c0 = 0, c1 = 0;
	__builtin_memcpy(&c0, comm, 8);
	__builtin_memcpy(&c1, comm + 8, 8);
	u64 ts = bpf_ktime_get_ns();
	emit_at(args, ts, FPT_COMM, 0, (u32)id, id >> 32, c0, c1);
	emit_at(args, ts, FPT_EXEC, 0, (u32)id, id >> 32, 0, 0);
	return FPT_TP_KEEP;
}

TRACEPOINT_PROBE(sched, sched_process_exit)
{
	u64 id = bpf_get_current_pid_tgid();
	if (!filtered_out(id >> 32))
		emit(args, FPT_EXIT, 0, 0, 0);
	return FPT_TP_KEEP;
}

/* ---------------------------------------------------------------- x86_fpu tracepoints ------ */
/* A switch-out save (switch_fpu(), right after sched_switch on this CPU, same task): emitted with
 * the time of that switch (a clock read per switch saved; it happens within the same switch).
 * fpu__drop() (exec, exit) also deactivates, without saving: counted, not emitted. */
static __always_inline void on_deactivated(void *ctx, u64 xfeatures)
{
	u64 id = bpf_get_current_pid_tgid();
	u32 tid = (u32)id;
	struct cpu_state *cs = cpu_state();
	if (!cs || !tid || cs->switch_prev != tid) {
		ctr_add(FPT_CTR_DEACT_NOT_SAVE, 1);
		return;
	}
	cs->switch_prev = 0;
	if (calibrating())
		calib_sample(FPT_CAL_AND_DEACT, FPT_CAL_N_DEACT, task_flags(), 0);
	if (cs->pend_tid == tid) {   /* its sched_switch left the SWITCH to us: both in one record */
		cs->pend_tid = 0;
		emit_rec(ctx, cs->switch_ts, FPT_SWITCH_SAVE, 0, tid, id >> 32, xfeatures, cs->pend_blocked,
			 cs->pend_next, 2);
		return;
	}
	if (!filtered_out(id >> 32))
		emit_at(ctx, cs->switch_ts, FPT_XSAVE, 0, tid, id >> 32, xfeatures, FPT_XS_SWITCH);
}

static __always_inline void on_activated(void *ctx, u64 xfeatures)
{
	u64 id = bpf_get_current_pid_tgid();
	u32 tid = (u32)id;
	if (calibrating())
		calib_sample(FPT_CAL_AND_ACT, FPT_CAL_N_ACT, task_flags(), 0);
	u32 cause = FPT_XR_UNKNOWN;
	struct cpu_state *cs = cpu_state();
	if (cs)
		flush_switch(ctx, cs);
#if defined(FPT_XRSTOR_FENTRY) || defined(FPT_XRSTOR_KPROBE)
	/* The restore probe fired just before: emit it here, once, with xfeatures. */
	u64 ts;
	if (cs && cs->restore_tid == tid) {
		cause = cs->restore_cause;
		ts = cs->restore_ts;
		cs->restore_tid = 0;
	} else {
		ts = bpf_ktime_get_ns();
	}
	if (!filtered_out(id >> 32))
		emit_at(ctx, ts, FPT_XRSTOR, 0, tid, id >> 32, xfeatures, cause);
#else
	/* In 5.2+ this fires after a real XRSTOR: on the return to user mode (also the first one
	 * after exec), at signal delivery, inside a syscall (sigreturn, fork, KVM). Where it was is
	 * left to the model (cause UNKNOWN), exactly as for a perf import of the same tracepoint;
	 * only a sigreturn is known here and nowhere else. */
#ifdef FPT_INFER
	struct sys_state *s = sys_slot();
	if (s && s->tid == tid && (s->state & SYS_ACTIVE) && s->nr == NR_RT_SIGRETURN)
		cause = FPT_XR_SIGNAL;
#endif
	if (cs && cs->uret_tid == tid)
		cause = FPT_XR_USER_RETURN;
	if (!filtered_out(id >> 32))
		emit_at(ctx, bpf_ktime_get_ns(), FPT_XRSTOR, 0, tid, id >> 32, xfeatures, cause);
#endif
}

#if defined(FPT_HOT_BTF) || defined(FPT_HOT_RAW)
/* the raw argument: struct fpu *; XSTATE_BV of its saved state (5.16+: through fpu->fpstate) */
static __always_inline u64 fpu_xfeatures(void *fpu)
{
#ifdef FPT_OFF_FPU_FPSTATE
	void *fps = KREAD(void *, fpu + FPT_OFF_FPU_FPSTATE);
	return KREAD(u64, fps + FPT_OFF_XFEATURES);
#else
	return KREAD(u64, fpu + FPT_OFF_XFEATURES);
#endif
}
#endif

#ifdef FPT_TP_DEACTIVATED
#if defined(FPT_HOT_BTF)
int fpt_btf__x86_fpu_regs_deactivated(u64 *ctx)
{
	on_deactivated(ctx, fpu_xfeatures((void *)ctx[0]));
	return 0;
}
#elif defined(FPT_HOT_RAW)
RAW_TRACEPOINT_PROBE(x86_fpu_regs_deactivated)
{
	on_deactivated(ctx, fpu_xfeatures((void *)ctx->args[0]));
	return 0;
}
#else
TRACEPOINT_PROBE(x86_fpu, x86_fpu_regs_deactivated)
{
	on_deactivated(args, args->xfeatures);
	return FPT_TP_KEEP;
}
#endif
#endif

#ifdef FPT_TP_ACTIVATED
#if defined(FPT_HOT_BTF)
int fpt_btf__x86_fpu_regs_activated(u64 *ctx)
{
	on_activated(ctx, fpu_xfeatures((void *)ctx[0]));
	return 0;
}
#elif defined(FPT_HOT_RAW)
RAW_TRACEPOINT_PROBE(x86_fpu_regs_activated)
{
	on_activated(ctx, fpu_xfeatures((void *)ctx->args[0]));
	return 0;
}
#else
TRACEPOINT_PROBE(x86_fpu, x86_fpu_regs_activated)
{
	on_activated(args, args->xfeatures);
	return FPT_TP_KEEP;
}
#endif
#endif

#ifdef FPT_TP_SYNC
/* fpu_sync_fpstate() (ptrace, coredump, signal frames): before_save .. after_save brackets a
 * save that happens only if the registers are live. */
TRACEPOINT_PROBE(x86_fpu, x86_fpu_before_save)
{
	struct cpu_state *cs = cpu_state();
	if (!cs)
		return FPT_TP_KEEP;
	cs->sync_tid = (u32)bpf_get_current_pid_tgid();
#ifdef FPT_TP_LOAD_FPU
	cs->sync_live = !args->load_fpu;
#else
	cs->sync_live = 1;
#endif
	return FPT_TP_KEEP;
}

TRACEPOINT_PROBE(x86_fpu, x86_fpu_after_save)
{
	u64 id = bpf_get_current_pid_tgid();
	struct cpu_state *cs = cpu_state();
	if (!cs || cs->sync_tid != (u32)id)
		return FPT_TP_KEEP;
	u32 live = cs->sync_live;
	cs->sync_tid = 0;
#if !defined(FPT_XSAVE_FENTRY) && !defined(FPT_XSAVE_KPROBE)
	if (live && !filtered_out(id >> 32))
		emit(args, FPT_XSAVE, 0, args->xfeatures, FPT_XS_SYNC);
#endif
	return FPT_TP_KEEP;
}
#endif

#ifdef FPT_TP_COPY_DST
/* fork: fpu_clone() (5.x fpu__copy()) has saved the parent's registers into the child's buffer,
 * in the parent's context. 5.16+: always (restoring them first if they were not live, so
 * load_fpu is 0 here); before: only live registers (load_fpu 0), else a memcpy. The save probe
 * of the probe modes emits that save itself (fpu_clone's probe gave it cause FORK). */
TRACEPOINT_PROBE(x86_fpu, x86_fpu_copy_dst)
{
	struct cpu_state *cs = cpu_state();
	if (cs)
		cs->fork_tid = 0;
#if !defined(FPT_XSAVE_FENTRY) && !defined(FPT_XSAVE_KPROBE)
	u64 id = bpf_get_current_pid_tgid();
#ifdef FPT_TP_COPY_DST_LOAD
	if (args->load_fpu)
		return FPT_TP_KEEP;
#endif
	if (!filtered_out(id >> 32))
		emit(args, FPT_XSAVE, 0, args->xfeatures, FPT_XS_FORK);
#endif
	return FPT_TP_KEEP;
}
#endif

#ifdef FPT_TP_KVM
TRACEPOINT_PROBE(kvm, kvm_fpu)
{
	u64 id = bpf_get_current_pid_tgid();
	if (!filtered_out(id >> 32))
		emit(args, FPT_KVM_FPU, 0, args->load, 0);
	return FPT_TP_KEEP;
}
#endif

/* ---------------------------------------------------------------- probe handlers ---------- */
/* Shared bodies; the fentry and kprobe wrappers below only differ in how they get arguments
 * and the caller address. */
static __always_inline void on_kfpu_begin(void *ctx, u64 mask, u64 caller)
{
	u64 id = bpf_get_current_pid_tgid();
	struct cpu_state *cs = cpu_state();
	if (cs)
		cs->kfpu_tid = (u32)id + 1;   /* +1: kernel FPU on the idle task (tid 0) counts too */
	if (!filtered_out(id >> 32))
		emit(ctx, FPT_KFPU_BEGIN, 0, mask, caller);
}

static __always_inline void on_kfpu_end(void *ctx, u64 caller)
{
	u64 id = bpf_get_current_pid_tgid();
	struct cpu_state *cs = cpu_state();
	if (cs)
		cs->kfpu_tid = 0;
	if (!filtered_out(id >> 32))
		emit(ctx, FPT_KFPU_END, 0, 0, caller);
}

static __always_inline void on_xsave(void *ctx)
{
	u64 id = bpf_get_current_pid_tgid();
	u32 tid = (u32)id;
	u32 cause = FPT_XS_UNKNOWN;
	struct cpu_state *cs = cpu_state();
	if (cs) {
		if (cs->switch_prev == tid && tid) {
#ifdef FPT_TP_DEACTIVATED
			return;   /* regs_deactivated follows and emits it, with xfeatures */
#else
			cause = FPT_XS_SWITCH;
#endif
		} else if (cs->fork_tid == tid + 1) {
			cause = FPT_XS_FORK;
			cs->fork_tid = 0;
		} else if (cs->kfpu_tid == tid + 1) {
			cause = FPT_XS_KFPU;
		} else if (cs->sync_tid == tid && tid) {
			cause = FPT_XS_SYNC;
		}
	}
	if (!filtered_out(id >> 32))
		emit(ctx, FPT_XSAVE, 0, 0, cause);
}

static __always_inline void on_xrstor(void *ctx)
{
	u64 id = bpf_get_current_pid_tgid();
	u32 tid = (u32)id;
	u32 cause = FPT_XR_UNKNOWN;
	struct cpu_state *cs = cpu_state();
	if (cs && cs->uret_tid == tid && tid)
		cause = FPT_XR_USER_RETURN;
#ifdef FPT_TP_ACTIVATED
	if (cs) {
		if (cs->restore_tid) {
			emit_at(ctx, cs->restore_ts, FPT_XRSTOR, 0, cs->restore_tid, cs->restore_tgid,
				0, cs->restore_cause);
			ctr_add(FPT_CTR_RESTORE_UNPAIRED, 1);
		}
		if (filtered_out(id >> 32)) {
			cs->restore_tid = 0;
			return;
		}
		cs->restore_tid = tid;
		cs->restore_tgid = id >> 32;
		cs->restore_cause = cause;
		cs->restore_ts = bpf_ktime_get_ns();
		return;    /* regs_activated follows and emits it, with xfeatures */
	}
#endif
	if (!filtered_out(id >> 32))
		emit(ctx, FPT_XRSTOR, 0, 0, cause);
}

static __always_inline void on_fork_save(void)
{
	struct cpu_state *cs = cpu_state();
	if (cs)
		cs->fork_tid = (u32)bpf_get_current_pid_tgid() + 1;
}

static __always_inline void on_user_return(void *ctx)
{
	u64 id = bpf_get_current_pid_tgid();
	struct cpu_state *cs = cpu_state();
	if (cs)
		cs->uret_tid = (u32)id;
	if (!filtered_out(id >> 32))
		emit(ctx, FPT_USER_RETURN, 0, 0, 0);
}

#if defined(FPT_KFPU_FENTRY)
/* fentry has no pt_regs: take the kernel stack and return the frame after the first one inside
 * the traced function (the trampoline's return address, fn+N); its successor is the caller. */
static __always_inline u64 fentry_caller(void *ctx, u64 fn_start, u64 fn_end)
{
	u64 stack[FPT_CALLER_DEPTH] = {};
	long n = bpf_get_stack(ctx, stack, sizeof(stack), 0);
	if (n <= 0)
		goto unknown;
#pragma unroll
	for (int i = 0; i < FPT_CALLER_DEPTH - 1; i++) {
		if (stack[i] >= fn_start && stack[i] < fn_end)
			return stack[i + 1];
	}
unknown:
	ctr_add(FPT_CTR_CALLER_UNKNOWN, 1);
	return 0;
}
#ifdef FPT_KFPU_HAS_MASK
FPT_KFUNC(FPT_KFPU_BEGIN_FN, unsigned int kfpu_mask)
{
	on_kfpu_begin(ctx, kfpu_mask,
		      fentry_caller(ctx, FPT_KFPU_BEGIN_START, FPT_KFPU_BEGIN_END));
	return 0;
}
#else
FPT_KFUNC(FPT_KFPU_BEGIN_FN)
{
	on_kfpu_begin(ctx, 0, fentry_caller(ctx, FPT_KFPU_BEGIN_START, FPT_KFPU_BEGIN_END));
	return 0;
}
#endif
FPT_KFUNC(FPT_KFPU_END_FN)
{
	on_kfpu_end(ctx, fentry_caller(ctx, FPT_KFPU_END_START, FPT_KFPU_END_END));
	return 0;
}
#elif defined(FPT_KFPU_KPROBE)
/* At a function's entry, *(u64 *)sp is the return address (what kretprobes hijack). */
static __always_inline u64 kprobe_caller(struct pt_regs *ctx)
{
	u64 ret = 0;
	bpf_probe_read_kernel(&ret, sizeof(ret), (void *)PT_REGS_SP(ctx));
	return ret;
}
int fpt_kprobe_kfpu_begin(struct pt_regs *ctx)
{
#ifdef FPT_KFPU_HAS_MASK
	on_kfpu_begin(ctx, (u32)PT_REGS_PARM1(ctx), kprobe_caller(ctx));
#else
	on_kfpu_begin(ctx, 0, kprobe_caller(ctx));
#endif
	return 0;
}
int fpt_kprobe_kfpu_end(struct pt_regs *ctx)
{
	on_kfpu_end(ctx, kprobe_caller(ctx));
	return 0;
}
#endif

#if defined(FPT_XSAVE_FENTRY)
FPT_KFUNC(FPT_XSAVE_FN)
{
	on_xsave(ctx);
	return 0;
}
#elif defined(FPT_XSAVE_KPROBE)
int fpt_kprobe_xsave(struct pt_regs *ctx)
{
	on_xsave(ctx);
	return 0;
}
#endif

#if defined(FPT_XRSTOR_FENTRY)
FPT_KFUNC(FPT_XRSTOR_FN)
{
	on_xrstor(ctx);
	return 0;
}
#elif defined(FPT_XRSTOR_KPROBE)
int fpt_kprobe_xrstor(struct pt_regs *ctx)
{
	on_xrstor(ctx);
	return 0;
}
#endif

#if defined(FPT_URET_FENTRY)
FPT_KFUNC(FPT_URET_FN)
{
	on_user_return(ctx);
	return 0;
}
#elif defined(FPT_URET_KPROBE)
int fpt_kprobe_user_return(struct pt_regs *ctx)
{
	on_user_return(ctx);
	return 0;
}
#endif

#if defined(FPT_FORKSAVE_FENTRY)
FPT_KFUNC(FPT_FORKSAVE_FN)
{
	on_fork_save();
	return 0;
}
#elif defined(FPT_FORKSAVE_KPROBE)
int fpt_kprobe_fork_save(struct pt_regs *ctx)
{
	on_fork_save();
	return 0;
}
#endif
