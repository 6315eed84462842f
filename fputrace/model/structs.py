"""The model's state as numpy structured dtypes: the one Python mirror of ``engine.h``.

Field names and order are exactly the C structs' (tests/test_model_abi.py compiles engine.h and
checks every size and offset). Python allocates and grows every array; C updates them in place.
Only ``model.py`` and ``tables.py`` (the model's accessors) read these arrays.
"""
from __future__ import annotations

import numpy as np

from ..events import XrstorCause, XsaveCause

NCAUSE = 8                    # room for XsaveCause / XrstorCause values 0..7
NCLASS = 4
NPOL = 3                      # policies replayed at once (policies.POLICIES has 3)
NHIST = 48                    # bucket b: 2^(b-1) <= ns < 2^b (b = 0: 0 ns)

from .cost import CLASS_NAMES, XSTATE_CLASSES  # noqa: E402,F401  (classes: one definition)
STATE_NAMES = ("unknown", "user", "kernel", "sleeping", "exited")
XSAVE_CAUSE_NAMES = {c.value: c.name.lower() for c in XsaveCause}
XRSTOR_CAUSE_NAMES = {c.value: c.name.lower() for c in XrstorCause}

OWN_NONE, OWN_KERNEL, OWN_UNKNOWN = -1, -2, -3                  # struct fpt_cpu.owner (< 0)
OWNER_KINDS = ("TASK", "NONE", "KERNEL", "UNKNOWN")              # FPT_OWNER_* in owner changes

(NEED_NOTHING, NEED_TASKS, NEED_TIDS, NEED_CPUS, NEED_CALLERS, NEED_OWNERS, NEED_SECTIONS,
 NEED_BAD_TID) = range(8)

I8 = "<i8"

POLICY_COUNTS = np.dtype([
    ("xsave", I8, (NCLASS,)), ("xrstor", I8, (NCLASS,)),
    ("xsave_bytes", I8, (NCLASS,)), ("xrstor_bytes", I8, (NCLASS,)),
    ("avoidable", I8), ("avoidable_bytes", I8),
])

TASK_COUNTS = np.dtype([
    ("uid", I8), ("tid", I8), ("tgid", I8), ("generation", I8), ("kthread", I8), ("gap", I8),
    ("state", I8), ("last_cpu", I8), ("xfeatures_seen", I8),
    ("xsave", I8, (NCAUSE,)), ("xrstor", I8, (NCAUSE,)), ("avoidable", I8, (NCAUSE,)),
    ("avoidable_bytes", I8),
    ("xsave_class", I8, (NCLASS,)), ("xrstor_class", I8, (NCLASS,)),
    ("xsave_class_bytes", I8, (NCLASS,)), ("xrstor_class_bytes", I8, (NCLASS,)),
    ("kfpu_sections", I8), ("kfpu_inferred", I8), ("kfpu_ns", I8), ("kfpu_max_ns", I8),
    ("xsave_unseen", I8),
    ("policy", POLICY_COUNTS, (NPOL,)),
    ("comm", "S16"),
])

POLICY_STATE = np.dtype([("need_load", I8), ("pending_bytes", I8), ("last_cpu", I8)])

TASK = np.dtype([
    ("xfeat", I8), ("xbytes", I8), ("xclass", I8), ("dead", I8), ("gone", I8), ("owner_cpu", I8),
    ("pending_cause", I8), ("pending_bytes", I8), ("pend_cpu", I8), ("first_ts", I8),
    ("last_ts", I8), ("ps", POLICY_STATE, (NPOL,)), ("n", TASK_COUNTS),
])

TID = np.dtype([("slot", I8), ("next_generation", I8)])

CPU = np.dtype([
    ("cur", I8), ("owner", I8), ("unknown", I8), ("kfpu_open", I8), ("kfpu_ts", I8),
    ("kfpu_caller", I8), ("kfpu_inferred", I8), ("pend_kind", I8), ("pend_a", I8),
    ("pend_b", I8), ("pend_saved", I8), ("pend_inferred", I8), ("pend_new", I8),
    ("pend_arg", I8), ("last_kind", I8), ("last_task", I8), ("xsave", I8), ("xrstor", I8), ("kfpu_sections", I8),
    ("lost", I8), ("kvm", I8), ("policy_owner", I8, (NPOL,)),
])

CALLER = np.dtype([("address", I8), ("sections", I8), ("inferred", I8), ("total_ns", I8),
                   ("max_ns", I8), ("hist", I8, (NHIST,))])

OWNER_CHANGE = np.dtype([("ts_ns", I8), ("cpu", I8), ("owner", I8), ("tid", I8),
                         ("task_id", I8)])

SECTION = np.dtype([("cpu", I8), ("tid", I8), ("tgid", I8), ("task_id", I8), ("begin_ns", I8),
                    ("end_ns", I8), ("caller", I8), ("inferred", I8)])

PTR = "<u8"                   # a pointer, set from ndarray.ctypes.data

OUT = np.dtype([
    ("task_id", PTR), ("other_task_id", PTR), ("cause", PTR), ("xclass", PTR), ("nbytes", PTR),
    ("owners", PTR), ("owners_cap", I8), ("owners_len", I8),
    ("sections", PTR), ("sections_cap", I8), ("sections_len", I8),
])

ENGINE = np.dtype([
    ("tasks", PTR), ("task_cap", I8), ("task_hwm", I8), ("free_slots", PTR), ("nfree", I8),
    ("retire_queue", PTR), ("nretire", I8), ("tids", PTR), ("tid_cap", I8),
    ("cpus", PTR), ("cpu_cap", I8), ("ncpu", I8),
    ("callers", PTR), ("caller_cap", I8), ("ncallers", I8),
    ("caller_hash", PTR), ("caller_hash_cap", I8),
    ("need", I8), ("need_arg", I8),
    ("npol", I8), ("policy_eager", I8, (NPOL,)), ("policy_validity", I8, (NPOL,)),
    ("rec_policy", I8), ("rec_deferred", I8), ("has_ur_events", I8), ("ur_assumed", I8),
    ("kfpu_exact", I8), ("exit_states", I8), ("full_mask", I8), ("class_mask", I8, (NCLASS,)), ("xsize", I8, (64,)),
    ("next_uid", I8), ("nevents", I8), ("first_ts", I8), ("last_ts", I8), ("lost", I8),
    ("inferred", I8), ("gap", I8), ("unexplained", I8), ("kfpu_untimed", I8),
    ("unseen_saves", I8), ("hist", I8, (NHIST,)),
    ("retired", TASK_COUNTS), ("retired_tasks", I8), ("retired_selfcheck_diff", I8),
])

# struct name in engine.h -> dtype (the ABI test walks these; fpt_sizeof(i) is the i-th)
STRUCTS = {
    "fpt_engine": ENGINE, "fpt_task": TASK, "fpt_task_counts": TASK_COUNTS, "fpt_cpu": CPU,
    "fpt_caller": CALLER, "fpt_tid": TID, "fpt_out": OUT, "fpt_owner_change": OWNER_CHANGE,
    "fpt_section": SECTION,
}


# numpy copies nested structured records field by field (~100x slower than memcpy); rows of these
# dtypes are moved as opaque bytes instead, and read through field views.

def _opaque(a: np.ndarray) -> np.ndarray:
    return a.view(np.dtype((np.void, a.dtype.itemsize)))


def take(a: np.ndarray, idx) -> np.ndarray:
    """a[idx] for arrays of the dtypes above, at memcpy speed (a copy for a mask or positions,
    a view for a slice, as numpy's own indexing)."""
    return _opaque(a)[idx].view(a.dtype)


def put(out: np.ndarray, idx, rows: np.ndarray) -> None:
    """out[idx] = rows, at memcpy speed."""
    _opaque(out)[idx] = _opaque(rows)


def concat(parts: list[np.ndarray]) -> np.ndarray:
    return np.concatenate([_opaque(p) for p in parts]).view(parts[0].dtype)


def grown(a: np.ndarray, rows: int, fill: np.ndarray | None = None) -> np.ndarray:
    """A copy of a with room for ``rows`` records (new ones zero, or ``fill``)."""
    out = np.zeros(rows, a.dtype)
    if fill is not None:
        _opaque(out)[a.shape[0]:] = _opaque(fill)[0]
    _opaque(out)[:a.shape[0]] = _opaque(a)
    return out
