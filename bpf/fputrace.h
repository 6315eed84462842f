/* fputrace.h: the only contract between the BPF side and user space.
 *
 * Mirrored in Python by fputrace/events.py (EVENT_DTYPE, Kind, causes, flags) and
 * fputrace/capture/abi.py (counter ids, config slots, calibration slots); tests/test_abi.py checks
 * that sizes, offsets and values match.
 */
#ifndef FPUTRACE_H
#define FPUTRACE_H

/* struct fpt_event: 40 bytes, one fact (see the kinds table in fputrace/events.py). */
struct fpt_event {
	u64 ts_ns;      /* CLOCK_MONOTONIC (bpf_ktime_get_ns) */
	u64 a0;
	u64 a1;
	u32 tid;
	u32 tgid;
	u16 cpu;
	u8 kind;
	u8 flags;
	u32 _pad;
};

/* kinds (fputrace.events.Kind) */
#define FPT_SWITCH       1
#define FPT_KFPU_BEGIN   2
#define FPT_KFPU_END     3
#define FPT_XSAVE        4
#define FPT_XRSTOR       5
#define FPT_USER_RETURN  6
#define FPT_FORK         7
#define FPT_EXEC         8
#define FPT_EXIT         9
#define FPT_KVM_FPU     10
#define FPT_LOST        11   /* made by user space from FPT_CTR_LOST */
#define FPT_COMM        12
#define FPT_TASK        13
/* capture-internal, never in a recording: a SWITCH and its switch-out XSAVE in one record
 * (ts, tid, tgid of both; a0 = xfeatures, a1 = prev state, _pad = next tid); user space splits
 * it back into the two events (fputrace/capture/abi.py split_switch_saves) */
#define FPT_SWITCH_SAVE 14

/* XSAVE causes (fputrace.events.XsaveCause) */
#define FPT_XS_UNKNOWN   0
#define FPT_XS_SWITCH    1
#define FPT_XS_KFPU      2
#define FPT_XS_SYNC      3
#define FPT_XS_FORK      4
#define FPT_XS_SIGNAL    5
#define FPT_XS_KVM       6

/* XRSTOR causes (fputrace.events.XrstorCause) */
#define FPT_XR_UNKNOWN     0
#define FPT_XR_USER_RETURN 1
#define FPT_XR_SWITCH_IN   2
#define FPT_XR_KFPU_END    3
#define FPT_XR_SIGNAL      4
#define FPT_XR_KVM         5
#define FPT_XR_INIT        6

/* flags */
#define FPT_FLAG_INFERRED  (1 << 0)

/* TASK record bits */
#define FPT_TASK_KTHREAD   (1 << 0)

/* per-CPU counters (BPF_PERCPU_ARRAY counters[FPT_CTR_MAX]) */
#define FPT_CTR_EVENTS          0  /* events the BPF side tried to emit (delivered + lost) */
#define FPT_CTR_LOST            1  /* reserve/output failed: buffer full */
#define FPT_CTR_DEACT_NOT_SAVE  2  /* regs_deactivated outside a switch (fpu__drop at exec/exit) */
#define FPT_CTR_CALLER_UNKNOWN  3  /* fentry: caller of kernel_fpu_* not found in the stack */
#define FPT_CTR_INFERRED_KFPU   4  /* syscalls with an inferred kernel FPU save */
#define FPT_CTR_RESTORE_UNPAIRED 5 /* restore probe not followed by regs_activated */
#define FPT_CTR_NO_RING         6  /* per-CPU rings: events before user space installed them */
#define FPT_CTR_SWITCH_UNSAVED  7  /* a switch-out save was predicted and did not come (emitted late) */
#define FPT_CTR_MAX             8

/* config array slots (written by user space after the TIF calibration) */
#define FPT_CFG_TIF_MASK  0   /* 1 << TIF_NEED_FPU_LOAD; 0 = unknown (inference off), as before user space sets it */
#define FPT_CFG_CALIBRATING 1 /* 1 while user space calibrates the TIF bit: sample task flags */
#define FPT_CFG_MAX       2

/* calibration slots (BPF_PERCPU_ARRAY calib[FPT_CAL_MAX]); flags = task->thread_info.flags */
#define FPT_CAL_AND_DEACT   0   /* AND of flags at switch saves (regs_deactivated) */
#define FPT_CAL_N_DEACT     1
#define FPT_CAL_AND_ACT     2   /* AND of flags at regs_activated */
#define FPT_CAL_N_ACT       3
#define FPT_CAL_OR_ENTER    4   /* OR of flags at sys_enter (user FPU regs live: bit clear) */
#define FPT_CAL_N_ENTER     5
#define FPT_CAL_MAX         6
#define FPT_CAL_SAMPLES     4096  /* per CPU and slot; then calibration stops costing */

#endif
