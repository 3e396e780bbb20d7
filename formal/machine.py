"""Runs events on the model: the architecture's verdict, KVM's handler, guest entry, the
properties (DESIGN.md §5)."""

from __future__ import annotations

from dataclasses import dataclass, field

from formal import arch, properties
from formal import events as ev
from formal.properties import StaleCause, Violation, root_key
from formal.state import Regs, Vcpu


class ModelError(Exception):
    """The policy and the architecture disagree about registers: a bug in a spec."""


@dataclass
class StepRecord:
    """One event and everything that happened because of it."""

    index: int
    event: ev.Event | None
    fault: str | None
    actions: list[str]
    violations: list[Violation]
    state: Vcpu
    changed: list[str] = field(default_factory=list)


class Machine:
    """A vCPU under one policy in one configuration."""

    def __init__(self, policy, initial: Regs,
                 props: tuple[str, ...] = properties.PROPERTIES) -> None:
        self.policy = policy
        self.props = props
        self.causes: dict[object, StaleCause] = {}
        self.flushes: dict[object, StaleCause] = {}
        self.v = Vcpu(regs=Regs(initial.cr0, initial.cr3, initial.cr4, initial.efer))

    def start(self) -> StepRecord:
        """Initial state: KVM's MMU set up for the registers, then the first guest entry."""
        self.policy.log = []
        self.policy.start(self.v)
        return self._enter(-1, None, None, self.v.clone())

    def step(self, index: int, e: ev.Event) -> StepRecord:
        cfg, v = self.policy.cfg, self.v
        before = v.clone()
        self.policy.log = []
        a = arch.step(cfg, v, e)
        if a.fault:
            return StepRecord(index, e, a.fault, [], [], v.clone())
        if not self.policy.intercepted(v, e):
            self._track(index, lambda: self.policy.apply_invalidations(v, a.invals, True),
                        a.invals)
            v.regs = a.regs
            self.policy.note("executed by the hardware (not intercepted)")
            return self._enter(index, e, None, before)
        self._track(index, lambda: self.policy.apply_invalidations(v, a.invals, False), a.invals)
        self._track(index, lambda: self.policy.handle(v, e), ())
        if v.regs != a.regs:
            raise ModelError(
                f"event {index} ({e.op}): {self.policy.name} left registers {_regs(v.regs)} "
                f"but the architecture gives {_regs(a.regs)}")
        return self._enter(index, e, None, before)

    def _enter(self, index: int, e: ev.Event | None, fault: str | None,
               before: Vcpu) -> StepRecord:
        v = self.v
        self.policy.vcpu_enter_guest(v)
        violations = properties.check(self.policy, v, self.causes, self.props)
        self.policy.mark_active(v)
        return StepRecord(index, e, fault, list(self.policy.log), violations, v.clone(),
                          changed=diff(before, v))

    def _track(self, index: int, action, invals: tuple[arch.Inval, ...]) -> None:
        """Run action and remember why each root or hardware context it touched became stale,
        and why each root's translations left the TLB (for the report)."""
        v = self.v
        was = {root_key(r): (r.stale, r.live) for r in v.all_roots() if r.valid}
        hw_was = [h.stale for h in v.hw]
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
        for ctx, h in enumerate(v.hw):
            if h.stale and not hw_was[ctx]:
                self.causes[("hw", ctx)] = StaleCause(index, why or "a root's old entries")


def _regs(r: Regs) -> str:
    return f"cr0={r.cr0:#x} cr3={r.cr3:#x} cr4={r.cr4:#x} efer={r.efer:#x}"


def diff(a: Vcpu, b: Vcpu) -> list[str]:
    """Changed fields between two states, as 'path: old -> new' lines."""
    out: list[str] = []
    _diff("", _flatten(a), _flatten(b), out)
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
    for ctx, h in enumerate(v.hw):
        flat[f"hw[{'L2' if ctx else 'L1'}]"] = (
            f"old stale={int(h.stale)} tag={'any' if h.any_tag else hex(h.tag)}" if h.old
            else "clean")
    return flat


def _root(r) -> str:
    if not r.valid:
        return "invalid"
    ghost = [n for n in ("unsync", "hw_old", "stale", "live") if getattr(r, n)]
    return f"pgd={r.pgd:#x} role={r.role:#x} tag={r.tag:#x} {'|'.join(ghost) or 'synced'}"


def _diff(prefix: str, a: dict, b: dict, out: list[str]) -> None:
    for k in a:
        if a[k] != b[k]:
            old, new = a[k], b[k]
            if isinstance(old, int) and not isinstance(old, bool):
                out.append(f"{k}: {old:#x} -> {new:#x}")
            else:
                out.append(f"{k}: {old} -> {new}")
