"""Human and JSON renderings of runs: state / event / what KVM did / changed fields."""

from __future__ import annotations

from formal.machine import StepRecord
from formal.simulate import Outcome
from formal.trace import event_to_json


def _regs(r) -> str:
    return f"cr0={r.cr0:#x} cr3={r.cr3:#x} cr4={r.cr4:#x} efer={r.efer:#x}"


def record_text(rec: StepRecord) -> list[str]:
    head = "initial" if rec.event is None else f"[{rec.index}] {rec.event.describe()}"
    lines = [head]
    if rec.event is None:
        lines.append(f"    regs: {_regs(rec.state.regs)}")
    if rec.fault:
        lines.append(f"    {rec.fault} (no state change)")
    for act in rec.actions:
        lines.append(f"    kvm: {act}")
    for ch in rec.changed:
        lines.append(f"    ~ {ch}")
    for viol in rec.violations:
        lines.append(f"    VIOLATION {viol.prop}: {viol.message}")
    return lines


def outcome_text(out: Outcome) -> str:
    t = out.trace
    lines = [f"policy {t.policy}, config {t.config}, {len(t.events)} events"]
    if t.description:
        lines.append(t.description)
    for rec in out.records:
        lines += record_text(rec)
    if out.violation:
        idx, viol = out.violation
        lines.append(f"FAIL: {viol.prop}: {viol.message} (at event {idx})")
    else:
        lines.append(f"PASS: no property violated in {len(t.events)} events")
    return "\n".join(lines) + "\n"


def record_json(rec: StepRecord) -> dict[str, object]:
    return {
        "index": rec.index,
        "event": None if rec.event is None else event_to_json(rec.event),
        "fault": rec.fault,
        "kvm": rec.actions,
        "changed": rec.changed,
        "violations": [{"property": x.prop, "message": x.message} for x in rec.violations],
        "regs": {k: f"{getattr(rec.state.regs, k):#x}" for k in ("cr0", "cr3", "cr4", "efer")},
    }


def outcome_json(out: Outcome) -> dict[str, object]:
    res: dict[str, object] = {
        "policy": out.trace.policy, "config": out.trace.config,
        "verdict": "violated" if out.violated else "holds",
        "steps": [record_json(r) for r in out.records],
    }
    if out.violation:
        idx, viol = out.violation
        res["violation"] = {"event": idx, "property": viol.prop, "message": viol.message}
    return res
