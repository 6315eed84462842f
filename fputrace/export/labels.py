"""Bounded label values for Prometheus counters: the N busiest names get a series, the rest ``other``.

A host runs thousands of task names over a day; one series per name and cause would swamp the
server. ``BoundedLabels`` keeps counters for at most ``n`` admitted values plus ``other``, with
three promises:

* every exposed series only ever goes up, including when a value leaves the top N and comes back:
  an evicted value's series disappears with its counts frozen, and continues from them if it is
  admitted again (so ``rate()`` over the gap counts only what it gained after coming back);
* ``other`` only goes up: it takes the increases of every value without a series, never the past
  counts of a value that loses its series (that would show as a false burst in ``rate()``);
* each increase is counted once: the sum over values of what each series gained (plus what
  ``other`` gained) is exactly the sum of the increases fed in.

Who gets a series: a score per value, its activity decayed with a half-life (``half_life_s``);
a value with increases is admitted while a slot is free, else it replaces the lowest-scoring
admitted value when it scores more than ``HYSTERESIS`` times as much (so two similar names do not
flap). Frozen counts of evicted values are kept for the ``MAX_FROZEN`` most recently evicted ones;
a value older than that restarts from zero if it returns, which Prometheus reads as a counter reset
(still correct rates). A task really named ``other`` is counted in ``other``.
"""
from __future__ import annotations

from collections import OrderedDict

import numpy as np

OTHER = "other"
HYSTERESIS = 2.0
MAX_FROZEN = 4096


class BoundedLabels:
    def __init__(self, n: int, counters: list[str], half_life_s: float = 60.0):
        if n < 0:
            raise ValueError("the number of labelled values must be >= 0")
        self.n = n
        self.counters = counters
        self.half_life_s = half_life_s
        self.admitted: dict[str, np.ndarray] = {}          # value -> cumulative counters
        self.frozen: OrderedDict[str, np.ndarray] = OrderedDict()
        self.other = np.zeros(len(counters), np.int64)
        self.score: dict[str, float] = {}
        self._last_s: float | None = None

    def advance(self, increases: dict[str, np.ndarray], activity: dict[str, float], now_s: float) -> None:
        """Attribute one interval's ``increases`` (value -> counters, in ``self.counters`` order);
        ``activity`` (value -> a number) ranks values for the N slots."""
        self._decay(now_s)
        for v, a in activity.items():
            self.score[v] = self.score.get(v, 0.0) + a
        for v in sorted((v for v in increases if v not in self.admitted and v != OTHER),
                        key=lambda v: (-self.score.get(v, 0.0), v)):
            if len(self.admitted) < self.n:
                self._admit(v)
            elif self.admitted:
                low = min(self.admitted, key=lambda a: (self.score.get(a, 0.0), a))
                if self.score.get(v, 0.0) > HYSTERESIS * self.score.get(low, 0.0):
                    self._evict(low)
                    self._admit(v)
        for v, inc in increases.items():
            target = self.admitted.get(v)
            if target is not None:
                target += inc
            else:
                self.other += inc

    def series(self) -> list[tuple[str, np.ndarray]]:
        """(value, counters) for every exposed series, ``other`` last."""
        return sorted(self.admitted.items()) + [(OTHER, self.other)]

    # ---------------------------------------------------------------------------------------
    def _decay(self, now_s: float) -> None:
        if self._last_s is not None and now_s > self._last_s and self.half_life_s > 0:
            f = 0.5 ** ((now_s - self._last_s) / self.half_life_s)
            for v in list(self.score):
                self.score[v] *= f
                if self.score[v] < 1e-3 and v not in self.admitted:
                    del self.score[v]          # forgotten: memory follows recent activity only
        self._last_s = now_s

    def _admit(self, v: str) -> None:
        back = self.frozen.pop(v, None)    # a new series (or a forgotten one) starts from zero
        self.admitted[v] = back if back is not None else np.zeros(len(self.counters), np.int64)

    def _evict(self, v: str) -> None:
        self.frozen[v] = self.admitted.pop(v)
        self.frozen.move_to_end(v)
        while len(self.frozen) > MAX_FROZEN:
            self.frozen.popitem(last=False)
