"""``Estimate``: the trace replayed under each policy, with bytes, cycles and the self-check."""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

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
    out.extend(cost.notes(view.meta, per_class=False))
    return out


@dataclass
class Estimate:
    policies: pd.DataFrame
    measured: dict
    recorded_policy: str | None
    self_check: float | None
    cost_model_name: str
    cost_model: dict
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        pol = {name: {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
               for name, row in self.policies.to_dict(orient="index").items()}
        return {"policies": pol, "measured": self.measured, "recorded_policy": self.recorded_policy,
                "self_check": self.self_check, "cost_model": self.cost_model_name,
                "cost_model_detail": self.cost_model, "notes": self.notes}

    def to_text(self) -> str:
        from .text import render_estimate
        return render_estimate(self)


def build_estimate(view, cost: CostModel) -> Estimate:
    """The replay side of one ``tables.ModelView``, priced with ``cost``."""
    view.cost_model = cost
    return Estimate(policies=view.policy_totals([p.name for p in view.requested]),
                    measured=view.measured_totals(), recorded_policy=view.recorded_policy,
                    self_check=view.self_check(), cost_model_name=cost.name,
                    cost_model=cost.to_dict(), notes=notes(view, cost))
