"""Concrete simulation of a trace: the `flushproof simulate` command's engine."""

from __future__ import annotations

from dataclasses import dataclass

from formal import arch
from formal import events as ev
from formal.machine import Machine, StepRecord
from formal.properties import Violation
from formal.state import CONFIGS, Config
from formal.trace import Trace
from specs import POLICIES
from specs.common import Unsupported


class NotModeled(Exception):
    """The trace reaches a situation the model does not cover; the message says which."""


@dataclass
class Outcome:
    trace: Trace
    records: list[StepRecord]
    violation: tuple[int, Violation] | None

    @property
    def violated(self) -> bool:
        return self.violation is not None


def _not_modeled(cfg: Config, v, e: ev.Event) -> str | None:
    if isinstance(e, ev.Smi) and v.smm:
        return "an SMI while in SMM is latched, not taken"
    if isinstance(e, (ev.Smi, ev.Init)) and v.guest_mode:
        return f"{e.op} while L2 runs (a nested VM exit to L1 first) is not modeled"
    if isinstance(e, ev.Init) and v.smm:
        return "INIT is blocked in SMM"
    if isinstance(e, (ev.VmEntry, ev.VmExit, ev.Invvpid, ev.Invlpga)) and v.smm:
        return f"{e.op} in SMM is not modeled"
    if isinstance(e, ev.VmEntry) and cfg.nested == "svm" and e.vpid > 0xFFFF:
        # The VMCB's ASID field is 32 bits, but KVM tells L1 it has 8 ASIDs (cpuid.c, CPUID
        # 0x8000000A EBX = 8): the model's tags (arch.tag) cover every ASID up to 0xFFFF.
        return "an L2 ASID above 0xFFFF is not modeled (KVM gives L1 8 ASIDs)"
    return None


def run(trace: Trace, stop_at_violation: bool = True) -> Outcome:
    """Run every event; stop at the first violated property."""
    policy = POLICIES[trace.policy](CONFIGS[trace.config])
    err = arch.sregs_error(trace.initial)
    if err:
        raise NotModeled(f"initial: registers are not a legal state: {err}")
    m = Machine(policy, trace.initial)
    records = [m.start()]
    if records[0].violations:
        return Outcome(trace, records, (-1, records[0].violations[0]))
    for i, e in enumerate(trace.events):
        why = _not_modeled(policy.cfg, m.v, e)
        if why:
            raise NotModeled(f"event {i} ({e.op}): {why}")
        try:
            rec = m.step(i, e)
        except Unsupported as exc:
            raise NotModeled(f"event {i} ({e.op}): {exc}") from None
        records.append(rec)
        if rec.violations and stop_at_violation:
            return Outcome(trace, records, (i, rec.violations[0]))
    return Outcome(trace, records, None)
