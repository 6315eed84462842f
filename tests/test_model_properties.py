"""Invariants of the model on generated traces (hypothesis draws the simulated workload and splits).

The generator (benchmarks/bench_model_tracegen.py) is a small simulated kernel that follows the eager
or deferred rules and knows the true owner of every CPU, so some properties compare against ground
truth, not only against the model itself.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings, strategies as st

from fputrace.model import Model

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from bench_model_tracegen import TK_LAST, TK_TID, TraceGen, generate  # noqa: E402

SETTINGS = settings(max_examples=20, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

workloads = st.fixed_dictionaries({
    "seed": st.integers(0, 2**31 - 1),
    "cpus": st.integers(1, 4),
    "tasks": st.integers(2, 12),
    "kthreads": st.integers(0, 3),
    "events": st.integers(20, 3000),
    "kernel": st.sampled_from([("deferred", "probe"), ("deferred", "tracepoint"),
                               ("eager", "probe")]),
})


def make(w, **extra):
    policy, mode = w["kernel"]
    return generate(w["events"], cpus=w["cpus"], tasks=w["tasks"], kthreads=w["kthreads"],
                    seed=w["seed"], policy=policy, mode=mode, **extra)


def analyse(meta, ev, splits=()):
    m = Model(meta)
    bounds = [0, *sorted(splits), len(ev)]
    for lo, hi in zip(bounds, bounds[1:]):
        m.feed(ev[lo:hi])
    return m


@SETTINGS
@given(workloads)
def test_replay_of_recorded_policy_reproduces_measured_counts(w):
    meta, ev = make(w)
    est = analyse(meta, ev).estimate()
    assert est.self_check == 1.0


@SETTINGS
@given(workloads)
def test_deferred_never_restores_more_than_eager(w):
    meta, ev = make(w)
    pol = analyse(meta, ev).estimate().policies
    assert pol.loc["deferred", "xrstor"] <= pol.loc["eager", "xrstor"]
    assert pol.loc["deferred", "xsave"] <= pol.loc["eager", "xsave"]
    assert pol.loc["deferred", "xrstor"] <= pol.loc["deferred-novalid", "xrstor"]
    assert pol.loc["deferred", "avoidable_xrstor"] == 0


@SETTINGS
@given(workloads, st.lists(st.floats(0, 1), max_size=6), st.booleans())
def test_whole_and_chunked_analysis_agree(w, cuts, lossy):
    meta, ev = make(w, lost_ppm=20_000 if lossy else 0)
    splits = sorted({int(c * len(ev)) for c in cuts})
    whole, chunked = analyse(meta, ev), analyse(meta, ev, splits)
    assert whole.report().to_dict() == chunked.report().to_dict()
    assert whole.estimate().to_dict() == chunked.estimate().to_dict()


@SETTINGS
@given(workloads, st.lists(st.floats(0, 1), min_size=1, max_size=5))
def test_one_owner_per_cpu_at_a_time(w, cuts):
    """No task's user state is valid on two CPUs at once: measured, and in every policy replay,
    checked after every chunk."""
    meta, ev = make(w)
    m = Model(meta)
    bounds = [0, *sorted({int(c * len(ev)) for c in cuts}), len(ev)]
    for lo, hi in zip(bounds, bounds[1:]):
        m.feed(ev[lo:hi])
        own = m.owners()
        for owners in [own["measured"], *own["policies"].values()]:
            tasks = [o for o in owners if o >= 0]
            assert len(tasks) == len(set(tasks)), owners


@SETTINGS
@given(workloads.filter(lambda w: w["kernel"][1] == "probe"))
def test_measured_owner_matches_the_simulated_kernel(w):
    """With probes every save and restore is seen: the model's owner of each CPU at the end equals
    the simulated kernel's (owner ctx == task and task's last CPU == this CPU), else no task."""
    policy, mode = w["kernel"]
    g = TraceGen(cpus=w["cpus"], tasks=w["tasks"], kthreads=w["kthreads"], seed=w["seed"],
                 policy=policy, mode=mode)
    m = Model(g.meta())
    for b in g.chunks(w["events"], chunk=max(w["events"], 128)):
        m.feed(b)
    truth = []
    for c, x in enumerate(g.OWN.tolist()):
        valid = x >= 0 and g.TK[x, TK_LAST] == c
        truth.append(int(g.TK[x, TK_TID]) if valid else None)
    cpus = m.report().per_cpu
    got = [int(r.owner_tid) if r.owner == "TASK" else None for r in cpus.itertuples()]
    got += [None] * (len(truth) - len(got))
    assert got[:len(truth)] == truth


def test_generator_is_deterministic():
    a = generate(500, seed=7)[1]
    b = generate(500, seed=7)[1]
    assert np.array_equal(a, b) and len(a) >= 500
