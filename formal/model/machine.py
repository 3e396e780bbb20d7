"""Runs events on the model: the architecture's verdict, KVM's handler, guest entry, the
properties (docs/design.md §5)."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from formal.model import arch, properties
from formal.model import events as ev
from formal.model.properties import ModelError, StaleCause, Violation, root_key
from formal.model.state import DEFAULT_PAGE, HwTlb, Page, Regs, Vcpu
from formal.model.values import is_symbolic

if TYPE_CHECKING:
    from formal.model.kvm import Mechanism

# Runs one action of a step (applying invalidations, KVM's handler) with the invalidations
# behind it, so that a caller can watch what the action changed.
Tracker = Callable[[Callable[[], None], tuple[arch.Inval, ...]], None]

# The note of an event the hardware executed itself (Mechanism.intercepted).
NATIVE = "executed by the hardware (not intercepted)"


@dataclass
class StepRecord:
    """One event and everything that happened because of it: the registers after it and the
    fields it changed (not a copy of the whole state, so that a record costs what it says)."""

    index: int
    event: ev.Event | None
    fault: str | None
    actions: list[str]
    violations: list[Violation]
    regs: Regs
    changed: list[str] = field(default_factory=list)
    # What KVM did for the event, by formal.model.kvm work key (Mechanism.work).
    work: dict[str, int] = field(default_factory=dict)


def execute(policy: Mechanism, v: Vcpu, e: ev.Event, props: tuple[str, ...],
            track: Tracker | None = None,
            causes: dict[object, StaleCause] | None = None) -> tuple[str | None, list[Violation]]:
    """One event on v (mutated in place): the architecture's verdict, the invalidations it
    requires applied to the ghost state, KVM's handler (or the hardware, for an instruction KVM
    does not intercept), then guest entry and the properties.  Returns the fault, if any, and
    the violated properties."""
    a = arch.step(policy.cfg, v, e)
    if a.fault:
        return a.fault, []
    run = track or (lambda action, invals: action())
    if not policy.intercepted(v, e):
        run(lambda: policy.apply_invalidations(v, a.invals, True), a.invals)
        v.regs = copy.copy(a.regs)
        if not is_symbolic():
            policy.note(NATIVE)
    else:
        run(lambda: policy.apply_invalidations(v, a.invals, False), a.invals)
        run(lambda: policy.handle(v, e), ())
        if not v.regs.same(a.regs):
            raise ModelError(
                f"{policy.name} left registers {_regs(v.regs)} but the architecture gives "
                f"{_regs(a.regs)}")
    return None, enter(policy, v, props, causes)


def enter(policy: Mechanism, v: Vcpu, props: tuple[str, ...],
          causes: dict[object, StaleCause] | None) -> list[Violation]:
    """Guest entry: KVM services its requests and reloads, the properties are checked, and the
    guest runs on the active root."""
    policy.vcpu_enter_guest(v)
    violations = properties.check(policy, v, causes, props)
    policy.mark_active(v)
    return violations


class Machine:
    """A vCPU under one policy in one configuration, run on concrete values, remembering why
    roots became stale so that a violation can say so."""

    def __init__(self, policy: Mechanism, initial: Regs,
                 props: tuple[str, ...] = properties.PROPERTIES,
                 page: Page = DEFAULT_PAGE) -> None:
        self.policy = policy
        self.props = props
        self.causes: dict[object, StaleCause] = {}
        self.flushes: dict[object, StaleCause] = {}
        self.v = arch.watching(initial, page)

    def start(self) -> StepRecord:
        """Initial state: KVM's MMU set up for the registers, then the first guest entry."""
        before = _flatten(self.v)  # what the diff needs, not a copy of the vCPU
        self.policy.log = []
        self.policy.work.clear()
        self.policy.start(self.v)
        viol = enter(self.policy, self.v, self.props, self.causes)
        return self._record(-1, None, None, viol, before)

    def step(self, index: int, e: ev.Event) -> StepRecord:
        before = _flatten(self.v)  # what the diff needs, not a copy of the vCPU
        self.policy.log = []
        self.policy.work.clear()
        try:
            fault, viol = execute(self.policy, self.v, e, self.props,
                                  lambda action, invals: self._track(index, action, invals),
                                  self.causes)
        except ModelError as exc:
            raise ModelError(f"event {index} ({e.op}): {exc}") from None
        return self._record(index, e, fault, viol, before)

    def _record(self, index: int, e: ev.Event | None, fault: str | None,
                viol: list[Violation], before: dict[str, object]) -> StepRecord:
        regs = self.v.regs
        return StepRecord(index, e, fault, list(self.policy.log), viol,
                          Regs(regs.cr0, regs.cr3, regs.cr4, regs.efer),
                          changed=_changes(before, _flatten(self.v), self.v),
                          work=dict(self.policy.work))

    def _track(self, index: int, action, invals: tuple[arch.Inval, ...]) -> None:
        """Run action and remember why each root or hardware context it touched became stale,
        and why each root's translations left the TLB (for the report)."""
        v = self.v
        was = {root_key(r): (r.stale, r.live) for r in v.all_roots() if r.valid}
        hw_was = {(ctx, h.tag): _hw_stale(h) for ctx, records in enumerate(v.hw) for h in records}
        action()
        why = "; ".join(i.why for i in invals)
        for r in v.all_roots():
            if not r.valid:
                continue
            stale0, live0 = was.get(root_key(r), (False, False))
            if r.stale and not stale0:
                if why:
                    self.causes[root_key(r)] = StaleCause(index, why)
                else:
                    flushed = self.flushes.get(root_key(r))
                    since = f" (not cached since {flushed.why} at event {flushed.event})" \
                        if flushed else ""
                    self.causes[root_key(r)] = StaleCause(
                        index, f"the guest PTE write to tables the TLB did not hold{since}")
            if live0 and not r.live and why:
                self.flushes[root_key(r)] = StaleCause(index, why)
        for ctx, records in enumerate(v.hw):
            for h in records:
                if _hw_stale(h) and not hw_was.get((ctx, h.tag)):
                    self.causes[("hw", ctx, h.tag)] = StaleCause(
                        index, why or "a root's old entries")


def _regs(r: Regs) -> str:
    return f"cr0={r.cr0:#x} cr3={r.cr3:#x} cr4={r.cr4:#x} efer={r.efer:#x}"


def diff(a: Vcpu, b: Vcpu) -> list[str]:
    """Changed fields between two states, as 'path: old -> new' lines."""
    return _changes(_flatten(a), _flatten(b), b)


def _changes(before: dict[str, object], after: dict[str, object], b: Vcpu) -> list[str]:
    """diff, from the flattened states (the later one b's): a step flattens the state before
    it instead of copying the vCPU."""
    before = dict(before)
    # A record under a tag first used now held nothing before: compare it with a blank one.
    for ctx, records in enumerate(b.hw):
        for h in records:
            for k, blank in _hw_fields(ctx, HwTlb(tag=h.tag)).items():
                before.setdefault(k, blank)
    out: list[str] = []
    for k, new in after.items():
        old = before[k]
        if old != new:
            if isinstance(old, int) and not isinstance(old, bool):
                out.append(f"{k}: {old:#x} -> {new:#x}")
            else:
                out.append(f"{k}: {old} -> {new}")
    return out


def _flatten(v: Vcpu) -> dict[str, object]:
    flat: dict[str, object] = {}
    for name in ("smm", "guest_mode", "nested_pgd", "vpid12", "mmu_is_guest", "requests"):
        flat[name] = getattr(v, name)
    for reg in ("cr0", "cr3", "cr4", "efer"):
        flat[reg] = getattr(v.regs, reg)
    for mname in ("root_mmu", "guest_mmu"):
        m = getattr(v, mname)
        flat[f"{mname}.cpu_role"] = m.cpu_role
        flat[f"{mname}.root_role"] = m.root_role
        for i, r in enumerate([m.root] + m.prev_roots):
            slot = "root" if i == 0 else f"prev_roots[{i - 1}]"
            flat[f"{mname}.{slot}"] = _root(r)
    for ctx, records in enumerate(v.hw):
        for h in records:
            flat.update(_hw_fields(ctx, h))
    return flat


def _hw_stale(h: HwTlb) -> bool:
    return bool(h.local.any_stale() or h.glob.any_stale())


def _hw_fields(ctx: int, h: HwTlb) -> dict[str, str]:
    name = f"hw[{'L2' if ctx else 'L1'}][tag {h.tag:#x}]"
    out = {}
    for part, c in (("", h.local), (".global", h.glob)):
        out[f"{name}{part}"] = f"old stale={int(c.stale)}" if c.old else "clean"
        out[f"{name}{part}.last_entry"] = \
            f"tables={c.ran_tables:#x} stale={int(c.ran_stale)}" if c.ran else "none"
    out[f"{name}.global.excused"] = "yes" if h.excused else "no"
    return out


def _root(r) -> str:
    if not r.valid:
        return "invalid"
    ghost = [n for n in ("unsync", "unsync_elsewhere", "hw_old", "stale", "live")
             if getattr(r, n)]
    return f"pgd={r.pgd:#x} role={r.role:#x} tag={r.tag:#x} {'|'.join(ghost) or 'synced'}"
