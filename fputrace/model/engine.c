/* engine.c: the model's one pass over an event batch (SPEC 5.2-5.4).
 *
 * Per event: resolve the task generation, replay the CPU's held-back action now that the kernel's
 * own save/restore shows what happened (replay.h), then apply the event to the measured side:
 * register ownership per CPU, counts per task and cause, kernel FPU sections, avoidable restores.
 *
 * Semantics, per CPU:
 * - The measured side counts the XSAVE/XRSTOR events of the trace, infers their causes from context
 *   (a save right after a switch of that task is a switch save; after a kernel FPU begin, a kfpu
 *   save) and tracks who owns the registers (a task's user state, KERNEL, NONE, UNKNOWN after LOST).
 * - The replay side (replay.h) drives every policy from the trace's *logical* actions (switch, kernel
 *   FPU begin/end, return to user) and lets each policy decide where it saves and restores.
 * - SWITCH, KFPU_BEGIN, KFPU_END and USER_RETURN are held back until the next event on that CPU:
 *   the kernel's own save/restore follows them, and whether it happened is evidence (a deferred
 *   kernel saves at switch-out only if the task went back to user mode since it last lost its
 *   registers).
 *
 * State lives in the structs of engine.h, allocated by Python. fpt_feed returns early (e->need)
 * when an array must grow; it checks before touching anything, so the event is replayed whole.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef uint64_t u64;
typedef uint32_t u32;
typedef uint16_t u16;
typedef uint8_t u8;

#include "engine.h"
#include "fputrace.h"     /* struct fpt_event, kinds, causes: the capture contract */

#ifndef FPT_BUILD_ID
#define FPT_BUILD_ID "unknown"
#endif

#define MASK63 ((int64_t)(((uint64_t)1 << 63) - 1))
#define MAX_TID (1 << 24)   /* pid_max cannot exceed 2^22; refuse nonsense */

int64_t fpt_engine_version(void) { return FPT_ENGINE_VERSION; }
const char *fpt_engine_build_id(void) { return FPT_BUILD_ID; }

int64_t fpt_sizeof(int64_t which)
{
	switch (which) {
	case 0: return sizeof(struct fpt_engine);
	case 1: return sizeof(struct fpt_task);
	case 2: return sizeof(struct fpt_task_counts);
	case 3: return sizeof(struct fpt_cpu);
	case 4: return sizeof(struct fpt_caller);
	case 5: return sizeof(struct fpt_tid);
	case 6: return sizeof(struct fpt_out);
	case 7: return sizeof(struct fpt_owner_change);
	case 8: return sizeof(struct fpt_section);
	case 9: return sizeof(struct fpt_event);
	}
	return -1;
}

/* ------------------------------------------------------------------ xstate cost */

/* Bytes an XSAVES/XRSTORS moves (legacy area + header + each non-init extended component) and
 * the class of the highest live group. xfeatures 0 = unknown: every enabled component. */
struct xcost {
	int64_t bytes;
	int64_t cls;
};

static inline struct xcost xstate_cost(const struct fpt_engine *e, int64_t xfeat)
{
	uint64_t x = (uint64_t)xfeat & (uint64_t)e->full_mask;
	if (x == 0)
		x = (uint64_t)e->full_mask;
	struct xcost r = {576, FPT_CLASS_SSE};
	for (uint64_t y = x & ~(uint64_t)3; y; y &= y - 1)
		r.bytes += e->xsize[__builtin_ctzll(y)];
	for (int k = FPT_NCLASS - 1; k > 0; k--)
		if (x & (uint64_t)e->class_mask[k]) {
			r.cls = k;
			break;
		}
	return r;
}

static inline void set_xfeat(const struct fpt_engine *e, struct fpt_task *t, int64_t xfeat)
{
	if (t->xfeat == xfeat && t->xbytes)
		return;
	const struct xcost r = xstate_cost(e, xfeat);
	t->xfeat = xfeat;
	t->xbytes = r.bytes;
	t->xclass = r.cls;
}

static inline int is_user(const struct fpt_engine *e, int64_t t)
{
	return t >= 0 && e->tasks[t].n.kthread == 0;
}

/* ------------------------------------------------------------------ tasks */

static inline int64_t tasks_free(const struct fpt_engine *e)
{
	return e->nfree + (e->task_cap - e->task_hwm);
}

static int64_t new_task(struct fpt_engine *e, int64_t tid)
{
	int64_t t = e->nfree > 0 ? e->free_slots[--e->nfree] : e->task_hwm++;
	struct fpt_task *T = &e->tasks[t];
	memset(T, 0, sizeof(*T));
	struct fpt_tid *m = &e->tids[tid];
	T->n.uid = e->next_uid++;
	T->n.tid = tid;
	T->n.generation = m->next_generation++;
	T->n.kthread = tid == 0;
	T->n.last_cpu = -1;
	T->owner_cpu = -1;
	T->first_ts = -1;
	const struct xcost r = xstate_cost(e, 0);
	T->xbytes = r.bytes;
	T->xclass = r.cls;
	for (int p = 0; p < e->npol; p++)
		T->ps[p].last_cpu = -1;
	m->slot = t;
	return t;
}

/* No event can name task t again (it exited and switched out for good, or its tid was taken by a
 * new task): its counts are final, it retires once nothing refers to it. */
static inline void task_gone(struct fpt_engine *e, int64_t t)
{
	if (e->tasks[t].gone)
		return;
	e->tasks[t].gone = 1;
	if (e->retire_queue)
		e->retire_queue[e->nretire++] = t;
}

/* The current generation of tid (a new one after EXIT + final switch-out). */
static inline int64_t get_task(struct fpt_engine *e, int64_t tid)
{
	int64_t t = e->tids[tid].slot;
	if (t >= 0 && e->tasks[t].dead < 2)
		return t;
	return new_task(e, tid);
}

/* ------------------------------------------------------------------ measured ownership */

static inline void note_owner(struct fpt_engine *e, struct fpt_out *out, int64_t ts, int64_t c,
			      int64_t owner)
{
	if (!out->owners)
		return;
	struct fpt_owner_change *r = &out->owners[out->owners_len++];
	r->ts_ns = ts;
	r->cpu = c;
	if (owner >= 0) {
		r->owner = FPT_OWNER_TASK;
		r->tid = e->tasks[owner].n.tid;
		r->task_id = e->tasks[owner].n.uid;
	} else {
		r->owner = owner == FPT_OWN_NONE ? FPT_OWNER_NONE
			 : owner == FPT_OWN_KERNEL ? FPT_OWNER_KERNEL : FPT_OWNER_UNKNOWN;
		r->tid = 0;
		r->task_id = -1;
	}
}

/* A task's freshly restored state was thrown away unused: an avoidable restore (SPEC 5.3). */
static inline void measured_avoidable(struct fpt_task *T)
{
	if (T->pending_cause) {
		T->n.avoidable[T->pending_cause - 1] += 1;
		T->n.avoidable_bytes += T->pending_bytes;
		T->pending_cause = 0;
		T->pending_bytes = 0;
	}
}

static inline void set_owner(struct fpt_engine *e, struct fpt_out *out, int64_t c, int64_t owner,
			     int64_t ts)
{
	struct fpt_cpu *C = e->cpus;
	int64_t old = C[c].owner;
	if (old == owner)
		return;
	if (old >= 0 && e->tasks[old].owner_cpu == c) {
		e->tasks[old].owner_cpu = -1;
		measured_avoidable(&e->tasks[old]);
	}
	if (owner >= 0) {
		int64_t o = e->tasks[owner].owner_cpu;
		if (o >= 0 && o != c && C[o].owner == owner) {   /* stale elsewhere: one CPU at a time */
			C[o].owner = FPT_OWN_NONE;
			note_owner(e, out, ts, o, FPT_OWN_NONE);
		}
		e->tasks[owner].owner_cpu = c;
	}
	C[c].owner = owner;
	note_owner(e, out, ts, c, owner);
}

static inline int64_t hist_bucket(int64_t ns)
{
	int64_t b = 0;
	while (ns > 0 && b < FPT_NHIST - 1) {
		ns >>= 1;
		b++;
	}
	return b;
}

/* ------------------------------------------------------------------ callers */

static inline uint64_t caller_hash(int64_t addr)
{
	return ((uint64_t)addr * 0x9E3779B97F4A7C15ull) >> 17;
}

/* Index of the caller at addr, added if new; -1 if the table must grow first. */
static int64_t caller_index(struct fpt_engine *e, int64_t addr)
{
	uint64_t mask = (uint64_t)e->caller_hash_cap - 1;
	for (uint64_t h = caller_hash(addr) & mask;; h = (h + 1) & mask) {
		int64_t v = e->caller_hash[h];
		if (v == 0) {
			if (e->ncallers >= e->caller_cap)
				return -1;
			int64_t ci = e->ncallers++;
			memset(&e->callers[ci], 0, sizeof(e->callers[ci]));
			e->callers[ci].address = addr;
			e->caller_hash[h] = ci + 1;
			return ci;
		}
		if (e->callers[v - 1].address == addr)
			return v - 1;
	}
}

/* After Python grew the caller table (and a fresh, larger, zeroed hash): index them again. */
void fpt_rehash_callers(struct fpt_engine *e)
{
	uint64_t mask = (uint64_t)e->caller_hash_cap - 1;
	for (int64_t ci = 0; ci < e->ncallers; ci++) {
		uint64_t h = caller_hash(e->callers[ci].address) & mask;
		while (e->caller_hash[h])
			h = (h + 1) & mask;
		e->caller_hash[h] = ci + 1;
	}
}

#include "replay.h"

/* ------------------------------------------------------------------ the loop */

static inline int64_t stop(struct fpt_engine *e, int64_t need, int64_t arg, int64_t i)
{
	e->need = need;
	e->need_arg = arg;
	return i;
}

static inline void count_xsave(struct fpt_task *T, int64_t cause, int64_t nbytes, int64_t cls)
{
	T->n.xsave[cause] += 1;
	T->n.xsave_class[cls] += 1;
	T->n.xsave_class_bytes[cls] += nbytes;
}

static inline void count_xrstor(struct fpt_task *T, int64_t cause, int64_t nbytes, int64_t cls)
{
	T->n.xrstor[cause] += 1;
	T->n.xrstor_class[cls] += 1;
	T->n.xrstor_class_bytes[cls] += nbytes;
}

int64_t fpt_feed(struct fpt_engine *e, const void *events, int64_t n, int64_t start,
		 struct fpt_out *out)
{
	const struct fpt_event *ev = events;
	struct fpt_cpu *C = e->cpus;
	const int npol = (int)e->npol;
	e->need = FPT_NEED_NOTHING;
	for (int64_t i = start; i < n; i++) {
		const struct fpt_event *x = &ev[i];
		const int64_t k = x->kind;
		const int64_t c = x->cpu;
		const int64_t ts = (int64_t)x->ts_ns;
		const int64_t a0 = (int64_t)(x->a0 & MASK63);
		/* --- room for everything this event may need, before any change */
		if (c >= e->cpu_cap)
			return stop(e, FPT_NEED_CPUS, c, i);
		if ((int64_t)x->tid >= e->tid_cap)
			return stop(e, (int64_t)x->tid >= MAX_TID ? FPT_NEED_BAD_TID : FPT_NEED_TIDS, x->tid, i);
		if ((k == FPT_SWITCH || k == FPT_FORK) && (x->a0 & 0xffffffff) >= (u64)e->tid_cap) {
			int64_t t2 = (int64_t)(x->a0 & 0xffffffff);
			return stop(e, t2 >= MAX_TID ? FPT_NEED_BAD_TID : FPT_NEED_TIDS, t2, i);
		}
		if (tasks_free(e) < 3)
			return stop(e, FPT_NEED_TASKS, 0, i);
		if (k == FPT_KFPU_END && e->ncallers >= e->caller_cap)
			return stop(e, FPT_NEED_CALLERS, 0, i);
		if (out->owners && out->owners_len + 2 > out->owners_cap)
			return stop(e, FPT_NEED_OWNERS, 0, i);
		if (out->sections && out->sections_len + 1 > out->sections_cap)
			return stop(e, FPT_NEED_SECTIONS, 0, i);
		if (c >= e->ncpu) {
			fpt_init_cpus(e, e->ncpu, c + 1);
			e->ncpu = c + 1;
		}

		e->nevents++;
		if (e->first_ts < 0)
			e->first_ts = ts;
		e->last_ts = ts;
		const int64_t inferred = x->flags & FPT_FLAG_INFERRED;
		e->inferred += inferred;
		if (out->task_id) {
			out->task_id[i] = -1;
			out->other_task_id[i] = -1;
			out->cause[i] = -1;
			out->xclass[i] = -1;
			out->nbytes[i] = 0;
		}

		if (k == FPT_LOST) {
			C[c].pend_kind = 0;       /* the held-back action may be half of what was lost */
			e->lost += a0;
			C[c].lost += a0;
			if (C[c].cur >= 0)
				e->tasks[C[c].cur].n.gap = 1;
			C[c].cur = -1;
			C[c].unknown = 1;
			C[c].kfpu_open = 0;
			set_owner(e, out, c, FPT_OWN_UNKNOWN, ts);
			for (int p = 0; p < npol; p++)
				C[c].policy_owner[p] = FPT_OWN_UNKNOWN;
			e->gap = 1;
			continue;
		}

		const int64_t t = get_task(e, x->tid);
		struct fpt_task *T = &e->tasks[t];
		if (out->task_id)
			out->task_id[i] = T->n.uid;
		if (k == FPT_TASK) {
			T->n.kthread = (x->a0 & FPT_TASK_KTHREAD) != 0;
			T->n.tgid = x->tgid;
			continue;
		}
		if (k == FPT_COMM) {
			T->n.tgid = x->tgid;
			memcpy(T->n.comm, &x->a0, 8);
			memcpy(T->n.comm + 8, &x->a1, 8);   /* 16 bytes, NUL-padded unless full */
			/* a fork's child_comm may hold stale bytes after the NUL: the name ends there */
			char *nul = memchr(T->n.comm, 0, 16);
			if (nul)
				memset(nul, 0, 16 - (size_t)(nul - T->n.comm));
			continue;
		}
		int64_t is_new = 0;              /* first sight of the task in an FPU/scheduler event */
		if (T->first_ts < 0) {
			is_new = 1;
			T->first_ts = ts;
			T->n.tgid = x->tgid;
		}
		T->last_ts = ts;
		if (C[c].unknown)
			T->n.gap = 1;
		if ((k == FPT_XSAVE || k == FPT_XRSTOR) && a0 != 0)
			set_xfeat(e, T, a0);          /* before the replay sizes its own save */

		/* --- resolve held-back actions: the task's on other CPUs, then this CPU's */
		if (T->pend_cpu)
			flush_elsewhere(e, c, t);
		if (k == FPT_SWITCH) {
			int64_t nx = e->tids[x->a0 & 0xffffffff].slot;
			if (nx >= 0 && e->tasks[nx].pend_cpu)
				flush_elsewhere(e, c, nx);
		}
		int64_t consumed = 0;
		const int64_t pk = C[c].pend_kind;
		if (pk) {
			const int64_t pa = C[c].pend_a;
			if (pk == FPT_SWITCH && k == FPT_XSAVE && t == pa && !C[c].pend_saved) {
				C[c].pend_saved = 1;  /* the switch-out save; the switch-in restore may follow */
				consumed = FPT_XS_SWITCH;
				if ((e->rec_deferred || e->ur_assumed) && T->dead == 0)
					apply_user_return(e, c, t);   /* evidence: before the switch */
			} else if (pk == FPT_SWITCH && k == FPT_XRSTOR && t == C[c].pend_b
				   && !e->rec_deferred) {      /* eager kernels restore at switch-in */
				flush_pending(e, c, 1);
				consumed = FPT_XR_SWITCH_IN;
			} else if (pk == FPT_KFPU_BEGIN && k == FPT_XSAVE && t == pa) {
				C[c].pend_saved = 1;
				flush_pending(e, c, 0);
				consumed = FPT_XS_KFPU;
			} else if (pk == FPT_KFPU_END && k == FPT_XRSTOR && t == pa && !e->rec_deferred) {
				flush_pending(e, c, 1);
				consumed = FPT_XR_KFPU_END;
			} else if (pk == FPT_USER_RETURN && k == FPT_XRSTOR && t == pa) {
				flush_pending(e, c, 1);
				consumed = FPT_XR_USER_RETURN;
			} else {
				flush_pending(e, c, 0);
			}
		}

		switch (k) {
		case FPT_SWITCH: {
			const int64_t nxt = get_task(e, (int64_t)(x->a0 & 0xffffffff));
			struct fpt_task *N = &e->tasks[nxt];
			if (out->task_id)
				out->other_task_id[i] = N->n.uid;
			const int nxt_new = N->first_ts < 0;
			if (nxt_new)
				N->first_ts = ts;
			N->last_ts = ts;
			hold(e, c, FPT_SWITCH, t, nxt, (int64_t)x->a1, 0, is_new);
			T->n.state = T->dead == 0 ? FPT_ST_SLEEPING : FPT_ST_EXITED;
			N->n.state = FPT_ST_KERNEL;
			N->n.last_cpu = c;
			C[c].cur = nxt;
			if (nxt_new && N->n.kthread == 0)
				for (int p = 0; p < npol; p++)   /* first sight of a task being switched in */
					N->ps[p].need_load = 1;
			break;
		}
		case FPT_KFPU_BEGIN:
			if (e->ur_assumed)             /* (before its registers are taken: see set_owner) */
				apply_user_return(e, c, t);
			hold(e, c, FPT_KFPU_BEGIN, t, -1, 0, inferred, is_new);
			C[c].kfpu_open = 1;
			C[c].kfpu_ts = ts;
			C[c].kfpu_caller = (int64_t)x->a1;
			C[c].kfpu_inferred = inferred;
			C[c].cur = t;
			if (T->n.kthread == 0)
				T->n.state = FPT_ST_KERNEL;
			set_owner(e, out, c, FPT_OWN_KERNEL, ts);
			C[c].unknown = 0;
			break;
		case FPT_KFPU_END: {
			hold(e, c, FPT_KFPU_END, t, -1, 0, inferred, is_new);
			int64_t dur = -1, inf = inferred, caller = 0;
			if (C[c].kfpu_open) {
				caller = C[c].kfpu_caller;   /* sections are keyed by the begin's caller */
				dur = ts - C[c].kfpu_ts;
				inf |= C[c].kfpu_inferred;
			}                             /* else: began before the trace (or in a gap) */
			const int64_t ci = caller ? caller_index(e, caller) : -1;
			if (out->sections) {
				struct fpt_section *s = &out->sections[out->sections_len++];
				s->cpu = c;
				s->tid = T->n.tid;
				s->tgid = T->n.tgid;
				s->task_id = T->n.uid;
				s->begin_ns = dur >= 0 ? C[c].kfpu_ts : -1;
				s->end_ns = ts;
				s->caller = caller;
				s->inferred = inf != 0;
			}
			C[c].kfpu_open = 0;
			C[c].kfpu_sections += 1;
			T->n.kfpu_sections += 1;
			if (inf)
				T->n.kfpu_inferred += 1;
			if (ci >= 0) {
				e->callers[ci].sections += 1;
				if (inf)
					e->callers[ci].inferred += 1;
			}
			if (dur >= 0 && !inf) {
				const int64_t b = hist_bucket(dur);
				e->hist[b] += 1;
				T->n.kfpu_ns += dur;
				if (dur > T->n.kfpu_max_ns)
					T->n.kfpu_max_ns = dur;
				if (ci >= 0) {
					e->callers[ci].total_ns += dur;
					if (dur > e->callers[ci].max_ns)
						e->callers[ci].max_ns = dur;
					e->callers[ci].hist[b] += 1;
				}
			} else if (!inf) {
				e->kfpu_untimed += 1;
			}
			if (C[c].owner == FPT_OWN_KERNEL)
				set_owner(e, out, c, FPT_OWN_NONE, ts);
			break;
		}
		case FPT_USER_RETURN:
			e->has_ur_events = 1;
			hold(e, c, FPT_USER_RETURN, t, -1, 0, inferred, is_new);
			C[c].cur = t;
			break;
		case FPT_XSAVE: {
			int64_t cause = (int64_t)x->a1;
			if (cause == FPT_XS_UNKNOWN || cause >= FPT_NCAUSE) {
				if (consumed)
					cause = consumed;
				else if (C[c].last_kind == FPT_FORK && C[c].last_task == t)
					cause = FPT_XS_FORK;
				else if (C[c].kvm)
					cause = FPT_XS_KVM;
				else
					cause = FPT_XS_UNKNOWN;
			}
			const int64_t nbytes = T->xbytes, cls = T->xclass;
			T->n.xfeatures_seen |= a0;
			count_xsave(T, cause, nbytes, cls);
			C[c].xsave += 1;
			if (out->task_id) {
				out->cause[i] = (int8_t)cause;
				out->xclass[i] = (int8_t)cls;
				out->nbytes[i] = (int32_t)nbytes;
			}
			if (T->pending_cause && (cause == FPT_XS_SWITCH || cause == FPT_XS_KFPU))
				measured_avoidable(T);    /* (a fork/signal copy keeps the registers) */
			if (C[c].owner == FPT_OWN_UNKNOWN && consumed == FPT_XS_SWITCH) {
				set_owner(e, out, c, t, ts);  /* its state was in the registers */
				C[c].unknown = 0;
			}
			if (!consumed)                 /* not a policy decision: the same in every policy */
				for (int p = 0; p < npol; p++)
					policy_count_xsave(&T->n.policy[p], nbytes, cls);
			break;
		}
		case FPT_XRSTOR: {
			if (is_new && T->n.kthread == 0)
				for (int p = 0; p < npol; p++)   /* first sight is a restore: state was in memory */
					T->ps[p].need_load = 1;
			int64_t cause = (int64_t)x->a1;
			if (cause >= FPT_NCAUSE)
				cause = FPT_XR_UNKNOWN;
			if (cause == FPT_XR_UNKNOWN) {
				if (consumed)
					cause = consumed;
				else if (C[c].last_kind == FPT_EXEC && C[c].last_task == t)
					cause = FPT_XR_INIT;
				else if (C[c].kvm)
					cause = FPT_XR_KVM;
				else if (e->rec_deferred && !e->has_ur_events)
					cause = FPT_XR_USER_RETURN;   /* tracepoint mode: return-path restore */
			}
			const int64_t nbytes = T->xbytes, cls = T->xclass;
			T->n.xfeatures_seen |= a0;
			count_xrstor(T, cause, nbytes, cls);
			C[c].xrstor += 1;
			if (out->task_id) {
				out->cause[i] = (int8_t)cause;
				out->xclass[i] = (int8_t)cls;
				out->nbytes[i] = (int32_t)nbytes;
			}
			set_owner(e, out, c, t, ts);
			C[c].unknown = 0;
			C[c].cur = t;
			T->n.last_cpu = c;
			if (consumed == FPT_XR_USER_RETURN) {
				T->pending_cause = 0;
				T->pending_bytes = 0;
			} else if (consumed) {             /* restored ahead of use: avoidable if thrown away */
				T->pending_cause = cause + 1;
				T->pending_bytes = nbytes;
			} else if (cause == FPT_XR_USER_RETURN) {
				unexplained_restore(e, c, t);
				apply_user_return(e, c, t);
			} else {                       /* sigreturn, exec, KVM, ...: the same in every policy */
				for (int p = 0; p < npol; p++)
					policy_restore(e, p, t, c, 0);
				T->pending_cause = 0;
				T->pending_bytes = 0;
			}
			break;
		}
		case FPT_FORK: {
			const int64_t child_tid = (int64_t)(x->a0 & 0xffffffff);
			int64_t ch = e->tids[child_tid].slot;
			if (ch < 0 || e->tasks[ch].first_ts >= 0) {  /* a named-only entry is this child */
				if (ch >= 0)
					task_gone(e, ch);   /* its tid is the child's now */
				ch = new_task(e, child_tid);
			}
			struct fpt_task *H = &e->tasks[ch];
			T = &e->tasks[t];
			if (out->task_id)
				out->other_task_id[i] = H->n.uid;
			H->n.tgid = (int64_t)(x->a1 & 0xffffffff);
			H->n.kthread = T->n.kthread;
			set_xfeat(e, H, T->xfeat);
			H->first_ts = ts;
			H->last_ts = ts;
			H->n.state = FPT_ST_SLEEPING;
			if (H->n.comm[0] == 0)
				memcpy(H->n.comm, T->n.comm, sizeof(H->n.comm));  /* a child starts with its parent's name */
			for (int p = 0; p < npol; p++)
				H->ps[p].need_load = 1;
			break;
		}
		case FPT_EXEC:
			set_xfeat(e, T, 3);            /* x87 + SSE: a fresh image starts in init state */
			if (C[c].owner == t)
				set_owner(e, out, c, FPT_OWN_NONE, ts);
			break;
		case FPT_EXIT:
			T->dead = 1;
			T->n.state = FPT_ST_EXITED;
			T->pending_cause = 0;          /* dying is not "thrown away before use" */
			T->pending_bytes = 0;
			for (int p = 0; p < npol; p++)
				T->ps[p].pending_bytes = 0;
			if (C[c].owner == t)
				set_owner(e, out, c, FPT_OWN_NONE, ts);
			break;
		case FPT_KVM_FPU:
			C[c].kvm = x->a0 != 0;
			if (x->a0 != 0) {
				set_owner(e, out, c, FPT_OWN_NONE, ts);   /* guest state in the registers */
				for (int p = 0; p < npol; p++)
					policy_invalidate(e, p, c);
			}
			break;
		}
		C[c].last_kind = k;
		C[c].last_task = t;
	}
	return n;
}

void fpt_init_cpus(struct fpt_engine *e, int64_t first, int64_t last)
{
	for (int64_t c = first; c < last; c++) {
		struct fpt_cpu *C = &e->cpus[c];
		memset(C, 0, sizeof(*C));
		C->cur = -1;
		C->owner = FPT_OWN_UNKNOWN;
		C->last_task = -1;
		for (int p = 0; p < FPT_NPOL; p++)
			C->policy_owner[p] = FPT_OWN_UNKNOWN;
	}
}

/* End of the stream: replay every CPU's held-back action as if nothing followed it. */
void fpt_finish(struct fpt_engine *e)
{
	for (int64_t c = 0; c < e->ncpu; c++)
		flush_pending(e, c, 0);
}

/* ------------------------------------------------------------------ retirement */

static void add_counts(struct fpt_task_counts *sum, const struct fpt_task_counts *n)
{
	const int64_t *src = (const int64_t *)n;
	int64_t *dst = (int64_t *)sum;
	const size_t words = offsetof(struct fpt_task_counts, comm) / sizeof(int64_t);
	int64_t max_ns = sum->kfpu_max_ns > n->kfpu_max_ns ? sum->kfpu_max_ns : n->kfpu_max_ns;
	int64_t seen = sum->xfeatures_seen | n->xfeatures_seen;
	for (size_t w = 0; w < words; w++)    /* (identity fields sum to nonsense: unused) */
		dst[w] += src[w];
	sum->kfpu_max_ns = max_ns;
	sum->xfeatures_seen = seen;
}

static int referenced(const struct fpt_engine *e, int64_t t)
{
	for (int64_t c = 0; c < e->ncpu; c++) {
		const struct fpt_cpu *C = &e->cpus[c];
		if (C->cur == t || C->owner == t || C->last_task == t
		    || (C->pend_kind && (C->pend_a == t || C->pend_b == t)))
			return 1;
		for (int p = 0; p < e->npol; p++)
			if (C->policy_owner[p] == t)
				return 1;
	}
	return 0;
}

/* Exited tasks nothing refers to any more: add their counts to the totals, hand their rows (tasks
 * with any activity) to Python (rows may be NULL: totals only) and free their slots. Returns the
 * number of rows written; == cap means: call again with more room. */
int64_t fpt_retire(struct fpt_engine *e, struct fpt_task_counts *rows, int64_t cap)
{
	int64_t nrows = 0, keep = 0;
	const int64_t rp = e->rec_policy;
	int64_t q;
	for (q = 0; q < e->nretire; q++) {
		const int64_t t = e->retire_queue[q];
		if (referenced(e, t)) {
			e->retire_queue[keep++] = t;
			continue;
		}
		const struct fpt_task *T = &e->tasks[t];
		const struct fpt_task_counts *n = &T->n;
		int64_t xs = n->xsave_unseen, xr = 0;
		for (int j = 0; j < FPT_NCAUSE; j++) {
			xs += n->xsave[j];
			xr += n->xrstor[j];
		}
		const int active = (xs - n->xsave_unseen) + xr + n->kfpu_sections > 0;
		if (active && rows) {
			if (nrows == cap)
				break;
			rows[nrows++] = *n;
		}
		if (rp >= 0) {                     /* the self-check is task by task */
			int64_t pxs = 0, pxr = 0;
			for (int j = 0; j < FPT_NCLASS; j++) {
				pxs += n->policy[rp].xsave[j];
				pxr += n->policy[rp].xrstor[j];
			}
			e->retired_selfcheck_diff += (pxs > xs ? pxs - xs : xs - pxs)
						   + (pxr > xr ? pxr - xr : xr - pxr);
		}
		add_counts(&e->retired, n);
		e->retired_tasks += active;
		if (e->tids[n->tid].slot == t)
			e->tids[n->tid].slot = -1;
		e->tasks[t].n.uid = -1;          /* a free slot */
		e->free_slots[e->nfree++] = t;
	}
	for (; q < e->nretire; q++)
		e->retire_queue[keep++] = e->retire_queue[q];
	e->nretire = keep;
	return nrows;
}

/* A name from a recording's task table, before any event. -1: no room (grow tasks). */
int64_t fpt_preload(struct fpt_engine *e, int64_t tid, int64_t tgid, int64_t kthread,
		    const char *comm)
{
	if (tid < 0 || tid >= e->tid_cap || tasks_free(e) < 1)
		return -1;
	struct fpt_task *T = &e->tasks[get_task(e, tid)];
	if (kthread)
		T->n.kthread = 1;
	if (tgid >= 0)
		T->n.tgid = tgid;
	if (comm && comm[0])
		strncpy(T->n.comm, comm, sizeof(T->n.comm));   /* NUL-padded unless 16 bytes */
	return 0;
}
