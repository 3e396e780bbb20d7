"""The four properties checked at every guest entry (DESIGN.md §5), each named after what it
forbids so that a violation says which fact broke."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from formal import arch, roles

if TYPE_CHECKING:
    from formal.kvm import Mechanism
    from formal.state import Vcpu

PROPERTIES = ("role", "pgd", "freshness", "metadata")


class ModelError(Exception):
    """The model contradicts itself (a policy spec and the architecture disagree, or KVM enters
    the guest without a root): a bug in a spec or in the model, never a verdict."""


@dataclass(frozen=True)
class Violation:
    prop: str
    message: str


@dataclass(frozen=True)
class StaleCause:
    """Where a root's (or hardware context's) translation became one the architecture forbids."""

    event: int
    why: str


def check(policy: Mechanism, v: Vcpu, causes: dict[object, StaleCause] | None,
          props: tuple[str, ...] = PROPERTIES) -> list[Violation]:
    """All violated properties at this guest entry, in PROPERTIES order."""
    out = []
    root = v.mmu.root
    which = "guest_mmu" if v.mmu_is_guest else "root_mmu"
    if not root.valid:
        raise ModelError("no valid root after kvm_mmu_reload")
    if "role" in props:
        want = policy.calc_root_role(v)
        if root.role != want:
            out.append(Violation("role", (
                f"{which} root pgd={root.pgd:#x} has role {roles.describe(root.role)} but the "
                f"registers need {roles.describe(want)}")))
    if "pgd" in props and not roles.is_direct(root.role):
        want_pgd = v.nested_pgd if v.mmu_is_guest else v.regs.cr3
        if root.pgd != want_pgd:
            out.append(Violation("pgd", (
                f"{which} root pgd={root.pgd:#x} is active but the guest's "
                f"{'EPTP/nCR3' if v.mmu_is_guest else 'CR3'} is {want_pgd:#x}")))
    if "freshness" in props:
        out += _freshness(v, root, causes)
    if "metadata" in props:
        want = policy.calc_cpu_role(v)
        have = v.walk_cpu_role
        if have != want:
            out.append(Violation("metadata", (
                f"KVM walks guest tables with cpu_role {roles.describe(have)} "
                f"(ext {have >> 32:#x}) but the registers give {roles.describe(want)} "
                f"(ext {want >> 32:#x})")))
    return out


def _freshness(v: Vcpu, root, causes: dict[object, StaleCause] | None) -> list[Violation]:
    cur = arch.tag(v)
    wva = f"VA {arch.WATCHED_VA:#x}"
    if not roles.is_direct(root.role) and (root.unsync or root.hw_old):
        where = "its out-of-sync shadow entries" if root.unsync else \
            "the hardware TLB's copy of its old shadow entries"
        cause = causes.get(root_key(root)) if causes is not None else None
        if root.stale:
            since = f" since {cause.why} at event {cause.event}" if cause else ""
            return [Violation("freshness", (
                f"root pgd={root.pgd:#x} reused: {where} for {wva} are stale{since}"))]
        if root.tag != cur:
            return [Violation("freshness", (
                f"root pgd={root.pgd:#x} serves {where} for {wva}, cached under tag "
                f"{root.tag:#x}, under tag {cur:#x} where they were never cached"))]
    ctx = 1 if v.guest_mode else 0
    hw = v.hw[ctx]
    if hw.stale and (hw.any_tag or hw.tag == cur):
        cause = causes.get(("hw", ctx)) if causes is not None else None
        after = f" since {cause.why} at event {cause.event}" if cause else ""
        return [Violation("freshness", (
            f"the guest's hardware TLB context ({'L2' if ctx else 'L1'}) may still hold an old "
            f"translation of {wva}{after}: KVM did not flush it"))]
    return []


def root_key(root) -> tuple[int, int]:
    return (root.pgd, root.role)
