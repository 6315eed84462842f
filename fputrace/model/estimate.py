"""``Estimate``: the trace replayed under each policy, with bytes, cycles and the self-check."""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from .columns import Columns
from .cost import CostModel


def notes(view, cost: CostModel) -> list[str]:
    f = view.flags()
    out = []
    if view.recorded_policy is None:
        out.append("recorded policy unknown (no recorded_policy / kernel_release): self-check "
                   "unavailable; causes read as on a deferred kernel")
    if f["ur_assumed"]:
        out.append("returns to user mode are not observable in this trace: the replay assumes one "
                   "before each switch-out and kernel FPU use, so deferred savings are a lower bound")
    elif not f["has_ur_events"]:
        out.append("returns to user mode derived from the kernel's own saves and restores "
                   "(tracepoint mode)")
    if f["inferred"]:
        out.append("kernel FPU sections inferred from TIF_NEED_FPU_LOAD, one per syscall: eager "
                   "counts are a lower bound")
    if f["unseen_saves"]:
        out.append(f"{f['unseen_saves']} kernel-FPU save(s) no event showed were inferred from "
                   "switch-outs that found the registers already saved; the replays include them, "
                   "the measured counts do not")
    if f["unexplained"]:
        out.append(f"{f['unexplained']} restore(s) without an observed cause were replayed "
                   "as an unseen kernel SIMD user invalidating the registers")
    if f["lost"]:
        out.append(f"{f['lost']} events lost: CPUs were unknown until re-synchronised")
    out.append("bytes = 576 + the CPUID leaf 0xD sizes of the components live in each event's "
               "xfeatures (compacted, init components skipped, as XSAVES/XRSTORS move them)")
    out.extend(cost.notes(view.meta))
    return out


def difference(rows: list[dict], base: str = "eager", other: str = "deferred") -> dict | None:
    """What ``other`` saves against ``base`` (both replayed): counts, bytes and cycles of
    base minus other, and how many fewer restores in percent. None unless both were replayed."""
    by = {r["policy"]: r for r in rows}
    if base not in by or other not in by:
        return None
    b, o = by[base], by[other]
    out = {"base": base, "policy": other}
    for k in ("xsave", "xrstor", "avoidable_xrstor", "bytes", "cycles"):
        out[k] = b[k] - o[k]
    out["xrstor_fewer_pct"] = (100.0 * (b["xrstor"] - o["xrstor"]) / b["xrstor"]
                               if b["xrstor"] else None)
    return out


@dataclass
class Estimate:
    policy_rows: list[dict]            # per requested policy (tables.ModelView.policy_rows)
    measured: dict
    recorded_policy: str | None
    self_check: float | None
    cost_model_name: str
    cost_model: dict
    notes: list[str] = field(default_factory=list)
    difference: dict | None = None     # eager minus deferred (``difference``)
    # side (measured / policy), class, xsave, xrstor, bytes, cycles, charged_set, match
    class_rows: Columns | None = None
    # tasks with AVX-512 or AMX state live: tid, generation, comm, components, bytes_per_xsave and,
    # per policy, avoidable_xrstor_<policy>, avoidable_bytes_<policy>
    large_state_rows: Columns | None = None
    cost_charged: dict = field(default_factory=dict)

    @cached_property
    def policies(self):
        """DataFrame indexed by policy: xsave, xrstor, avoidable_xrstor, bytes, cycles,
        avoidable_bytes."""
        cols = ["policy", "xsave", "xrstor", "avoidable_xrstor", "bytes", "cycles",
                "avoidable_bytes"]
        return Columns({k: [r[k] for r in self.policy_rows] for k in cols}).frame(index="policy")

    @cached_property
    def per_class(self):
        return (self.class_rows or Columns({})).frame()

    @cached_property
    def large_state_tasks(self):
        return (self.large_state_rows or Columns({})).frame()

    def to_dict(self) -> dict:
        return {"policies": {r["policy"]: {k: v for k, v in r.items() if k != "policy"}
                             for r in self.policy_rows},
                "measured": self.measured, "recorded_policy": self.recorded_policy,
                "self_check": self.self_check, "cost_model": self.cost_model_name,
                "cost_model_detail": self.cost_model, "notes": self.notes,
                "per_class": self.class_rows.records() if self.class_rows else [],
                "cost_charged": self.cost_charged,
                "large_state_tasks": self.large_state_rows.records() if self.large_state_rows else [],
                "difference": self.difference}

    def to_text(self) -> str:
        from .text import render_estimate
        return render_estimate(self)


def _class_rows(view, sides: list[str]) -> Columns:
    parts = [view.class_table(side) for side in sides]
    out = {"side": [side for side, t in zip(sides, parts) for _ in range(len(t))]}
    for k in parts[0].names:
        vals = [t[k] for t in parts]
        out[k] = np.concatenate(vals) if isinstance(vals[0], np.ndarray) else sum(vals, [])
    return Columns(out)


def build_estimate(view, cost: CostModel) -> Estimate:
    """The replay side of one ``tables.ModelView``, priced with ``cost``: each class of save and
    restore (its highest live component group) at its calibrated set's cycles."""
    view.cost_model = cost
    names = [p.name for p in view.requested]
    rows = view.policy_rows(names)
    return Estimate(policy_rows=rows, measured=view.measured_totals(),
                    recorded_policy=view.recorded_policy, self_check=view.self_check(),
                    cost_model_name=cost.name, cost_model=cost.to_dict(), notes=notes(view, cost),
                    difference=difference(rows), class_rows=_class_rows(view, ["measured", *names]),
                    large_state_rows=view.large_state_columns(names),
                    cost_charged=cost.class_charges())
