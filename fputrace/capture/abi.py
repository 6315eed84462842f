"""Python mirror of the non-event parts of bpf/fputrace.h (counter ids, config and calibration
slots, ring buffer record framing). Events themselves are fputrace.events.EVENT_DTYPE;
tests/test_abi.py compiles the header and checks both against it."""
import numpy as np

from ..events import EVENT_DTYPE, Kind, XsaveCause

# FPT_SWITCH_SAVE: a SWITCH and its switch-out XSAVE in one ring record (capture-internal; one
# reserve per context switch less): ts, tid, tgid, cpu of both; a0 = xfeatures, a1 = prev state,
# _pad = next tid. split_switch_saves() turns it back into the two events before anything else
# sees them.
KIND_SWITCH_SAVE = 14

CTR_EVENTS = 0
CTR_LOST = 1
CTR_DEACT_NOT_SAVE = 2
CTR_CALLER_UNKNOWN = 3
CTR_INFERRED_KFPU = 4
CTR_RESTORE_UNPAIRED = 5
CTR_NO_RING = 6
CTR_SWITCH_UNSAVED = 7
CTR_MAX = 8
COUNTER_NAMES = {CTR_EVENTS: "bpf_events", CTR_LOST: "bpf_lost", CTR_DEACT_NOT_SAVE: "deactivated_not_save",
                 CTR_CALLER_UNKNOWN: "caller_unknown", CTR_INFERRED_KFPU: "inferred_kfpu",
                 CTR_RESTORE_UNPAIRED: "restore_unpaired", CTR_NO_RING: "before_rings",
                 CTR_SWITCH_UNSAVED: "switch_unsaved"}

CFG_TIF_MASK = 0      # 1 << TIF_NEED_FPU_LOAD; 0 = unknown
CFG_CALIBRATING = 1
CFG_MAX = 2

CAL_AND_DEACT, CAL_N_DEACT, CAL_AND_ACT, CAL_N_ACT, CAL_OR_ENTER, CAL_N_ENTER = range(6)
CAL_MAX = 6
CAL_SAMPLES = 4096

# BPF ring buffer framing (include/uapi/linux/bpf.h): 8-byte header, records 8-byte aligned
RINGBUF_BUSY_BIT = 1 << 31
RINGBUF_DISCARD_BIT = 1 << 30
RINGBUF_HDR_BYTES = 8
RECORD_BYTES = (RINGBUF_HDR_BYTES + EVENT_DTYPE.itemsize + 7) & ~7
_WORDS = EVENT_DTYPE.itemsize // 8
RECORD_DTYPE = np.dtype([("len", "<u4"), ("pg_off", "<u4"), ("ev", EVENT_DTYPE)])
assert RECORD_DTYPE.itemsize == RECORD_BYTES == 48


def split_switch_saves(batch: np.ndarray) -> np.ndarray:
    """``batch`` with every KIND_SWITCH_SAVE record turned back into its SWITCH (in its place) and
    its XSAVE, cause SWITCH (appended at the end, same timestamp): the two events the programs
    emitted separately before. The time order is restored by the stable sort every batch gets
    before release (reorder.py), which puts each save right after its switch. Works on the records
    as 5 x u64 words (word 1 = a0, word 2 = a1, word 4 = cpu | kind << 16 | flags << 24 |
    _pad << 32): numpy moves those far faster than structured rows."""
    merged = np.flatnonzero(batch["kind"] == KIND_SWITCH_SAVE)
    if not len(merged):
        return batch
    out = np.empty((len(batch) + len(merged), _WORDS), np.uint64)
    n = len(batch)
    out[:n] = np.ascontiguousarray(batch).view(np.uint64).reshape(-1, _WORDS)
    saves = out[n:]
    saves[:] = out[merged]
    w4 = saves[:, 4]
    low = w4 & np.uint64(0xFF00FFFF)                     # cpu and flags; kind and _pad cleared
    out[merged, 1] = w4 >> np.uint64(32)                  # the switch: a0 = next tid
    out[merged, 4] = low | np.uint64(int(Kind.SWITCH) << 16)
    saves[:, 2] = int(XsaveCause.SWITCH)                  # the save: a0 = xfeatures already
    saves[:, 4] = low | np.uint64(int(Kind.XSAVE) << 16)
    return out.view(EVENT_DTYPE).reshape(-1)
