"""Fixed expectations: the reports and estimates the numba engine (replaced by the C engine in
e392034) gave on the bundled demo, two lab recordings and four generated traces (tests/data/
expected/*.json, written by that engine while both existed and ran side by side on every
scenario, property and recording). The C engine must reproduce every number in them. demo.json
was rewritten by the C engine when the demo was re-recorded from the lab's kernel workloads (the
old recording's numbers are in its history), with the same keys.

Compared: every key the files hold (keys added since are not: the files predate them), the kernel
FPU callers as their total timed length (the table is keyed by the begin's caller since issue
8.5), the estimate without its notes and cost-model detail (text of the cost model).

After an intended change of the numbers: FPUTRACE_UPDATE_EXPECTATIONS=1 pytest this file, and
review the diff of tests/data/expected/ (it is the change).
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

import fputrace
from fputrace.model import BUILTIN_DEFAULT, Model

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from bench_model_tracegen import generate  # noqa: E402

DATA = Path(__file__).parent / "data"
EXPECTED = DATA / "expected"
DEMO = Path(fputrace.__file__).parent / "data" / "demo.fpt"
UPDATE = bool(os.environ.get("FPUTRACE_UPDATE_EXPECTATIONS"))


def outputs(meta: dict, batches) -> dict:
    m = Model(meta, ("eager", "deferred", "deferred-novalid"), BUILTIN_DEFAULT, history=False)
    for b in batches:
        m.feed(b)
    rep, est = m.report().to_dict(), m.estimate().to_dict()
    rep["kfpu_callers"] = {"timed_ns": sum(r["total_ns"] for r in rep["kfpu_callers"])}
    for k in ("notes", "cost_model_detail"):
        est.pop(k)
    return {"report": rep, "estimate": est}


def restrict(got, want, path: str = ""):
    """``got`` cut down to the keys ``want`` has (recursively; rows row by row)."""
    if isinstance(want, dict) and isinstance(got, dict):
        missing = [k for k in want if k not in got]
        assert not missing, f"{path}: keys {missing} are gone"
        return {k: restrict(got[k], want[k], f"{path}.{k}") for k in want}
    if isinstance(want, list) and isinstance(got, list) and want and isinstance(want[0], dict):
        assert len(got) == len(want), f"{path}: {len(got)} rows, expected {len(want)}"
        return [restrict(g, w, f"{path}[{i}]") for i, (g, w) in enumerate(zip(got, want))]
    return got


def dump(obj) -> str:
    """JSON with one line per table row (diffable, compact)."""
    def enc(o, ind):
        pad = " " * ind
        if isinstance(o, dict):
            if not o:
                return "{}"
            items = [f"{pad} {json.dumps(k)}: {enc(v, ind + 1)}" for k, v in sorted(o.items())]
            return "{\n" + ",\n".join(items) + "\n" + pad + "}"
        if isinstance(o, list) and o and all(isinstance(x, dict) for x in o):
            return "[\n" + ",\n".join(f"{pad} " + json.dumps(x, sort_keys=True) for x in o) + \
                "\n" + pad + "]"
        return json.dumps(o, sort_keys=True)
    return enc(obj, 0) + "\n"


def inputs(name: str, spec: dict):
    if "generator" in spec:
        kw = dict(spec["generator"])
        meta, ev = generate(kw.pop("events"), **kw)
        return meta, [ev]
    path = DEMO if name == "demo" else DATA / f"{name}.fpt"
    tr = fputrace.load(path)
    return tr.meta, tr.batches()


CASES = sorted(p.stem for p in EXPECTED.glob("*.json"))


def test_the_expectations_are_here():
    assert {"demo", "lab-6.12-kprobe", "lab-6.12-tracepoint"} <= set(CASES) and len(CASES) >= 7


@pytest.mark.parametrize("name", CASES)
def test_engine_reproduces_the_fixed_expectations(name):
    path = EXPECTED / f"{name}.json"
    want = json.loads(path.read_text())
    meta, batches = inputs(name, want)
    got = outputs(meta, batches)
    if UPDATE:
        new = {k: v for k, v in want.items() if k == "generator"}
        new.update({k: restrict(got[k], want[k]) for k in ("report", "estimate")})
        path.write_text(dump(new))
        return
    for side in ("report", "estimate"):
        assert restrict(got[side], want[side], side) == want[side], side
    assert got["report"]["totals"]["events"] > 0
