"""``Estimate``: the trace replayed under each policy, with bytes, cycles and the self-check."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .cost import CostModel
from .layout import (PF_AVOID, PF_BYTES, PF_XRSTOR, PF_XSAVE, S_HAS_UR_EVENTS, S_INFERRED, S_LOST,
                     S_REC_POLICY, S_UNEXPLAINED, S_UNSEEN_SAVES, S_UR_ASSUMED, TF_XR, TF_XR_BYTES, TF_XS,
                     TF_XS_BYTES, TF_XS_UNSEEN, NCAUSE)


def self_check(model) -> float | None:
    """Agreement of the recorded policy's replay with the measured counts, task by task:
    1 - sum |replayed - measured| / sum measured (XSAVE and XRSTOR), clipped to 0..1."""
    rp = int(model._S[S_REC_POLICY])
    if rp < 0:
        return None
    n = model.ntasks
    T = model._T[:n]
    # the replay also makes the saves we inferred but no event showed (see engine.unseen_kfpu_save)
    xs = T[:, TF_XS:TF_XS + NCAUSE].sum(axis=1) + T[:, TF_XS_UNSEEN]
    xr = T[:, TF_XR:TF_XR + NCAUSE].sum(axis=1)
    PT = model._PT[rp, :n]
    diff = np.abs(PT[:, PF_XSAVE] - xs).sum() + np.abs(PT[:, PF_XRSTOR] - xr).sum()
    total = xs.sum() + xr.sum()
    if total == 0:
        return 1.0 if diff == 0 else 0.0
    return float(max(0.0, 1.0 - diff / total))


def policy_totals(model, cost: CostModel, names=None) -> pd.DataFrame:
    n = model.ntasks
    rows = []
    for i, p in enumerate(model.policies):
        if names is not None and p.name not in names:
            continue
        PT = model._PT[i, :n]
        xs, xr = int(PT[:, PF_XSAVE].sum()), int(PT[:, PF_XRSTOR].sum())
        rows.append({"policy": p.name, "xsave": xs, "xrstor": xr,
                     "avoidable_xrstor": int(PT[:, PF_AVOID].sum()),
                     "bytes": int(PT[:, PF_BYTES].sum()), "cycles": cost.cycles(xs, xr)})
    return pd.DataFrame(rows, columns=["policy", "xsave", "xrstor", "avoidable_xrstor", "bytes",
                                       "cycles"]).set_index("policy")


def notes(model) -> list[str]:
    S = model._S
    out = []
    if model.recorded_policy is None:
        out.append("recorded policy unknown (no recorded_policy / kernel_release): self-check "
                   "unavailable; causes read as on a deferred kernel")
    if S[S_UR_ASSUMED]:
        out.append("returns to user mode are not observable in this trace: the replay assumes one "
                   "before each switch-out and kernel FPU use, so deferred savings are a lower bound")
    elif not S[S_HAS_UR_EVENTS]:
        out.append("returns to user mode derived from the kernel's own saves and restores "
                   "(tracepoint mode)")
    if S[S_INFERRED]:
        out.append("kernel FPU sections inferred from TIF_NEED_FPU_LOAD, one per syscall: eager "
                   "counts are a lower bound")
    if S[S_UNSEEN_SAVES]:
        out.append(f"{int(S[S_UNSEEN_SAVES])} kernel-FPU save(s) no event showed were inferred from "
                   "switch-outs that found the registers already saved; the replays include them, "
                   "the measured counts do not")
    if S[S_UNEXPLAINED]:
        out.append(f"{int(S[S_UNEXPLAINED])} restore(s) without an observed cause were replayed "
                   "as an unseen kernel SIMD user invalidating the registers")
    if S[S_LOST]:
        out.append(f"{int(S[S_LOST])} events lost: CPUs were unknown until re-synchronised")
    out.append("cycles = count x cycles per instruction (calibrated with all enabled components "
               "dirty: an upper bound for smaller saves)")
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


def build_estimate(model, cost: CostModel) -> Estimate:
    names = [p.name for p in model.requested]
    n = model.ntasks
    T = model._T[:n]
    xs = int(T[:, TF_XS:TF_XS + NCAUSE].sum())
    xr = int(T[:, TF_XR:TF_XR + NCAUSE].sum())
    measured = {"xsave": xs, "xrstor": xr,
                "bytes": int(T[:, TF_XS_BYTES].sum() + T[:, TF_XR_BYTES].sum()),
                "cycles": cost.cycles(xs, xr)}
    return Estimate(policies=policy_totals(model, cost, names), measured=measured,
                    recorded_policy=model.recorded_policy, self_check=self_check(model),
                    cost_model_name=cost.name, cost_model=cost.to_dict(), notes=notes(model))
