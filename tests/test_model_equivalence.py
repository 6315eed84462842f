"""The C engine against the numba engine it replaces (tests/legacy_model, frozen at 1e64ed4):
identical reports and estimates on every hand-computed scenario, the hypothesis properties, the
bundled demo and the lab recordings.

Each scenario and property test runs again here with its ``Model`` replaced by ``Both``, which
feeds both engines and compares their report and estimate on every call. Known, intended
differences (``normalise``): the kernel FPU callers table is keyed by the begin's caller now
(issue 8.5; the old one counted sections under the end's caller and listed begin callers with 0
sections); the estimate's notes are text the cost model (helper E's) now writes; and keys the new
model adds are not compared (the old one lacks them).
"""
from __future__ import annotations

import inspect
import os
from pathlib import Path

import pytest

import fputrace
from fputrace.model import BUILTIN_DEFAULT, Model
from tests import test_model_properties, test_scenarios_model
from tests.legacy_model import Model as OldModel
from tests.legacy_model.cost import BUILTIN_DEFAULT as OLD_BUILTIN_DEFAULT

DEMO = Path(fputrace.__file__).parent / "data" / "demo.fpt"
DATA = Path(__file__).parent / "data"


def _callers_summary(rows: list[dict]) -> dict:
    return {"timed_ns": sum(r["total_ns"] for r in rows)}


def normalise(new: dict, old: dict, path: str = "") -> tuple:
    """(new, old) restricted to what both engines define, callers summarised."""
    if isinstance(old, dict) and isinstance(new, dict):
        keys = [k for k in old if k in new]
        missing = [k for k in old if k not in new]
        assert not missing, f"{path}: the new model lost keys {missing}"
        pairs = {}
        for k in keys:
            if k == "notes":
                continue
            if k == "kfpu_callers":
                assert all(r["sections"] > 0 for r in new[k]), "a caller row with 0 sections"
                pairs[k] = (_callers_summary(new[k]), _callers_summary(old[k]))
            else:
                pairs[k] = normalise(new[k], old[k], f"{path}.{k}")
        return {k: v[0] for k, v in pairs.items()}, {k: v[1] for k, v in pairs.items()}
    if isinstance(old, list) and isinstance(new, list) and old and isinstance(old[0], dict):
        assert len(new) == len(old), f"{path}: {len(new)} rows, old {len(old)}"
        pairs = [normalise(n, o, f"{path}[{i}]") for i, (n, o) in enumerate(zip(new, old))]
        return [p[0] for p in pairs], [p[1] for p in pairs]
    return new, old


def assert_same(new: dict, old: dict) -> None:
    n, o = normalise(new, old)
    assert n == o


class Both:
    """A Model that is two: the C one (returned) and the numba one (compared)."""

    def __init__(self, meta=None, policies=("eager", "deferred", "deferred-novalid"),
                 cost_model=None, tasks=None):
        # the built-in cost model, not a calibration this host may have (each its own class)
        self.new = Model(meta, policies, cost_model or BUILTIN_DEFAULT, tasks)
        self.old = OldModel(meta, policies, cost_model or OLD_BUILTIN_DEFAULT, tasks)

    def feed(self, batch):
        self.new.feed(batch)
        self.old.feed(batch)

    def report(self):
        rep = self.new.report()
        assert_same(rep.to_dict(), self.old.report().to_dict())
        return rep

    def estimate(self):
        est = self.new.estimate()
        assert_same(est.to_dict(), self.old.estimate().to_dict())
        return est

    def owners(self):
        return self.new.owners()


def _tests_of(module):
    return [(name, fn) for name, fn in inspect.getmembers(module, inspect.isfunction)
            if name.startswith("test_") and fn.__module__ == module.__name__]


@pytest.mark.parametrize("name,fn", _tests_of(test_scenarios_model),
                         ids=[n for n, _ in _tests_of(test_scenarios_model)])
def test_scenario_both_engines(name, fn, monkeypatch):
    monkeypatch.setattr(test_scenarios_model, "Model", Both)
    fn()


@pytest.mark.parametrize("name,fn", _tests_of(test_model_properties),
                         ids=[n for n, _ in _tests_of(test_model_properties)])
def test_property_both_engines(name, fn, monkeypatch):
    monkeypatch.setattr(test_model_properties, "Model", Both)
    fn()


def recordings() -> list[Path]:
    found = [DEMO, *sorted(DATA.glob("lab-*.fpt"))]
    extra = os.environ.get("FPUTRACE_EQUIVALENCE_RECORDINGS")   # more, e.g. from the lab cache
    if extra:
        found += sorted(Path(extra).glob("*.fpt"))
    return found


@pytest.mark.parametrize("path", recordings(), ids=lambda p: p.name)
def test_recording_both_engines(path):
    tr = fputrace.load(path)
    both = Both(tr.meta)
    for batch in tr.batches():
        both.feed(batch)
    rep = both.report()
    assert rep.totals["events"] > 0
    both.estimate()
