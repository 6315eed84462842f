"""The exporter's metrics without a server: the collector over the real model, parsed back with
prometheus_client's own parser; bounded labels that stay monotonic."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import fputrace
from fputrace.events import EVENT_DTYPE, Kind, XsaveCause, comm_to_args
from fputrace.export.feed import ReplayFeed
from fputrace.export.labels import OTHER, BoundedLabels
from fputrace.export.metrics import ModelCollector
from fputrace.model import Model

DEMO = Path(__file__).resolve().parent.parent / "fputrace" / "data" / "demo.fpt"


def scrape(registry) -> dict[str, dict[tuple, float]]:
    """{sample name: {sorted label items: value}} from the text exposition."""
    out: dict[str, dict[tuple, float]] = {}
    for fam in text_string_to_metric_families(generate_latest(registry).decode()):
        for s in fam.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def by(samples: dict[tuple, float], label: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for labels, v in samples.items():
        key = dict(labels)[label]
        out[key] = out.get(key, 0.0) + v
    return out


@pytest.fixture(scope="module")
def demo():
    if not DEMO.exists():
        pytest.skip("fputrace/data/demo.fpt (the bundled real recording) is not in this tree")
    tr = fputrace.load(DEMO)
    return tr, tr.report(), tr.estimate()


def test_replay_metrics_are_the_reports_numbers(demo):
    tr, rep, est = demo
    reg = CollectorRegistry()
    reg.register(ModelCollector(ReplayFeed(DEMO), top_comms=3, top_callers=2))
    m = scrape(reg)
    tot = rep.totals
    xs, xr = m["fputrace_xsave_total"], m["fputrace_xrstor_total"]
    assert sum(xs.values()) == tot["xsave"] and sum(xr.values()) == tot["xrstor"]
    # bounded: three names of their own plus other, every cause of each
    assert len(by(xs, "comm")) == 4 and OTHER in by(xs, "comm")
    assert len(xs) == 4 * len(XsaveCause)
    per_cause = rep.per_cause[rep.per_cause.kind == "XSAVE"].set_index("cause")["count"].to_dict()
    assert {c: v for c, v in by(xs, "cause").items() if v} == per_cause
    # the three busiest names by the model's own per-task counts
    names = rep.per_task.groupby("comm")[["xsave", "xrstor", "kfpu_sections"]].sum().sum(axis=1)
    assert set(by(xs, "comm")) - {OTHER} == set(names.sort_values(ascending=False).index[:3])
    assert sum(m["fputrace_avoidable_xrstor_total"].values()) == tot["avoidable_xrstor"]
    assert sum(m["fputrace_xsave_bytes_total"].values()) == tot["xsave_bytes"]
    assert sum(m["fputrace_xrstor_bytes_total"].values()) == tot["xrstor_bytes"]
    # kernel FPU: per caller (two of their own, other, and the caller-less ones) and the histogram
    sec = by(m["fputrace_kfpu_sections_total"], "caller")
    assert sum(sec.values()) == tot["kfpu_sections"] and len(sec) <= 2 + 2
    top2 = rep.kfpu_callers.sort_values("sections", ascending=False).caller.head(2).tolist()
    assert set(sec) - {OTHER, "unknown"} == set(top2)
    assert m["fputrace_kfpu_section_seconds_count"][()] == rep.kfpu_hist["count"].sum()
    assert m["fputrace_kfpu_section_seconds_sum"][()] == pytest.approx(rep.per_task.kfpu_ns.sum() / 1e9)
    assert sum(m["fputrace_kfpu_seconds_total"].values()) == pytest.approx(rep.kfpu_callers.total_ns.sum() / 1e9)
    buckets = m["fputrace_kfpu_section_seconds_bucket"]
    le = sorted(((float(dict(k)["le"]), v) for k, v in buckets.items()))
    assert all(a[1] <= b[1] for a, b in zip(le, le[1:])), "buckets must be cumulative"
    below_1ms = rep.kfpu_hist[rep.kfpu_hist.hi_ns <= 1 << 20]["count"].sum()
    assert dict(le)[(1 << 20) / 1e9] == below_1ms
    p99 = by(m["fputrace_kfpu_section_p99_seconds"], "caller")
    for r in rep.kfpu_callers[rep.kfpu_callers.caller.isin(top2)].itertuples():
        assert p99[r.caller] == pytest.approx(r.p99_ns / 1e9)
    # policies, totals, losses on every CPU, what is traced
    pol = by(m["fputrace_policy_xrstor_total"], "policy")
    assert pol == {name: row.xrstor for name, row in est.policies.iterrows()}
    assert m["fputrace_events_total"][()] == tot["events"]
    assert by(m["fputrace_lost_events_total"], "cpu") == {str(c): 0 for c in range(tr.meta["nr_cpus"])}
    info = dict(next(iter(m["fputrace_info"])))
    assert info["mode"] == "fentry" and info["kernel_release"] == tr.meta["kernel_release"]
    assert info["policy"] == "deferred" and info["source"] == "replay"
    assert m["fputrace_self_check_ratio"][()] == pytest.approx(est.self_check)


# ------------------------------------------------------------------ names moving in and out

class _FedByHand:
    """The collector's feed face over a real model that the test feeds phase by phase."""
    live = False

    def __init__(self, meta):
        self.meta = meta
        self.model = Model(meta)

    def report(self):
        return self.model.report()

    def estimate(self):
        return self.model.estimate()


def _saves(tid: int, n: int, t0: int) -> np.ndarray:
    b = np.zeros(n, EVENT_DTYPE)
    b["ts_ns"] = t0 + np.arange(n) * 1000
    b["kind"], b["tid"], b["tgid"], b["a0"], b["a1"] = Kind.XSAVE, tid, tid, 0x7, XsaveCause.SWITCH
    return b


def _name(tid: int, comm: str, ts: int) -> np.ndarray:
    b = np.zeros(1, EVENT_DTYPE)
    b["ts_ns"], b["kind"], b["tid"], b["tgid"] = ts, Kind.COMM, tid, tid
    b["a0"], b["a1"] = comm_to_args(comm)
    return b


def test_counters_stay_monotonic_when_a_name_leaves_the_top_and_comes_back():
    """top_comms=1: alpha, then beta takes its series, then alpha takes it back. Every exposed
    series only grows, other only grows, and what all series gained between two scrapes is
    exactly what the model counted in between (nothing twice, nothing lost)."""
    feed = _FedByHand({"nr_cpus": 1, "recorded_policy": "deferred"})
    now = [0.0]
    reg = CollectorRegistry()
    reg.register(ModelCollector(feed, top_comms=1, top_callers=1, clock=lambda: now[0]))
    phases = [{"alpha": 1000}, {"beta": 5000}, {"alpha": 100, "beta": 10}, {"alpha": 20000},
              {"beta": 7}, {"gamma": 3}]
    tids = {"alpha": 100, "beta": 200, "gamma": 300}
    ts = 1000
    for comm, tid in tids.items():
        feed.model.feed(_name(tid, comm, ts))
    last_seen: dict[str, float] = {}
    previous_total = 0
    owners = []
    for phase in phases:
        for comm, n in phase.items():
            feed.model.feed(_saves(tids[comm], n, ts))
            ts += n * 1000 + 1000
        now[0] += 60.0                                  # one half-life of the scores
        series = by(scrape(reg)["fputrace_xsave_total"], "comm")
        total = feed.report().totals["xsave"]
        gained = 0.0
        for comm, v in series.items():
            assert v >= last_seen.get(comm, 0.0), f"{comm} went down: {last_seen.get(comm)} -> {v}"
            gained += v - last_seen.get(comm, 0.0)
            last_seen[comm] = v
        assert gained == total - previous_total, (phase, series)
        previous_total = total
        owners.append(sorted(set(series) - {OTHER}))
    assert owners == [["alpha"], ["beta"], ["beta"], ["alpha"], ["alpha"], ["alpha"]]
    assert last_seen == {"alpha": 21000, "beta": 5010, OTHER: 100 + 7 + 3}


def test_a_name_with_stale_bytes_after_its_nul_is_one_label():
    """The kernel's fork tracepoint copies the child's whole 16-byte comm buffer: bytes after the
    NUL are stale. The model must end the name at the NUL (one task name, one label)."""
    feed = _FedByHand({"nr_cpus": 1, "recorded_policy": "deferred"})
    raw = np.zeros(1, EVENT_DTYPE)
    raw["ts_ns"], raw["kind"], raw["tid"], raw["tgid"] = 10, Kind.COMM, 7, 7
    raw["a0"], raw["a1"] = comm_to_args(b"fpt-pp\0\0stale!!")
    feed.model.feed(np.concatenate([raw, _name(8, "fpt-pp", 11), _saves(7, 3, 100), _saves(8, 2, 200)]))
    assert set(feed.report().per_task.comm) == {"fpt-pp"}
    reg = CollectorRegistry()
    reg.register(ModelCollector(feed, top_comms=5, top_callers=1))
    assert by(scrape(reg)["fputrace_xsave_total"], "comm") == {"fpt-pp": 5, OTHER: 0}


def test_bounded_labels_conserve_every_increase_under_random_traffic():
    rng = np.random.default_rng(7)
    labels = BoundedLabels(3, ["n"], half_life_s=10)
    seen: dict[str, int] = {}
    fed = 0
    for step in range(400):
        names = rng.choice([f"t{i}" for i in range(12)], size=rng.integers(1, 6), replace=False)
        inc = {str(n): np.array([int(rng.integers(0, 50))], np.int64) for n in names}
        fed += sum(int(v[0]) for v in inc.values())
        labels.advance(inc, {k: float(v[0]) for k, v in inc.items()}, float(step))
        exposed = dict((k, int(v[0])) for k, v in labels.series())
        assert len(exposed) <= 3 + 1
        for k, v in exposed.items():
            assert v >= seen.get(k, 0)
            seen[k] = v
        # every count sits in exactly one place: an exposed series, other, or a frozen series
        frozen = sum(int(v[0]) for k, v in labels.frozen.items())
        assert sum(exposed.values()) + frozen == fed
