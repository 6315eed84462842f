"""Prometheus metrics of the model (``fputrace exporter``): a custom ``prometheus_client`` collector.

At each scrape the collector takes the model's report (and estimate), turns it into per-task
increases since the last scrape (``intervals.py``, the same aggregation ``fputrace stat`` prints)
and adds them to label-bounded counters (``labels.py``: the ``top_comms`` busiest task names and
``top_callers`` busiest kernel-FPU callers get their own series, the rest ``other``). Nothing here
counts events: every number is the model's.

Metrics (counters are cumulative since the exporter started):

  fputrace_xsave_total{comm,cause}           XSAVEs (causes as in the report: switch, kfpu, ...)
  fputrace_xrstor_total{comm,cause}          XRSTORs (user_return, switch_in, kfpu_end, ...)
  fputrace_avoidable_xrstor_total{comm}      restores thrown away before any user instruction
  fputrace_xsave_bytes_total{comm}           bytes the saves moved (XSAVES-style sizes)
  fputrace_xrstor_bytes_total{comm}          bytes the restores moved
  fputrace_task_kfpu_sections_total{comm}    kernel FPU sections run by tasks of that name
  fputrace_task_kfpu_seconds_total{comm}     ... and their time (preemption off; timed sections)
  fputrace_kfpu_sections_total{caller}       kernel FPU sections per caller (caller "unknown":
                                             sections the mode saw without a caller, inferred)
  fputrace_kfpu_seconds_total{caller}        time in them (timed sections only)
  fputrace_kfpu_section_p99_seconds{caller}  p99 section length per caller since start (gauge,
                                             upper bound of its power-of-two bucket)
  fputrace_kfpu_section_seconds              histogram of section lengths, buckets 2^k ns
  fputrace_policy_xsave_total{policy}        the trace replayed under each policy (eager, ...)
  fputrace_policy_xrstor_total{policy}
  fputrace_policy_avoidable_xrstor_total{policy}
  fputrace_policy_bytes_total{policy}
  fputrace_events_total                      records analysed (task-table records included)
  fputrace_lost_events_total{cpu}            events the capture knows it dropped (every CPU)
  fputrace_unexplained_xrstor_total          restores whose cause the mode could not see
  fputrace_self_check_ratio                  replay under the recorded policy vs measured (0..1)
  fputrace_gap_flagged                       1 when some number crossed a lost-event gap
  fputrace_info{mode,kernel_release,policy,host,source,version}   1
"""
from __future__ import annotations

import threading
import time

import numpy as np
from prometheus_client.metrics_core import (CounterMetricFamily, GaugeMetricFamily,
                                            HistogramMetricFamily, InfoMetricFamily)

from .. import __version__
from .intervals import TASK_COUNTERS, XRSTOR_CAUSES, XSAVE_CAUSES, Intervals
from .labels import BoundedLabels

UNNAMED = "(unnamed)"
HIST_MIN_EXP, HIST_MAX_EXP = 10, 35        # buckets le = 2^10 ns (1 us) .. 2^35 ns (34 s), +Inf
COMM_COUNTERS = TASK_COUNTERS
CALLER_COUNTERS = ["sections", "total_ns"]
POLICY_COUNTERS = ["xsave", "xrstor", "avoidable_xrstor", "bytes"]


def _idx(names: list[str]) -> dict[str, int]:
    return {n: i for i, n in enumerate(names)}


class ModelCollector:
    def __init__(self, feed, top_comms: int, top_callers: int, clock=time.monotonic):
        self.feed = feed
        self.clock = clock
        self.intervals = Intervals()
        self.comms = BoundedLabels(top_comms, COMM_COUNTERS)
        self.callers = BoundedLabels(top_callers, CALLER_COUNTERS)
        self.hist = np.zeros(64, np.int64)          # cumulative count per power-of-two bucket
        self.policy_high: dict[str, np.ndarray] = {}
        self.lost: dict[int, int] = {}
        self.totals: dict[str, int] = {}
        self._lock = threading.Lock()               # two scrapers at once: one advance at a time
        self._p99: dict[str, float] = {}
        self._last = None

    def describe(self):
        return []                                   # no scrape at registration

    # ------------------------------------------------------------------ one scrape
    def advance(self) -> None:
        rep = self.feed.report()
        est = self.feed.estimate()
        now = self.clock()
        iv = self.intervals.advance(rep, now)
        by_comm: dict[str, np.ndarray] = {}
        activity: dict[str, float] = {}
        for comm, rows in iv.tasks.groupby(iv.tasks["comm"].replace("", UNNAMED), sort=False):
            by_comm[comm] = rows[COMM_COUNTERS].to_numpy(np.int64).sum(axis=0)
            activity[comm] = float(rows[["xsave", "xrstor", "kfpu_sections"]].to_numpy().sum())
        self.comms.advance(by_comm, activity, now)
        by_caller = {r.caller: np.array([r.sections, r.total_ns], np.int64)
                     for r in iv.callers.itertuples()}
        self.callers.advance(by_caller, {c: float(v[0]) for c, v in by_caller.items()}, now)
        for r in iv.hist.itertuples():
            self.hist[int(r.hi_ns).bit_length() - 1] += int(r.count)
        for cpu, inc in iv.lost_per_cpu.items():
            self.lost[cpu] = self.lost.get(cpu, 0) + inc
        for k, v in iv.totals.items():
            self.totals[k] = self.totals.get(k, 0) + v
        for name, row in est.policies.iterrows():
            cur = np.array([int(row[c]) for c in POLICY_COUNTERS], np.int64)
            self.policy_high[name] = np.maximum(self.policy_high.get(name, cur), cur)
        self._p99 = {r.caller: r.p99_ns / 1e9 for r in rep.kfpu_callers.itertuples()}
        self._last = (rep, est)

    def collect(self):
        with self._lock:
            self.advance()
            yield from self._families()

    # ------------------------------------------------------------------ the families
    def _families(self):
        rep, est = self._last
        meta = self.feed.meta
        ci = _idx(COMM_COUNTERS)
        xs = CounterMetricFamily("fputrace_xsave", "XSAVEs of user FPU state, per task name and cause",
                                 labels=["comm", "cause"])
        xr = CounterMetricFamily("fputrace_xrstor", "XRSTORs of user FPU state, per task name and cause",
                                 labels=["comm", "cause"])
        per_comm = {
            "avoidable_xrstor": CounterMetricFamily(
                "fputrace_avoidable_xrstor", "restores thrown away before the task ran a user "
                "instruction (SPEC 5.3)", labels=["comm"]),
            "xsave_bytes": CounterMetricFamily("fputrace_xsave_bytes", "bytes moved by XSAVEs",
                                               labels=["comm"]),
            "xrstor_bytes": CounterMetricFamily("fputrace_xrstor_bytes", "bytes moved by XRSTORs",
                                                labels=["comm"]),
            "kfpu_sections": CounterMetricFamily("fputrace_task_kfpu_sections", "kernel FPU "
                                                 "sections run by tasks of this name", labels=["comm"]),
        }
        kfpu_s = CounterMetricFamily("fputrace_task_kfpu_seconds", "time in kernel FPU sections "
                                     "(preemption off) of tasks of this name", labels=["comm"])
        for comm, c in self.comms.series():
            for cause in XSAVE_CAUSES:
                xs.add_metric([comm, cause], int(c[ci[f"xsave_{cause}"]]))
            for cause in XRSTOR_CAUSES:
                xr.add_metric([comm, cause], int(c[ci[f"xrstor_{cause}"]]))
            for key, fam in per_comm.items():
                fam.add_metric([comm], int(c[ci[key]]))
            kfpu_s.add_metric([comm], c[ci["kfpu_ns"]] / 1e9)
        yield from (xs, xr, *per_comm.values(), kfpu_s)

        sections = CounterMetricFamily("fputrace_kfpu_sections", "kernel FPU sections per caller",
                                       labels=["caller"])
        seconds = CounterMetricFamily("fputrace_kfpu_seconds", "time in kernel FPU sections per "
                                      "caller (preemption off; timed sections)", labels=["caller"])
        p99 = GaugeMetricFamily("fputrace_kfpu_section_p99_seconds", "p99 kernel FPU section "
                                "length per caller since start (power-of-two bucket bound)",
                                labels=["caller"])
        for caller, c in self.callers.series():
            sections.add_metric([caller], int(c[0]))
            seconds.add_metric([caller], c[1] / 1e9)
            if caller in self._p99:
                p99.add_metric([caller], self._p99[caller])
        yield from (sections, seconds, p99)

        hist = HistogramMetricFamily("fputrace_kfpu_section_seconds", "kernel FPU section length "
                                     "(preemption off), power-of-two buckets")
        cum = np.cumsum(self.hist)
        buckets = [(f"{(1 << k) / 1e9:.9g}", float(cum[k])) for k in range(HIST_MIN_EXP, HIST_MAX_EXP + 1)]
        buckets.append(("+Inf", float(cum[-1])))
        hist.add_metric([], buckets, sum_value=self.totals.get("kfpu_ns", 0) / 1e9)
        yield hist

        pol = {c: CounterMetricFamily(f"fputrace_policy_{c}", f"{c} with the trace replayed under "
                                      "each policy (fputrace estimate)", labels=["policy"])
               for c in POLICY_COUNTERS}
        for name, v in sorted(self.policy_high.items()):
            for i, c in enumerate(POLICY_COUNTERS):
                pol[c].add_metric([name], int(v[i]))
        yield from pol.values()

        yield CounterMetricFamily("fputrace_events", "records analysed by the model",
                                  value=self.totals.get("events", 0))
        lost = CounterMetricFamily("fputrace_lost_events", "events the capture knows it dropped",
                                   labels=["cpu"])
        for cpu in sorted(self.lost):
            lost.add_metric([str(cpu)], self.lost[cpu])
        yield lost
        yield CounterMetricFamily("fputrace_unexplained_xrstor", "restores whose cause the capture "
                                  "mode could not see", value=self.totals.get("unexplained_xrstor", 0))
        if est.self_check is not None:
            yield GaugeMetricFamily("fputrace_self_check_ratio", "replay under the recorded policy "
                                    "against the measured counts (1 = equal)", value=est.self_check)
        yield GaugeMetricFamily("fputrace_gap_flagged", "1 when some count crossed a lost-event gap",
                                value=int(bool(rep.totals.get("gap_flagged"))))
        yield InfoMetricFamily("fputrace", "what is being traced, and how", value={
            "mode": str(meta.get("capture_mode") or meta.get("source") or "unknown"),
            "kernel_release": str(meta.get("kernel_release") or "unknown"),
            "policy": str(rep.recorded_policy or "unknown"),
            "host": str(meta.get("host") or "unknown"),
            "source": "live" if getattr(self.feed, "live", False) else "replay",
            "version": __version__,
        })
