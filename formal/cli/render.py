"""Human and JSON renderings of runs: state / event / what KVM did / changed fields."""

from __future__ import annotations

import json
from pathlib import Path

from formal import solvers
from formal.cli.prove import Proof
from formal.engines.search import Verdict
from formal.model import trace
from formal.model.machine import StepRecord
from formal.model.simulate import Run
from formal.model.trace import event_to_json


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


def outcome_text(out: Run) -> str:
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


def outcome_json(out: Run) -> dict[str, object]:
    res: dict[str, object] = {
        "policy": out.trace.policy, "config": out.trace.config,
        "verdict": "violated" if out.violated else "holds",
        "steps": [record_json(r) for r in out.records],
    }
    if out.violation:
        idx, viol = out.violation
        res["violation"] = {"event": idx, "property": viol.prop, "message": viol.message}
    return res


def proof_text(proof: Proof, cex_path: Path | None) -> str:
    """A prove result for a kernel developer: the obligation, what symbolic execution and the
    vacuity checks found, the verdict, and for a refutation the counterexample as a trace run
    (the simulation that confirmed it)."""
    r, ob, cex = proof.result, proof.obligation, proof.counterexample
    lines = [f"flushproof prove: policy {ob.policy}, config {ob.config}, properties "
             f"{', '.join(ob.props)}, engine {ob.engine}"]
    only = ""
    if ob.events is not None:
        lines.append(f"events: only {', '.join(ob.events)} (the environment is restricted: "
                     "a verdict covers executions of these events only)")
        only = f" (for executions of {', '.join(ob.events)} only)"
    paths = ", ".join(f"{k} {n}" for k, n in proof.paths.items())
    lines.append(f"symbolic execution: paths per handler: {paths}")
    if proof.vacuity:
        lines.append("vacuity: FAILED: " + "; ".join(proof.vacuity))
    elif "vacuity" in proof.times:
        lines.append("vacuity: ok (initial states exist, every event is enabled within the "
                     "bound, every property can be violated in some state)")
    if r.verdict == Verdict.REFUTED:
        assert cex is not None and cex.violation is not None
        index, prop, message = cex.violation
        lines.append(f"verdict: REFUTED by {r.engine}: {prop} violated at event {index}, "
                     f"{r.bound} events (bmc found none shorter)")
        lines.append(f"  {message}")
    elif r.verdict == Verdict.PROVED:
        lines.append(f"verdict: PROVED by {r.engine}{only}: {r.certificate}")
    elif r.verdict == Verdict.BOUNDED:
        lines.append(f"verdict: bounded({r.bound}){only}: no violation within {r.bound} events; "
                     f"NOT a proof{': ' + r.reason if r.reason else ''}")
    else:
        lines.append(f"verdict: UNKNOWN: {r.reason}")
    if cex is not None:
        if cex.run is not None:
            lines.append("")
            lines.append(outcome_text(cex.run).rstrip("\n"))
        lines.append("")
        lines.append(f"counterexample written to {cex_path} "
                     f"(flushproof simulate {cex_path} replays it)")
        if cex.replay is not None:
            lines.append(f"concrete replay: {cex.replay}")
    lines.append("times: " + ", ".join(f"{k} {v:.1f}s" for k, v in proof.times.items()))
    return "\n".join(lines) + "\n"


def proof_json(proof: Proof, cex_path: Path | None) -> dict[str, object]:
    r, ob, cex = proof.result, proof.obligation, proof.counterexample
    viol = None if cex is None else cex.violation
    return {
        "policy": ob.policy, "config": ob.config, "properties": list(ob.props),
        "events": None if ob.events is None else list(ob.events),
        "verdict": r.label, "engine": r.engine, "bound": r.bound, "reason": r.reason,
        "violation": None if viol is None else {
            "event": viol[0], "property": viol[1], "message": viol[2]},
        "certificate": r.certificate or None,
        "checker": {"solver": r.checker, "queries": r.checked} if r.checker else None,
        "vacuity": {"ok": not proof.vacuity, "failures": proof.vacuity},
        "paths": proof.paths, "times": proof.times, "solvers": solvers.versions(),
        "trace": None if cex is None else json.loads(trace.dumps(cex.trace)),
        "trace_file": None if cex_path is None else str(cex_path),
        "replay": None if cex is None or cex.replay is None else str(cex.replay),
    }
