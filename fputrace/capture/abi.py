"""Python mirror of the non-event parts of bpf/fputrace.h (counter ids, config and calibration
slots, ring buffer record framing). Events themselves are fputrace.events.EVENT_DTYPE;
tests/test_abi.py compiles the header and checks both against it."""
import numpy as np

from ..events import EVENT_DTYPE

CTR_EVENTS = 0
CTR_LOST = 1
CTR_DEACT_NOT_SAVE = 2
CTR_CALLER_UNKNOWN = 3
CTR_INFERRED_KFPU = 4
CTR_RESTORE_UNPAIRED = 5
CTR_NO_RING = 6
CTR_MAX = 8
COUNTER_NAMES = {CTR_EVENTS: "bpf_events", CTR_LOST: "bpf_lost", CTR_DEACT_NOT_SAVE: "deactivated_not_save",
                 CTR_CALLER_UNKNOWN: "caller_unknown", CTR_INFERRED_KFPU: "inferred_kfpu",
                 CTR_RESTORE_UNPAIRED: "restore_unpaired", CTR_NO_RING: "before_rings"}

CFG_TIF_BIT = 0
CFG_CALIBRATING = 1
CFG_MAX = 2
TIF_UNKNOWN = 64

CAL_AND_DEACT, CAL_N_DEACT, CAL_AND_ACT, CAL_N_ACT, CAL_OR_ENTER, CAL_N_ENTER = range(6)
CAL_MAX = 6
CAL_SAMPLES = 4096

# BPF ring buffer framing (include/uapi/linux/bpf.h): 8-byte header, records 8-byte aligned
RINGBUF_BUSY_BIT = 1 << 31
RINGBUF_DISCARD_BIT = 1 << 30
RINGBUF_HDR_BYTES = 8
RECORD_BYTES = (RINGBUF_HDR_BYTES + EVENT_DTYPE.itemsize + 7) & ~7
RECORD_DTYPE = np.dtype([("len", "<u4"), ("pg_off", "<u4"), ("ev", EVENT_DTYPE)])
assert RECORD_DTYPE.itemsize == RECORD_BYTES == 48
