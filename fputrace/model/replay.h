/* replay.h: the trace replayed under every policy at once (SPEC 5.3), included by engine.c.
 *
 * A policy is two decisions (fputrace/model/policies.py): restore eagerly (at switch-in and
 * kernel_fpu_end) or on the return to user mode, and whether the validity shortcut
 * (fpu_fpregs_owner_ctx == fpu && fpu->last_cpu == cpu) skips a restore. Saves follow from that:
 * a task's registers are saved when they are live and about to be lost.
 *
 * The replay is driven by logical actions (switch, kernel FPU begin/end, return to user), which
 * engine.c holds back per CPU until the next event shows what the kernel did (flush_pending).
 */

/* ------------------------------------------------------------------ one policy */

static inline void policy_count_xsave(struct fpt_policy_counts *P, int64_t nbytes, int64_t cls)
{
	P->xsave[cls] += 1;
	P->xsave_bytes[cls] += nbytes;
}

static inline void policy_avoidable(struct fpt_policy_counts *P, struct fpt_policy_state *S)
{
	P->avoidable += 1;
	P->avoidable_bytes += S->pending_bytes;
	S->pending_bytes = 0;
}

static inline int policy_valid(const struct fpt_engine *e, int p, int64_t c, int64_t t)
{
	return e->cpus[c].policy_owner[p] == t && e->tasks[t].ps[p].last_cpu == c;
}

static inline void policy_save(struct fpt_engine *e, int p, int64_t t, int64_t c)
{
	struct fpt_task *T = &e->tasks[t];
	struct fpt_policy_state *S = &T->ps[p];
	policy_count_xsave(&T->n.policy[p], T->xbytes, T->xclass);
	if (S->pending_bytes)                /* restored, then saved again before any user instruction */
		policy_avoidable(&T->n.policy[p], S);
	S->need_load = 1;
	S->last_cpu = c;
	e->cpus[c].policy_owner[p] = t;      /* saving from the registers proves they held its state */
}

static inline void policy_restore(struct fpt_engine *e, int p, int64_t t, int64_t c, int pending)
{
	struct fpt_task *T = &e->tasks[t];
	struct fpt_policy_state *S = &T->ps[p];
	struct fpt_policy_counts *P = &T->n.policy[p];
	P->xrstor[T->xclass] += 1;
	P->xrstor_bytes[T->xclass] += T->xbytes;
	S->pending_bytes = pending ? T->xbytes : 0;
	S->need_load = 0;
	S->last_cpu = c;
	e->cpus[c].policy_owner[p] = t;
}

static inline void policy_invalidate(struct fpt_engine *e, int p, int64_t c)
{
	const int64_t o = e->cpus[c].policy_owner[p];
	if (o >= 0) {
		struct fpt_task *O = &e->tasks[o];
		if (O->ps[p].pending_bytes && O->ps[p].last_cpu == c)
			policy_avoidable(&O->n.policy[p], &O->ps[p]);
	}
	e->cpus[c].policy_owner[p] = FPT_OWN_NONE;
}

static inline void policy_switch(struct fpt_engine *e, int p, int64_t c, int64_t prev, int64_t nxt)
{
	if (is_user(e, prev) && e->tasks[prev].ps[p].need_load == 0)
		policy_save(e, p, prev, c);             /* regs stay valid: owner unchanged */
	if (is_user(e, nxt)) {
		if (e->policy_eager[p]) {
			if (!(e->policy_validity[p] && policy_valid(e, p, c, nxt)))
				policy_restore(e, p, nxt, c, 1);
			else
				e->tasks[nxt].ps[p].need_load = 0;
		} else {
			e->tasks[nxt].ps[p].need_load = 1;
		}
	}
}

static inline void policy_kfpu_begin(struct fpt_engine *e, int p, int64_t c, int64_t t)
{
	if (is_user(e, t) && e->tasks[t].ps[p].need_load == 0)
		policy_save(e, p, t, c);
	policy_invalidate(e, p, c);
}

static inline void policy_kfpu_end(struct fpt_engine *e, int p, int64_t c, int64_t t)
{
	if (e->policy_eager[p] && is_user(e, t) && e->tasks[t].ps[p].need_load)
		policy_restore(e, p, t, c, 1);
}

static inline void policy_user_return(struct fpt_engine *e, int p, int64_t c, int64_t t)
{
	struct fpt_policy_state *S = &e->tasks[t].ps[p];
	S->pending_bytes = 0;                   /* the task executes user instructions now */
	if (S->need_load) {
		if (e->policy_validity[p] && policy_valid(e, p, c, t))
			S->need_load = 0;
		else
			policy_restore(e, p, t, c, 0);
	}
}

/* ------------------------------------------------------------------ evidence -> all policies */

/* Task t executes user-mode instructions on c now (observed or derived). */
static inline void apply_user_return(struct fpt_engine *e, int64_t c, int64_t t)
{
	if (!is_user(e, t))
		return;
	for (int p = 0; p < e->npol; p++)
		policy_user_return(e, p, c, t);
	struct fpt_task *T = &e->tasks[t];
	T->pending_cause = 0;
	T->pending_bytes = 0;
	T->n.state = FPT_ST_USER;
}

/* The kernel restored t on its way to user mode although the replay of the recorded policy holds
 * its registers valid: something we did not see (a kernel thread's or an interrupt's SIMD use)
 * clobbered them. Every policy is told the registers are gone. */
static void unexplained_restore(struct fpt_engine *e, int64_t c, int64_t t)
{
	const int64_t rp = e->rec_policy;
	if (rp < 0 || !is_user(e, t))
		return;
	struct fpt_task *T = &e->tasks[t];
	if (T->ps[rp].need_load && !policy_valid(e, (int)rp, c, t))
		return;                          /* explained: the replay restores here too */
	e->unexplained += 1;
	for (int p = 0; p < e->npol; p++) {
		if (e->policy_eager[p]) {
			if (policy_valid(e, p, c, t) && T->ps[p].need_load == 0)
				policy_restore(e, p, t, c, 0);   /* eager repairs at once */
		} else {
			policy_invalidate(e, p, c);
			T->ps[p].need_load = 1;
		}
	}
}

/* A deferred kernel switched t out without saving although its registers were live: its
 * TIF_NEED_FPU_LOAD was set by a save nobody showed us (kernel FPU use in a syscall that blocked
 * before its end, where tracepoint-mode inference cannot see it). Count that save as inferred. */
static void unseen_kfpu_save(struct fpt_engine *e, int64_t c, int64_t t)
{
	for (int p = 0; p < e->npol; p++) {
		policy_kfpu_begin(e, p, c, t);
		policy_kfpu_end(e, p, c, t);
	}
	struct fpt_task *T = &e->tasks[t];
	T->n.xsave_unseen += 1;             /* kept apart: measured XSAVE counts stay what was seen */
	if (!e->kfpu_exact) {               /* with probes on kernel_fpu_begin every section is seen: */
		T->n.kfpu_sections += 1;    /* the unseen save came from elsewhere (e.g. before the */
		T->n.kfpu_inferred += 1;    /* trace), so no section is invented */
	}
	e->unseen_saves += 1;
}

/* Replay the held-back action of CPU c now that we know whether the kernel saved/restored. */
static void flush_pending(struct fpt_engine *e, int64_t c, int restored)
{
	struct fpt_cpu *C = &e->cpus[c];
	const int64_t pk = C->pend_kind;
	if (!pk)
		return;
	const int64_t a = C->pend_a;
	const int64_t saved = C->pend_saved;
	const int npol = (int)e->npol;
	const int deferred_evidence = e->rec_deferred != 0;
	if (pk == FPT_SWITCH) {
		const int64_t b = C->pend_b;
		if (is_user(e, a)) {
			struct fpt_task *A = &e->tasks[a];
			if (C->pend_new && deferred_evidence)
				/* first sight of a task at the start of the trace: its flag from the kernel's act */
				for (int p = 0; p < npol; p++)
					A->ps[p].need_load = saved ? 0 : 1;
			if (A->dead) {
				/* an exiting task's last switch: not a policy decision, do what the kernel did */
				for (int p = 0; p < npol; p++)
					A->ps[p].need_load = saved ? 0 : 1;
			} else if ((deferred_evidence && saved) || e->ur_assumed) {
				apply_user_return(e, c, a);
			} else if (deferred_evidence && !saved && e->rec_policy >= 0
				   && A->ps[e->rec_policy].need_load == 0 && !C->pend_new) {
				unseen_kfpu_save(e, c, a);
			}
		}
		for (int p = 0; p < npol; p++)
			policy_switch(e, p, c, a, b);
		/* exited and switched out for good (not just preempted on its way out): gone */
		if (a >= 0 && e->tasks[a].dead == 1
		    && (!e->exit_states || (C->pend_arg & FPT_EXITED_STATES))) {
			e->tasks[a].dead = 2;       /* its tid may be reused now */
			task_gone(e, a);
		}
	} else if (pk == FPT_KFPU_BEGIN) {
		if (is_user(e, a) && ((deferred_evidence && saved) || C->pend_inferred || e->ur_assumed))
			apply_user_return(e, c, a);    /* its regs were live: it came from user mode */
		for (int p = 0; p < npol; p++)
			policy_kfpu_begin(e, p, c, a);
	} else if (pk == FPT_KFPU_END) {
		for (int p = 0; p < npol; p++)
			policy_kfpu_end(e, p, c, a);
	} else if (pk == FPT_USER_RETURN) {
		if (restored && deferred_evidence)
			unexplained_restore(e, c, a);
		apply_user_return(e, c, a);
	}
	C->pend_kind = 0;
	C->pend_saved = 0;
	C->pend_new = 0;
}

/* Task t shows up on CPU c: an action still held back for it on another CPU must be replayed
 * first (its own save/restore would have come before the task could run here). */
static inline void flush_elsewhere(struct fpt_engine *e, int64_t c, int64_t t)
{
	const int64_t o = e->tasks[t].pend_cpu - 1;
	if (o < 0 || o == c)
		return;
	const struct fpt_cpu *O = &e->cpus[o];
	if (O->pend_kind && (O->pend_a == t || O->pend_b == t))
		flush_pending(e, o, 0);
	e->tasks[t].pend_cpu = 0;
}

static inline void hold(struct fpt_engine *e, int64_t c, int64_t kind, int64_t a, int64_t b,
			int64_t arg, int64_t inferred, int64_t is_new)
{
	e->tasks[a].pend_cpu = c + 1;
	if (b >= 0)
		e->tasks[b].pend_cpu = c + 1;
	struct fpt_cpu *C = &e->cpus[c];
	C->pend_kind = kind;
	C->pend_a = a;
	C->pend_b = b;
	C->pend_saved = 0;
	C->pend_inferred = inferred;
	C->pend_new = is_new;
	C->pend_arg = arg;
}
