"""Restore policies a trace can be replayed under (SPEC 5.3).

A policy is two decisions: where a task's user state is restored (eagerly at switch-in and at
``kernel_fpu_end``, or deferred to the return to user mode) and whether the validity shortcut
(``fpu_fpregs_owner_ctx == fpu && fpu->last_cpu == cpu`` -> no restore) is used. Saves follow from
that in every policy: a task's registers are saved when they are live and about to be lost (switch
out, kernel FPU use). The compiled engine implements the decisions; adding a policy is one entry.
"""
from __future__ import annotations

from dataclasses import dataclass

from fputrace.errors import UsageError


@dataclass(frozen=True)
class Policy:
    name: str
    eager_restore: bool        # restore at switch-in and kernel_fpu_end (else: on return to user)
    validity_shortcut: bool    # skip the restore when this CPU's registers still hold the state
    kernels: str
    description: str


POLICIES = {p.name: p for p in (
    Policy("eager", True, True, "Linux <= 5.1",
           "restore at switch-in and at kernel_fpu_end unless the registers are still valid"),
    Policy("deferred", False, True, "Linux >= 5.2",
           "TIF_NEED_FPU_LOAD: restore only on the way back to user mode, unless still valid"),
    Policy("deferred-novalid", False, False, "hypothetical",
           "deferred restore without the validity shortcut: every return to user mode after a "
           "switch or kernel FPU use restores (what the shortcut saves)"),
)}

DEFAULT_POLICIES = ("eager", "deferred", "deferred-novalid")


def resolve(names) -> list[Policy]:
    if isinstance(names, str):
        names = [n for n in names.split(",") if n.strip()]
    out = []
    for n in names:
        n = n.strip()
        if n not in POLICIES:
            raise UsageError(f"unknown policy {n!r}; known: {', '.join(POLICIES)}")
        if POLICIES[n] not in out:
            out.append(POLICIES[n])
    if not out:
        raise UsageError(f"no policy given; known: {', '.join(POLICIES)}")
    return out


def recorded_policy(meta: dict) -> tuple[str | None, str]:
    """The policy of the kernel that produced the trace, and how we know it."""
    rp = meta.get("recorded_policy")
    if rp in POLICIES:
        return rp, "recording metadata"
    rel = str(meta.get("kernel_release") or "")
    try:
        major, minor = (int(x) for x in rel.split("-")[0].split(".")[:2])
    except ValueError:
        return None, "unknown (no recorded_policy or kernel_release in the metadata)"
    return ("deferred" if (major, minor) >= (5, 2) else "eager"), f"kernel release {rel}"
