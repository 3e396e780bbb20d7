"""Human and JSON renderings of runs: state / event / what KVM did / changed fields."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TextIO

from formal import solvers
from formal.cli import policies
from formal.cli.prove import Proof
from formal.engines.search import Verdict
from formal.model import arch, bits, events, trace
from formal.model.machine import NATIVE, StepRecord
from formal.model.simulate import Run
from formal.model.state import CONFIGS, DEFAULT_PAGE, Page, Vendor
from formal.model.trace import event_to_json


def _regs(r) -> str:
    return f"cr0={r.cr0:#x} cr3={r.cr3:#x} cr4={r.cr4:#x} efer={r.efer:#x}"


def record_text(rec: StepRecord) -> list[str]:
    head = "initial" if rec.event is None else f"[{rec.index}] {rec.event.describe()}"
    lines = [head]
    if rec.event is None:
        lines.append(f"    regs: {_regs(rec.regs)}")
    if rec.fault:
        lines.append(f"    {rec.fault} (no state change)")
    for act in rec.actions:
        lines.append(f"    kvm: {act}")
    for ch in rec.changed:
        lines.append(f"    ~ {ch}")
    for viol in rec.violations:
        lines.append(f"    VIOLATION {viol.prop}: {viol.message}")
    return lines


def _head_text(t: trace.Trace) -> list[str]:
    lines = [f"policy {t.policy}, config {t.config}, {len(t.events)} events"]
    if t.page != DEFAULT_PAGE:
        lines.append(page_text(t.page))
    if t.description:
        lines.append(t.description)
    return lines


_SIZES = {bits.PAGE_4K: "4 KiB", bits.PAGE_2M: "2 MiB", bits.PAGE_4M: "4 MiB",
          bits.PAGE_1G: "1 GiB"}


def page_text(page: Page) -> str:
    """The watched page in words: its size and each attribute that is not a plain page's."""
    words = [_SIZES[page.size]] + [word for word, on in (
        ("global", page.global_), ("supervisor", not page.user),
        ("read-only", not page.writable), ("execute-disable", page.nx)) if on]
    return f"watched page: VA {arch.WATCHED_VA:#x}, {', '.join(words)}"


def _verdict_text(out: Run) -> str:
    if out.violation:
        idx, viol = out.violation
        return f"FAIL: {viol.prop}: {viol.message} (at event {idx})"
    return f"PASS: no property violated in {len(out.trace.events)} events"


def outcome_text(out: Run) -> str:
    lines = _head_text(out.trace)
    for rec in out.records:
        lines += record_text(rec)
    lines.append(_verdict_text(out))
    return "\n".join(lines) + "\n"


def simulate_to(t: trace.Trace, out: TextIO, as_json: bool = False, steps: bool = True) -> Run:
    """Simulate t, writing each step to out as it is made (text, or JSON whose `steps` array
    is written element by element) and then the verdict; a step is dropped once written, so
    memory does not grow with the trace.  steps=False writes the verdict only.  Nothing is
    written before the first guest entry has run (an illegal initial state prints nothing);
    a step outside the model stops the run with the steps before it written."""
    count = 0

    def write(rec: StepRecord) -> None:
        nonlocal count
        if as_json:
            if count == 0:
                out.write(_json_head(t, steps))
            if steps:
                body = json.dumps(record_json(rec), indent=1).replace("\n", "\n  ")
                out.write(body if count == 0 else ",\n  " + body)
        elif steps:
            if count == 0:
                out.write("\n".join(_head_text(t)) + "\n")
            out.write("\n".join(record_text(rec)) + "\n")
        count += 1

    run = policies.simulate(t, write)
    if not as_json:
        out.write(_verdict_text(run) + "\n")
        return run
    tail = {"verdict": "violated" if run.violated else "holds"}
    if run.violation:
        idx, viol = run.violation
        tail["violation"] = {"event": idx, "property": viol.prop, "message": viol.message}
    out.write(("\n ]," if steps else ",") + json.dumps(tail, indent=1)[1:] + "\n")
    return run


def record_json(rec: StepRecord) -> dict[str, object]:
    return {
        "index": rec.index,
        "event": None if rec.event is None else event_to_json(rec.event),
        "fault": rec.fault,
        "kvm": rec.actions,
        "changed": rec.changed,
        "violations": [{"property": x.prop, "message": x.message} for x in rec.violations],
        "regs": {k: f"{getattr(rec.regs, k):#x}" for k in ("cr0", "cr3", "cr4", "efer")},
    }


def _json_head(t: trace.Trace, steps: bool) -> str:
    head = (f'{{\n "policy": {json.dumps(t.policy)},\n "config": {json.dumps(t.config)},\n'
            f' "page": {json.dumps(trace.page_to_json(t.page))}')
    return head + (',\n "steps": [\n  ' if steps else "")


def caveats(run: Run) -> list[str]:
    """What a counterexample's reader must know about events the model hands to KVM that KVM
    may never see: on an EPT host, L1's MOV CR4 changing only bits the guest owns
    (specs/common.py `intercepted` runs L2's on the hardware, and keeps L1's as KVM's)."""
    cfg = CONFIGS[run.trace.config]
    if not (cfg.tdp_enabled and cfg.vendor == Vendor.INTEL):
        return []
    out = []
    before = run.trace.initial.cr4
    for rec in run.records:
        e = rec.event
        if rec.fault is None and NATIVE not in rec.actions and isinstance(e, events.MovCr4):
            changed = before ^ rec.regs.cr4
            if changed and not changed & ~bits.CR4_GUEST_OWNED_EPT:
                out.append(
                    f"event {rec.index}: this MOV CR4 changes only bits the guest owns on an "
                    f"EPT host ({changed:#x}; vmx.c set_cr4_guest_host_mask), so it does not "
                    "exit: KVM's handler runs for it only when KVM's emulator runs the "
                    "instruction. The same write changing a bit KVM always intercepts too "
                    "(CR4.OSXSAVE) reaches it (specs/common.py `intercepted`).")
        before = rec.regs.cr4
    return out


def proof_text(proof: Proof, cex_path: Path | None) -> str:
    """A prove result for a kernel developer: the obligation, what symbolic execution and the
    vacuity checks found, the verdict, and for a refutation the counterexample as a trace run
    (the simulation that confirmed it)."""
    r, ob, cex = proof.result, proof.obligation, proof.counterexample
    lines = [f"flushproof prove: policy {ob.policy}, config {ob.config}, properties "
             f"{', '.join(ob.props)}, engine {ob.engine}"]
    if ob.base is not None:
        lines.append(f"differential: the violations {ob.policy} has at an event where "
                     f"{ob.base} has none (the two run in lockstep on the same events)")
    whole = proof.alone == ob.props
    if proof.alone and not whole:
        rest = [p for p in ob.props if p not in proof.alone]
        lines.append(f"{', '.join(proof.alone)}: {ob.policy} alone has none (its stored "
                     f"certificate, re-checked), so none {ob.base} lacks; the product decides "
                     f"{', '.join(rest)}")
    only = ""
    if ob.events is not None:
        lines.append(f"events: only {', '.join(ob.events)} (the environment is restricted: "
                     "a verdict covers executions of these events only)")
        only = f" (for executions of {', '.join(ob.events)} only)"
    paths = ", ".join(f"{k} {n}" for k, n in proof.paths.items())
    source = " (the cached relation)" if proof.cached else ""
    if whole:
        source += f" of {ob.policy} alone"
    lines.append(f"symbolic execution{source}: paths per handler: {paths}")
    if proof.vacuity:
        lines.append("vacuity: FAILED: " + "; ".join(proof.vacuity))
    elif "vacuity" in proof.times:
        lines.append("vacuity: ok (initial states exist, every event is enabled within the "
                     "bound, every property can be violated in some state)")
    if proof.stored:
        lines.append(f"certificate store: {proof.stored}")
    if r.verdict == Verdict.REFUTED:
        assert cex is not None and cex.violation is not None
        index, prop, message = cex.violation
        where = f" where {ob.base} has none" if ob.base is not None else ""
        lines.append(f"verdict: REFUTED by {r.engine}: {prop} violated at event {index}{where}, "
                     f"{r.bound} events (bmc found none shorter)")
        lines.append(f"  {message}")
    elif r.verdict == Verdict.PROVED:
        adds = f" ({ob.policy} adds no violation over {ob.base})" if ob.base is not None else ""
        lines.append(f"verdict: PROVED by {r.engine}{only}{adds}: {r.certificate}")
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
        src = policies.source(ob.policy)
        again = f" --policy-file {src}" if src else ""
        if cex_path is None:
            lines.append("counterexample: not written to a file (the trace is the run above)")
        else:
            lines.append(f"counterexample written to {cex_path} "
                         f"(flushproof simulate {cex_path}{again} replays it)")
        if cex.replay is not None:
            lines.append(f"concrete replay: {cex.replay}")
        if cex.run is not None:
            lines += [f"caveat: {c}" for c in caveats(cex.run)]
    lines.append("times: " + ", ".join(f"{k} {v:.1f}s" for k, v in proof.times.items()))
    return "\n".join(lines) + "\n"


def proof_json(proof: Proof, cex_path: Path | None) -> dict[str, object]:
    r, ob, cex = proof.result, proof.obligation, proof.counterexample
    viol = None if cex is None else cex.violation
    return {
        "policy": ob.policy, "base": ob.base, "config": ob.config,
        "properties": list(ob.props),
        "events": None if ob.events is None else list(ob.events),
        "verdict": r.label, "engine": r.engine, "bound": r.bound, "reason": r.reason,
        "violation": None if viol is None else {
            "event": viol[0], "property": viol[1], "message": viol[2]},
        "certificate": r.certificate or None,
        "checker": {"solver": r.checker, "queries": r.checked, "by": r.by}
        if r.checker else None,
        "stored": proof.stored or None, "relation_cached": proof.cached,
        "alone": list(proof.alone),
        "vacuity": {"ok": not proof.vacuity, "failures": proof.vacuity},
        "paths": proof.paths, "times": proof.times, "solvers": solvers.versions(),
        "trace": None if cex is None else json.loads(trace.dumps(cex.trace)),
        "trace_file": None if cex_path is None else str(cex_path),
        "replay": None if cex is None or cex.replay is None else str(cex.replay),
        "caveats": [] if cex is None or cex.run is None else caveats(cex.run),
    }


def converse_text(proof: Proof) -> str:
    """The converse of a differential obligation, in a few lines: the violations the patch
    removes (the base's, at events where the patched policy has none)."""
    r, ob, cex = proof.result, proof.obligation, proof.counterexample
    head = f"converse: violations of {ob.policy} that {ob.base} removes: "
    rest = [p for p in ob.props if p not in proof.alone]
    if proof.alone and rest:  # the verdict below is about the rest
        head += (f"none of {', '.join(proof.alone)} ({ob.policy} alone has none); of "
                 f"{', '.join(rest)}: ")
    if r.verdict == Verdict.REFUTED and cex is not None and cex.violation is not None:
        index, prop, message = cex.violation
        events = "; ".join(e.describe() for e in cex.trace.events)
        return (f"{head}{prop} at event {index} ({r.bound} events: {events})\n"
                f"  {message}\n")
    if r.verdict == Verdict.PROVED:
        how = f"{ob.policy} alone has none, proved by {r.engine}" if not rest else \
            f"proved by {r.engine}"
        return f"{head}none ({how})\n"
    if r.verdict == Verdict.BOUNDED:
        return f"{head}none within {r.bound} events (bounded, not a proof)\n"
    return f"{head}unknown: {r.reason}\n"
