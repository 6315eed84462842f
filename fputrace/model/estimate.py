"""``Estimate``: the trace replayed under each policy, with bytes, cycles and the self-check."""
from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from .cost import LARGE_CLASSES, CostModel, class_table, components_label, xstate_class


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


@dataclass
class Estimate:
    policies: pd.DataFrame
    measured: dict
    recorded_policy: str | None
    self_check: float | None
    cost_model_name: str
    cost_model: dict
    notes: list[str] = field(default_factory=list)
    # side (measured / policy), class, xsave, xrstor, bytes, cycles, charged_set, match
    per_class: pd.DataFrame = field(default_factory=pd.DataFrame)
    # tasks with AVX-512 or AMX state live: tid, generation, comm, components, bytes_per_xsave and,
    # per policy, avoidable_xrstor_<policy>, avoidable_bytes_<policy>
    large_state_tasks: pd.DataFrame = field(default_factory=pd.DataFrame)
    cost_charged: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        pol = {name: {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()}
               for name, row in self.policies.to_dict(orient="index").items()}
        return {"policies": pol, "measured": self.measured, "recorded_policy": self.recorded_policy,
                "self_check": self.self_check, "cost_model": self.cost_model_name,
                "cost_model_detail": self.cost_model, "notes": self.notes,
                "per_class": _records(self.per_class), "cost_charged": self.cost_charged,
                "large_state_tasks": _records(self.large_state_tasks)}

    def to_text(self) -> str:
        from .text import render_estimate
        return render_estimate(self)


def _records(df: pd.DataFrame) -> list[dict]:
    return [{k: (v.item() if hasattr(v, "item") else v) for k, v in rec.items()}
            for rec in df.to_dict(orient="records")]


def large_state_tasks(view, names: list[str]) -> pd.DataFrame:
    """Tasks whose saves held AVX-512 or AMX state, with the restores each policy would throw
    away unused (SPEC 5.3) and the bytes those moved for nothing."""
    tasks, xs = view.tasks(), view.task_xstate()
    big = [xstate_class(int(x)) in LARGE_CLASSES for x in xs["xfeatures_seen"]]
    t, x = tasks[big], xs[big]
    df = pd.DataFrame({"tid": t["tid"], "generation": t["generation"], "comm": t["comm"],
                       "components": [components_label(int(v)) for v in x["xfeatures_seen"]],
                       "bytes_per_xsave": (t["xsave_bytes"] / t["xsave"].where(t["xsave"] > 0))
                       .fillna(0).round(1)})
    for p in names:
        df[f"avoidable_xrstor_{p}"] = x[f"avoidable_xrstor_{p}"]
        df[f"avoidable_bytes_{p}"] = x[f"avoidable_bytes_{p}"]
    return df.reset_index(drop=True)


def build_estimate(view, cost: CostModel) -> Estimate:
    """The replay side of one ``tables.ModelView``, priced with ``cost``: each class of save and
    restore (its highest live component group) at its calibrated set's cycles."""
    view.cost_model = cost
    names = [p.name for p in view.requested]
    totals = view.class_totals()
    per_class = pd.concat([class_table(totals, cost, side).assign(side=side)
                           for side in ["measured", *names]], ignore_index=True)
    per_class = per_class[["side", *[c for c in per_class.columns if c != "side"]]]
    return Estimate(policies=view.policy_totals(names),
                    measured=view.measured_totals(), recorded_policy=view.recorded_policy,
                    self_check=view.self_check(), cost_model_name=cost.name,
                    cost_model=cost.to_dict(), notes=notes(view, cost), per_class=per_class,
                    large_state_tasks=large_state_tasks(view, names),
                    cost_charged=cost.class_charges())
