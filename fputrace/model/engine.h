/* engine.h: the model's state, shared by the C engine (engine.c) and its one Python mirror
 * (fputrace/model/structs.py, checked field by field by tests/test_model_abi.py).
 *
 * Every array is allocated and grown by Python (numpy) and handed to C through struct fpt_engine;
 * C never allocates. All fields are int64_t (or char[16]) so the numpy mirror is plain "<i8".
 * A task is one task *generation*: a tid reused after an exit is a new task with a new uid.
 */
#ifndef FPUTRACE_MODEL_ENGINE_H
#define FPUTRACE_MODEL_ENGINE_H

#include <stdint.h>

#define FPT_ENGINE_VERSION 1

#define FPT_NCAUSE   8      /* room for XsaveCause / XrstorCause values 0..7 */
#define FPT_NCLASS   4      /* xstate classes by the highest live group: sse, avx, avx512, amx */
#define FPT_NPOL     3      /* policies replayed at once (fputrace/model/policies.py) */
#define FPT_NHIST    48     /* bucket b: 2^(b-1) <= ns < 2^b (b = 0: 0 ns) */

/* class = the highest one whose mask (struct fpt_engine.class_mask, from fputrace/model/cost.py
 * XSTATE_CLASSES) meets the event's xfeatures */
#define FPT_CLASS_SSE    0  /* x87/SSE only */
#define FPT_CLASS_AVX    1  /* bit 2 (YMM upper halves) */
#define FPT_CLASS_AVX512 2  /* bits 5-7 (opmask, ZMM_Hi256, Hi16_ZMM) */
#define FPT_CLASS_AMX    3  /* bits 17-18 (XTILECFG, XTILEDATA) */

/* owner of a CPU's registers: >= 0 is a task slot (its user state is valid there) */
#define FPT_OWN_NONE    (-1)
#define FPT_OWN_KERNEL  (-2)
#define FPT_OWN_UNKNOWN (-3)

/* SWITCH a1 (prev_state, TASK_REPORT bits) of an exited task's last switch: EXIT_DEAD|EXIT_ZOMBIE.
 * After sched_process_exit a task may still be preempted and run again before that switch. */
#define FPT_EXITED_STATES 0x30

/* task state at its last event (report column `state`) */
#define FPT_ST_UNKNOWN  0
#define FPT_ST_USER     1
#define FPT_ST_KERNEL   2
#define FPT_ST_SLEEPING 3
#define FPT_ST_EXITED   4

/* why fpt_feed stopped before the end of the batch (struct fpt_engine.need): Python grows the
 * named array and calls again from the returned index */
#define FPT_NEED_NOTHING  0
#define FPT_NEED_TASKS    1
#define FPT_NEED_TIDS     2   /* need_arg: the tid that did not fit */
#define FPT_NEED_CPUS     3   /* need_arg: the cpu that did not fit */
#define FPT_NEED_CALLERS  4
#define FPT_NEED_OWNERS   5   /* owner-change output full */
#define FPT_NEED_SECTIONS 6   /* closed-section output full */
#define FPT_NEED_BAD_TID  7   /* need_arg: a tid beyond any pid_max (refused) */

/* owner kinds in owner-change records */
#define FPT_OWNER_TASK    0
#define FPT_OWNER_NONE    1
#define FPT_OWNER_KERNEL  2
#define FPT_OWNER_UNKNOWN 3

/* One task under one replayed policy: counts by xstate class, avoidable restores. */
struct fpt_policy_counts {
	int64_t xsave[FPT_NCLASS];
	int64_t xrstor[FPT_NCLASS];
	int64_t xsave_bytes[FPT_NCLASS];
	int64_t xrstor_bytes[FPT_NCLASS];
	int64_t avoidable;          /* restores thrown away before a user-mode instruction */
	int64_t avoidable_bytes;
};

/* A task's numbers: one report row. Copied out whole when the task retires. */
struct fpt_task_counts {
	int64_t uid;                /* unique per task generation: the sinks' task id */
	int64_t tid;
	int64_t tgid;
	int64_t generation;         /* 0, 1, ... per reuse of the tid */
	int64_t kthread;            /* no user FPU state (PF_KTHREAD / PF_USER_WORKER, tid 0) */
	int64_t gap;                /* some count of it crossed a LOST gap */
	int64_t state;              /* FPT_ST_* */
	int64_t last_cpu;
	int64_t xfeatures_seen;     /* OR of the xfeatures of its XSAVE/XRSTOR events */
	int64_t xsave[FPT_NCAUSE];  /* measured, by cause */
	int64_t xrstor[FPT_NCAUSE];
	int64_t avoidable[FPT_NCAUSE];   /* measured avoidable XRSTOR, by the cause of the restore */
	int64_t avoidable_bytes;
	int64_t xsave_class[FPT_NCLASS];
	int64_t xrstor_class[FPT_NCLASS];
	int64_t xsave_class_bytes[FPT_NCLASS];
	int64_t xrstor_class_bytes[FPT_NCLASS];
	int64_t kfpu_sections;
	int64_t kfpu_inferred;
	int64_t kfpu_ns;            /* timed, exact sections only */
	int64_t kfpu_max_ns;
	int64_t xsave_unseen;       /* kernel-FPU saves inferred from switch-outs (not in xsave) */
	struct fpt_policy_counts policy[FPT_NPOL];
	char comm[16];
};

/* Where one task's state is in one policy's replay. */
struct fpt_policy_state {
	int64_t need_load;          /* TIF_NEED_FPU_LOAD in that policy */
	int64_t pending_bytes;      /* > 0: restored ahead of use (bytes), avoidable if thrown away */
	int64_t last_cpu;           /* fpu->last_cpu */
};

/* A live task: hot state first, then its counts. */
struct fpt_task {
	int64_t xfeat;              /* last known xfeatures (0: none yet) */
	int64_t xbytes;             /* bytes and class of xfeat (cached) */
	int64_t xclass;
	int64_t dead;               /* 1: exited; 2: exited and switched out */
	int64_t gone;               /* no event can name it any more: queued to retire */
	int64_t owner_cpu;          /* CPU whose registers hold its user state, -1 */
	int64_t pending_cause;      /* measured: restored ahead of use, by cause + 1; 0: no */
	int64_t pending_bytes;
	int64_t pend_cpu;           /* 1 + CPU holding back an action that names it; 0: none */
	int64_t first_ts;           /* -1: only named so far (COMM/TASK records) */
	int64_t last_ts;
	struct fpt_policy_state ps[FPT_NPOL];
	struct fpt_task_counts n;
};

/* tid -> its current generation */
struct fpt_tid {
	int64_t slot;               /* task slot of the newest generation, -1 */
	int64_t next_generation;
};

struct fpt_cpu {
	int64_t cur;                /* task slot running (as far as we know), -1 */
	int64_t owner;              /* FPT_OWN_* or a task slot */
	int64_t unknown;            /* after LOST until re-synchronised */
	int64_t kfpu_open;
	int64_t kfpu_ts;
	int64_t kfpu_caller;        /* caller address of the open section's begin, 0 unknown */
	int64_t kfpu_inferred;
	int64_t pend_kind;          /* held-back action (engine.c: hold) */
	int64_t pend_a;
	int64_t pend_b;
	int64_t pend_saved;
	int64_t pend_inferred;
	int64_t pend_new;
	int64_t pend_arg;           /* SWITCH: prev_state */
	int64_t last_kind;
	int64_t last_task;
	int64_t xsave;
	int64_t xrstor;
	int64_t kfpu_sections;
	int64_t lost;
	int64_t kvm;
	int64_t policy_owner[FPT_NPOL];
};

/* Kernel FPU sections by the caller of kernel_fpu_begin. */
struct fpt_caller {
	int64_t address;
	int64_t sections;
	int64_t inferred;
	int64_t total_ns;
	int64_t max_ns;
	int64_t hist[FPT_NHIST];
};

/* Per-event annotations for sinks (any pointer may be NULL: not wanted). */
struct fpt_owner_change {
	int64_t ts_ns;
	int64_t cpu;
	int64_t owner;              /* FPT_OWNER_* */
	int64_t tid;
	int64_t task_id;            /* uid, -1 unless TASK */
};

struct fpt_section {
	int64_t cpu;
	int64_t tid;
	int64_t tgid;
	int64_t task_id;
	int64_t begin_ns;           /* -1: began before the trace or in a gap */
	int64_t end_ns;
	int64_t caller;             /* address of the kernel_fpu_begin caller, 0 unknown */
	int64_t inferred;
};

struct fpt_out {
	int64_t *task_id;           /* [n]: uid of the event's task, -1 for LOST */
	int64_t *other_task_id;     /* [n]: SWITCH next / FORK child, else -1 */
	int8_t *cause;              /* [n]: resolved XSAVE/XRSTOR cause, else -1 */
	int8_t *xclass;             /* [n]: xstate class of an XSAVE/XRSTOR, else -1 */
	int32_t *nbytes;            /* [n]: bytes of an XSAVE/XRSTOR, else 0 */
	struct fpt_owner_change *owners;
	int64_t owners_cap;
	int64_t owners_len;
	struct fpt_section *sections;
	int64_t sections_cap;
	int64_t sections_len;
};

struct fpt_engine {
	struct fpt_task *tasks;
	int64_t task_cap;
	int64_t task_hwm;           /* slots ever used; below it, free ones are in free_slots */
	int64_t *free_slots;        /* [task_cap] stack */
	int64_t nfree;
	int64_t *retire_queue;      /* [task_cap]: exited and switched out, to retire */
	int64_t nretire;
	struct fpt_tid *tids;
	int64_t tid_cap;
	struct fpt_cpu *cpus;
	int64_t cpu_cap;
	int64_t ncpu;               /* highest CPU seen + 1 */
	struct fpt_caller *callers;
	int64_t caller_cap;
	int64_t ncallers;
	int64_t *caller_hash;       /* [caller_hash_cap] open addressing: caller index + 1, 0 empty */
	int64_t caller_hash_cap;    /* a power of two, >= 2 * caller_cap */
	int64_t need;               /* FPT_NEED_* */
	int64_t need_arg;
	/* configuration (set once by Python) */
	int64_t npol;
	int64_t policy_eager[FPT_NPOL];
	int64_t policy_validity[FPT_NPOL];
	int64_t rec_policy;         /* index of the recorded policy, -1 unknown */
	int64_t rec_deferred;       /* the kernel's saves/restores are evidence of returns to user */
	int64_t has_ur_events;      /* USER_RETURN is observed (switch_fpu_return probed) */
	int64_t ur_assumed;         /* eager kernel, no USER_RETURN: assume one before losing regs */
	int64_t kfpu_exact;         /* kernel_fpu_begin probed exactly */
	int64_t exit_states;        /* SWITCH prev_state has the exit bits (sched_switch sources) */
	int64_t full_mask;          /* the kernel's enabled mask (XCR0 | XSS) */
	int64_t class_mask[FPT_NCLASS];
	int64_t xsize[64];          /* bytes per component (CPUID leaf 0xD) */
	/* totals */
	int64_t next_uid;
	int64_t nevents;
	int64_t first_ts;
	int64_t last_ts;
	int64_t lost;
	int64_t inferred;
	int64_t gap;
	int64_t unexplained;
	int64_t kfpu_untimed;
	int64_t unseen_saves;
	int64_t hist[FPT_NHIST];
	/* retired tasks, summed (kfpu_max_ns: max) */
	struct fpt_task_counts retired;
	int64_t retired_tasks;       /* retired generations with any activity */
	int64_t retired_selfcheck_diff;
};

int64_t fpt_engine_version(void);
const char *fpt_engine_build_id(void);
int64_t fpt_sizeof(int64_t which);
void fpt_init_cpus(struct fpt_engine *e, int64_t first, int64_t last);
int64_t fpt_feed(struct fpt_engine *e, const void *events, int64_t n, int64_t start,
		 struct fpt_out *out);
void fpt_finish(struct fpt_engine *e);
void fpt_rehash_callers(struct fpt_engine *e);
int64_t fpt_retire(struct fpt_engine *e, struct fpt_task_counts *rows, int64_t cap);
int64_t fpt_preload(struct fpt_engine *e, int64_t tid, int64_t tgid, int64_t kthread,
		    const char *comm);

#endif
