"""bpf/fputrace.h against its Python mirrors: struct layout (compiled with the C compiler, so the
compiler's idea of the layout is what is checked), kind/cause/flag values, counter and slot ids."""
from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest

from fputrace import events
from fputrace.capture import abi
from fputrace.resources import bpf_dir

HEADER = bpf_dir() / "fputrace.h"


def _defines() -> dict[str, int]:
    out = {}
    for m in re.finditer(r"^#define\s+(FPT_\w+)\s+(\(1 << \d+\)|\d+)", HEADER.read_text(), re.M):
        text = m.group(2)
        out[m.group(1)] = eval(text.replace("(", "").replace(")", "")) if "<<" in text else int(text)
    return out


def test_kinds_match_events_py():
    d = _defines()
    for kind in events.Kind:
        assert d[f"FPT_{kind.name}"] == kind.value, kind
    # the capture-internal merged record is no event kind, and collides with none
    assert d["FPT_SWITCH_SAVE"] == abi.KIND_SWITCH_SAVE not in set(events.Kind)


def test_a_merged_switch_save_record_splits_into_its_switch_then_its_save_in_time_order():
    rec = np.zeros(4, events.EVENT_DTYPE)
    rec["ts_ns"] = [10, 20, 25, 30]
    rec["kind"] = [events.Kind.XRSTOR, abi.KIND_SWITCH_SAVE, events.Kind.XRSTOR, abi.KIND_SWITCH_SAVE]
    rec["tid"], rec["tgid"], rec["cpu"] = [1, 2, 3, 4], [1, 2, 3, 4], [0, 1, 1, 0]
    rec["a0"] = [0x7, 0x207, 0x3, 0x3]          # xfeatures
    rec["a1"] = [1, 0, 1, 0x2]                   # prev state in the merged ones
    rec["_pad"] = [0, 77, 0, 88]                 # next tid in the merged ones
    out = abi.split_switch_saves(rec)
    assert len(out) == 6 and list(out["kind"][:4]) == [events.Kind.XRSTOR, events.Kind.SWITCH,
                                                       events.Kind.XRSTOR, events.Kind.SWITCH]
    out = out[np.argsort(out["ts_ns"], kind="stable")]        # what the reorder does to every batch
    kinds = [int(k) for k in out["kind"]]
    S, X, R = events.Kind.SWITCH, events.Kind.XSAVE, events.Kind.XRSTOR
    assert kinds == [R, S, X, R, S, X]
    assert list(out["tid"]) == [1, 2, 2, 3, 4, 4] and list(out["ts_ns"]) == [10, 20, 20, 25, 30, 30]
    assert list(out["cpu"]) == [0, 1, 1, 1, 0, 0]
    assert (out["a0"][1], out["a1"][1]) == (77, 0) and (out["a0"][4], out["a1"][4]) == (88, 2)
    assert (out["a0"][2], out["a1"][2]) == (0x207, events.XsaveCause.SWITCH)
    assert (out["a0"][5], out["a1"][5]) == (0x3, events.XsaveCause.SWITCH)
    assert not out["_pad"].any()
    plain = rec[[0, 2]]
    assert abi.split_switch_saves(plain) is plain


def test_causes_flags_and_task_bits_match():
    d = _defines()
    for c in events.XsaveCause:
        assert d[f"FPT_XS_{c.name}"] == c.value, c
    for c in events.XrstorCause:
        assert d[f"FPT_XR_{c.name}"] == c.value, c
    assert d["FPT_FLAG_INFERRED"] == events.FLAG_INFERRED
    assert d["FPT_TASK_KTHREAD"] == events.TASK_KTHREAD


def test_counter_config_and_calibration_ids_match():
    d = _defines()
    for name in ("EVENTS", "LOST", "DEACT_NOT_SAVE", "CALLER_UNKNOWN", "INFERRED_KFPU", "RESTORE_UNPAIRED", "NO_RING", "SWITCH_UNSAVED", "MAX"):
        assert d[f"FPT_CTR_{name}"] == getattr(abi, f"CTR_{name}"), name
    assert d["FPT_CFG_TIF_MASK"] == abi.CFG_TIF_MASK and d["FPT_CFG_MAX"] == abi.CFG_MAX
    assert d["FPT_CFG_CALIBRATING"] == abi.CFG_CALIBRATING
    for name in ("AND_DEACT", "N_DEACT", "AND_ACT", "N_ACT", "OR_ENTER", "N_ENTER", "MAX", "SAMPLES"):
        assert d[f"FPT_CAL_{name}"] == getattr(abi, f"CAL_{name}"), name
    assert set(abi.COUNTER_NAMES) <= set(range(abi.CTR_MAX))


def test_struct_layout_matches_event_dtype(tmp_path):
    cc = shutil.which("gcc") or shutil.which("cc")
    if cc is None:
        pytest.skip("no C compiler (gcc) to compile bpf/fputrace.h; ./setup.sh installs gcc")
    fields = [n for n in events.EVENT_DTYPE.names]
    prog = tmp_path / "layout.c"
    prog.write_text(
        "#include <stdio.h>\n#include <stddef.h>\n#include <stdint.h>\n"
        "typedef uint64_t u64; typedef uint32_t u32; typedef uint16_t u16; typedef uint8_t u8;\n"
        f'#include "{HEADER}"\n'
        "int main(void) {\n"
        '  printf("size %zu\\n", sizeof(struct fpt_event));\n'
        + "".join(f'  printf("{f} %zu %zu\\n", offsetof(struct fpt_event, {f}), '
                  f"sizeof(((struct fpt_event *)0)->{f}));\n" for f in fields)
        + "  return 0;\n}\n")
    exe = tmp_path / "layout"
    subprocess.run([cc, "-o", str(exe), str(prog)], check=True, capture_output=True)
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout.split("\n")
    assert out[0] == f"size {events.EVENT_DTYPE.itemsize}" == "size 40"
    for line in out[1:]:
        if not line:
            continue
        name, off, size = line.split()
        dt, want_off = events.EVENT_DTYPE.fields[name][:2]
        assert (int(off), int(size)) == (want_off, dt.itemsize), name


def test_ring_record_framing():
    # 8-byte header + 40-byte event, rounded to 8: the bulk reader relies on fixed 48-byte records
    assert abi.RECORD_BYTES == 48
    assert abi.RECORD_DTYPE.fields["ev"][1] == abi.RINGBUF_HDR_BYTES
