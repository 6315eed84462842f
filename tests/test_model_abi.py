"""fputrace/model/engine.h against its one Python mirror, fputrace/model/structs.py: every struct's
size and every field's offset and size as the C compiler sees them, and the shared constants.
Also: the loaded engine refuses a library whose structs do not match (native.lib)."""
from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest

from fputrace.model import build_engine, native, structs
from fputrace.model.policies import POLICIES

HEADER = build_engine.HERE / "engine.h"


def fields(dtype: np.dtype, prefix: str = ""):
    """(C member designator, offset, size) for every field, nested structs and arrays included."""
    for name in dtype.names:
        sub, off = dtype.fields[name][:2]
        path = f"{prefix}{name}"
        yield path, off, sub.itemsize
        if sub.subdtype is not None:                      # an array member
            base, shape = sub.subdtype
            if base.names:
                for i in (0, shape[0] - 1):
                    for p, o, s in fields(base, f"{path}[{i}]."):
                        yield p, off + i * base.itemsize + o, s
        elif sub.names:
            for p, o, s in fields(sub, f"{path}."):
                yield p, off + o, s


def test_struct_layouts_match_structs_py(tmp_path):
    cc = build_engine.compiler()
    if cc is None:
        pytest.skip("no C compiler (gcc) to compile engine.h; ./setup.sh installs gcc")
    lines, expect = [], []
    for struct, dtype in structs.STRUCTS.items():
        lines.append(f'  printf("%zu\\n", sizeof(struct {struct}));')
        expect.append((struct, "sizeof", dtype.itemsize))
        for path, off, size in fields(dtype):
            lines.append(f'  printf("%zu %zu\\n", offsetof(struct {struct}, {path}), '
                         f"sizeof(((struct {struct} *)0)->{path}));")
            expect.append((struct, path, (off, size)))
    prog = tmp_path / "layout.c"
    prog.write_text("#include <stdio.h>\n#include <stddef.h>\n"
                    f'#include "{HEADER}"\nint main(void) {{\n' + "\n".join(lines)
                    + "\n  return 0;\n}\n")
    exe = tmp_path / "layout"
    res = subprocess.run([cc, "-o", str(exe), str(prog)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr               # a field structs.py names that C lacks
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout.split("\n")
    for (struct, path, want), got in zip(expect, out):
        got = tuple(int(x) for x in got.split())
        assert got == (want if path != "sizeof" else (want,)), f"struct {struct} {path}"


def _defines() -> dict[str, int]:
    text = HEADER.read_text()
    return {m.group(1): int(m.group(2).strip("()"))
            for m in re.finditer(r"^#define\s+(FPT_\w+)\s+(\(?-?\d+\)?)\s", text, re.M)}


def test_constants_match_structs_py():
    d = _defines()
    assert (d["FPT_NCAUSE"], d["FPT_NCLASS"], d["FPT_NPOL"], d["FPT_NHIST"]) == (
        structs.NCAUSE, structs.NCLASS, structs.NPOL, structs.NHIST)
    assert structs.NPOL >= len(POLICIES)                  # every policy can be replayed at once
    assert (d["FPT_OWN_NONE"], d["FPT_OWN_KERNEL"], d["FPT_OWN_UNKNOWN"]) == (
        structs.OWN_NONE, structs.OWN_KERNEL, structs.OWN_UNKNOWN)
    for i, name in enumerate(structs.CLASS_NAMES):
        assert d[f"FPT_CLASS_{name.upper()}"] == i
    for i, name in enumerate(structs.OWNER_KINDS):
        assert d[f"FPT_OWNER_{name}"] == i
    for i, name in enumerate(structs.STATE_NAMES):
        assert d[f"FPT_ST_{name.upper()}"] == i
    for name in ("NOTHING", "TASKS", "TIDS", "CPUS", "CALLERS", "OWNERS", "SECTIONS", "BAD_TID"):
        assert d[f"FPT_NEED_{name}"] == getattr(structs, f"NEED_{name}")


def test_loaded_engine_matches_its_sources():
    so = native.lib()
    assert so.fpt_engine_build_id().decode() == build_engine.build_id()
    assert so.fpt_sizeof(9) == 40                          # struct fpt_event, from bpf/fputrace.h


def test_a_library_with_other_structs_is_refused(tmp_path, monkeypatch):
    """A stale or foreign library must not be used with these dtypes: one clear error."""
    if build_engine.compiler() is None or shutil.which("sed") is None:
        pytest.skip("no C compiler (gcc) to build a mismatched engine")
    src = tmp_path / "model"
    src.mkdir()
    for name in build_engine.SOURCES:
        text = (build_engine.HERE / name).read_text()
        if name == "engine.h":                             # one field more in struct fpt_cpu
            text = text.replace("\tint64_t kvm;\n", "\tint64_t kvm;\n\tint64_t extra;\n")
        (src / name).write_text(text)
    (tmp_path / "bpf").mkdir()
    shutil.copy(build_engine.contract_header(), tmp_path / "bpf" / "fputrace.h")
    monkeypatch.setattr(build_engine, "HERE", src)
    monkeypatch.setattr(native, "_cache_dirs", lambda: [tmp_path / "cache"])
    native.lib.cache_clear()
    try:
        with pytest.raises(native.EngineBuildError, match="struct fpt_cpu is"):
            native.lib()
    finally:
        native.lib.cache_clear()


def test_optimised_build_equals_an_unoptimised_one(tmp_path, monkeypatch):
    """The install build (-O2) and an -O0 build of the same sources give identical reports and
    estimates on generated traces (guards against code whose meaning depends on the optimiser:
    undefined behaviour, aliasing)."""
    import sys
    from pathlib import Path
    if build_engine.compiler() is None:
        pytest.skip("no C compiler (gcc) to build an -O0 engine")
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    from bench_model_tracegen import generate

    from fputrace.events import Kind
    from fputrace.model import Model
    from tests.test_cost_model import AVX512_META
    traces = []
    for c, t, s, p, m, lost in ((2, 8, 1, "deferred", "probe", 0),
                                (4, 16, 2, "deferred", "tracepoint", 20_000),
                                (3, 6, 3, "eager", "probe", 0)):
        meta, ev = generate(4000, cpus=c, tasks=t, seed=s, policy=p, mode=m, lost_ppm=lost)
        fpu = np.flatnonzero(np.isin(ev["kind"], [Kind.XSAVE, Kind.XRSTOR]))
        ev["a0"][fpu] = np.random.default_rng(s).choice([0, 0x3, 0x7, 0xe7, 0x60007], len(fpu))
        traces.append((dict(meta, **AVX512_META), ev))     # sizes and classes vary per event

    def results():
        out = []
        for meta, ev in traces:
            m = Model(meta)
            m.feed(ev)
            out.append((m.report().to_dict(), m.estimate().to_dict()))
        return out

    optimised = results()
    flags = tuple(f for f in build_engine.CFLAGS if not f.startswith("-O")) + ("-O0",)
    lib = build_engine.build(tmp_path, flags, name="engine-O0.so")
    monkeypatch.setattr(native, "library_path", lambda: lib)
    native.lib.cache_clear()
    try:
        assert results() == optimised
    finally:
        native.lib.cache_clear()


def _sources_in(tmp_path):
    src = tmp_path / "model"
    src.mkdir()
    for name in build_engine.SOURCES:
        shutil.copy(build_engine.HERE / name, src / name)
    (tmp_path / "bpf").mkdir()
    shutil.copy(build_engine.contract_header(), tmp_path / "bpf" / "fputrace.h")
    return src


def test_a_missing_engine_is_built_once_or_refused_in_one_line(tmp_path, monkeypatch):
    """An install always has the library (hatch_build.py); an edited checkout gets it built on
    first use into the package or a per-user cache; without a compiler: one clear error."""
    src = _sources_in(tmp_path)
    monkeypatch.setattr(build_engine, "HERE", src)
    monkeypatch.setattr(native, "_cache_dirs", lambda: [tmp_path / "cache"])
    monkeypatch.setattr(build_engine, "compiler", lambda: None)
    with pytest.raises(native.EngineBuildError, match="no C compiler.*reinstall fputrace"):
        native.library_path()
    monkeypatch.undo()
    if build_engine.compiler() is None:
        pytest.skip("no C compiler (gcc) to build the engine")
    monkeypatch.setattr(build_engine, "HERE", src)
    monkeypatch.setattr(native, "_cache_dirs", lambda: [tmp_path / "cache"])
    path = native.library_path()
    assert path.parent == src and path.name == build_engine.library_name()
    assert native.library_path() == path                  # found, not built again
