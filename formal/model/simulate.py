"""Concrete simulation of a trace under a policy: the `flushproof simulate` command's engine."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from formal.errors import NotModeled
from formal.model import arch
from formal.model.kvm import Mechanism
from formal.model.machine import Machine, StepRecord
from formal.model.properties import Violation
from formal.model.scope import initial_not_modeled, not_modeled
from formal.model.state import CONFIGS
from formal.model.trace import Trace


@dataclass
class Run:
    """A simulated trace: a record per guest entry (unless the caller took them as they came),
    and the first violation, if any."""

    trace: Trace
    records: list[StepRecord]
    violation: tuple[int, Violation] | None

    @property
    def violated(self) -> bool:
        return self.violation is not None


def check_initial(trace: Trace) -> None:
    """Raise NotModeled if the trace's initial state is outside the model."""
    err = arch.sregs_error(trace.initial)
    if err:
        raise NotModeled(f"initial: registers are not a legal state: {err}")
    why = initial_not_modeled(arch.watching(trace.initial, trace.page))
    if why:
        raise NotModeled(f"initial: {why}")


def run(trace: Trace, policy_cls: type[Mechanism], stop_at_violation: bool = True,
        on_record: Callable[[StepRecord], None] | None = None) -> Run:
    """Run every event of trace under policy_cls, stopping at the first violated property
    unless told not to (the first one is the Run's violation either way).  Raises NotModeled,
    naming the event, for a step outside the model.  With on_record, each record goes to it as
    it is made and none is kept (Run.records is empty): memory then does not grow with the
    trace."""
    policy = policy_cls(CONFIGS[trace.config])
    check_initial(trace)
    m = Machine(policy, trace.initial, page=trace.page)
    records: list[StepRecord] = []
    keep = records.append if on_record is None else on_record
    start = m.start()
    keep(start)
    first = (-1, start.violations[0]) if start.violations else None
    if first and stop_at_violation:
        return Run(trace, records, first)
    for i, e in enumerate(trace.events):
        why = not_modeled(policy.cfg, m.v, e)
        if why:
            raise NotModeled(f"event {i} ({e.op}): {why}")
        try:
            rec = m.step(i, e)
        except NotModeled as exc:
            raise NotModeled(f"event {i} ({e.op}): {exc}") from None
        keep(rec)
        if rec.violations and first is None:
            first = (i, rec.violations[0])
            if stop_at_violation:
                break
    return Run(trace, records, first)
