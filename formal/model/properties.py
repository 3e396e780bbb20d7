"""The four properties checked at every guest entry (docs/design.md §5), each named after what it
forbids so that a violation says which fact broke."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from formal.model import arch, roles
from formal.model.values import iff, is_symbolic, neg, truth

if TYPE_CHECKING:
    from formal.model.kvm import Mechanism
    from formal.model.state import HwTlb, Vcpu

PROPERTIES = ("role", "pgd", "freshness", "metadata")


class ModelError(Exception):
    """The model contradicts itself (a policy spec and the architecture disagree, or KVM enters
    the guest without a root): a bug in a spec or in the model, never a verdict."""


@dataclass(frozen=True)
class Violation:
    """A violated property.  Under symbolic execution every checked property is returned with
    `when`, the condition under which it is violated, and no message."""

    prop: str
    message: str
    when: object = True


@dataclass(frozen=True)
class StaleCause:
    """Where a root's (or hardware context's) translation became one the architecture forbids."""

    event: int
    why: str


def conditions(policy: Mechanism, v: Vcpu) -> dict[str, object]:
    """Per property, whether this guest entry violates it: one definition for both the
    concrete simulator (bools) and symbolic execution (terms), written without branches."""
    root = v.mmu.root
    indirect = neg(roles.is_direct(root.role))
    want_pgd = v.nested_pgd if v.mmu_is_guest else v.regs.cr3
    return {
        "role": root.role != policy.calc_root_role(v),
        "pgd": indirect & (root.pgd != want_pgd),
        "freshness": _stale_root(policy, v) | _stale_hw(policy, v, 0) | _stale_hw(policy, v, 1),
        "metadata": v.walk_cpu_role != policy.calc_cpu_role(v),
    }


def _stale_root(policy: Mechanism, v: Vcpu) -> object:
    """The active root serves an old translation that is stale, or (for a root shadowing the
    guest's linear-address tables) that was cached under another tag than the current one.
    A guest_mmu root shadows L1's EPT/NPT tables: its guest-physical translations carry no
    PCID, so the tag does not apply (SDM Vol. 3C, EPT "Information That May Be Cached":
    guest-physical mappings are associated with the EPTRTA only).  The hardware copy of a
    root last run in the other hardware context (hw_ctx1) is out of reach (mark_active moves
    it to that context's record).  A global translation may be used under any PCID of its
    VPID (SDM Vol. 3A §4.10.2.4)."""
    root = v.mmu.root
    here = iff(policy.root_ctx1(root), truth(policy.running_ctx1(v)))
    old = neg(roles.is_direct(root.role)) & (root.unsync | (root.hw_old & here))
    cur = arch.tag(v)
    elsewhere = (root.tag != cur) & neg(arch.global_translation(v)
                                        & (arch.tag_vpid(root.tag) == arch.tag_vpid(cur)))
    return old & (root.stale | (neg(v.mmu_is_guest) & elsewhere))


def _stale_hw(policy: Mechanism, v: Vcpu, ctx: int) -> object:
    """The running context's hardware TLB may hold a stale translation under the current tag:
    an old one, or one the guest made through other tables at its last entry under it.  Not
    while the guest's paging is off where the hardware walks the guest's tables (TDP): no linear
    translation is used then (SDM §4.1.1: linear addresses are physical), and what the TLB
    keeps is checked at the next entry with paging on.  A record's global copies (HwTlb's global
    part, Mechanism.hw_global) are used under any PCID of its VPID (SDM Vol. 3A §4.10.2.4),
    whatever CR4.PGE is now; under the record's own tag a stale one is excused while the guest
    is still allowed the same translation non-global there (HwTlb.excused)."""
    in_ctx1 = truth(policy.running_ctx1(v))
    # caches_no_linear by ghost context: where L2 shares context 0 (hw_ctx1), neither level's
    # hardware walks the guest's tables.
    running = (in_ctx1 if ctx else neg(in_ctx1)) \
        & neg(truth(policy.caches_no_linear(v, ctx)))
    cur, now = arch.tag(v), arch.tables(v.regs)
    stale = False
    for r in v.hw[ctx]:
        stale = stale | _stale_own(r, cur, now) | _stale_global_of_other(r, cur, now)
    return running & stale


def _stale_own(r: HwTlb, cur: int, now: int) -> object:
    """Record r is the current tag's and holds a stale copy used under it: a non-global one, or
    a global one not excused (HwTlb.excused)."""
    return (r.tag == cur) & (r.local.stale_at(now) | (neg(r.excused) & r.glob.stale_at(now)))


def _stale_global_of_other(r: HwTlb, cur: int, now: int) -> object:
    """Record r is another PCID's of the current VPID and holds a stale global copy, which the
    current PCID may use (SDM Vol. 3A §4.10.2.4)."""
    return (r.tag != cur) & (arch.tag_vpid(r.tag) == arch.tag_vpid(cur)) & r.glob.stale_at(now)


def check(policy: Mechanism, v: Vcpu, causes: dict[object, StaleCause] | None,
          props: tuple[str, ...] = PROPERTIES) -> list[Violation]:
    """All violated properties at this guest entry, in PROPERTIES order."""
    if not v.mmu.root.valid:
        raise ModelError("no valid root after kvm_mmu_reload")
    cond = conditions(policy, v)
    if is_symbolic():
        return [Violation(prop, "", cond[prop]) for prop in props]
    out = []
    root = v.mmu.root
    which = "guest_mmu" if v.mmu_is_guest else "root_mmu"
    if "role" in props and cond["role"]:
        want = policy.calc_root_role(v)
        out.append(Violation("role", (
            f"{which} root pgd={root.pgd:#x} has role {roles.describe(root.role)} but the "
            f"registers need {roles.describe(want)}")))
    if "pgd" in props and cond["pgd"]:
        want_pgd = v.nested_pgd if v.mmu_is_guest else v.regs.cr3
        out.append(Violation("pgd", (
            f"{which} root pgd={root.pgd:#x} is active but the guest's "
            f"{'EPTP/nCR3' if v.mmu_is_guest else 'CR3'} is {want_pgd:#x}")))
    if "freshness" in props and cond["freshness"]:
        out.append(_freshness(policy, v, root, causes))
    if "metadata" in props and cond["metadata"]:
        want = policy.calc_cpu_role(v)
        have = v.walk_cpu_role
        out.append(Violation("metadata", (
            f"KVM walks guest tables with cpu_role {roles.describe(have)} "
            f"(ext {have >> 32:#x}) but the registers give {roles.describe(want)} "
            f"(ext {want >> 32:#x})")))
    return out


def _freshness(policy: Mechanism, v: Vcpu, root,
               causes: dict[object, StaleCause] | None) -> Violation:
    """The message for a freshness violation (conditions() decided there is one)."""
    cur = arch.tag(v)
    wva = f"VA {arch.WATCHED_VA:#x}"
    if _stale_root(policy, v):
        where = "its out-of-sync shadow entries" if root.unsync else \
            "the hardware TLB's copy of its old shadow entries"
        cause = causes.get(root_key(root)) if causes is not None else None
        if root.stale:
            since = f" since {cause.why} at event {cause.event}" if cause else ""
            return Violation("freshness", (
                f"root pgd={root.pgd:#x} reused: {where} for {wva} are stale{since}"))
        return Violation("freshness", (
            f"root pgd={root.pgd:#x} serves {where} for {wva}, cached under tag "
            f"{root.tag:#x}, under tag {cur:#x} where they were never cached"))
    ctx = int(bool(policy.running_ctx1(v)))
    which = "L2" if ctx else "L1, which this L2 without a VPID shares" if v.guest_mode else "L1"
    now = arch.tables(v.regs)
    own = next((r for r in v.hw[ctx] if _stale_own(r, cur, now)), None)
    held = own or next(r for r in v.hw[ctx] if _stale_global_of_other(r, cur, now))
    cause = causes.get(("hw", ctx, held.tag)) if causes is not None else None
    after = f" since {cause.why} at event {cause.event}" if cause else ""
    what = f"under tag {cur:#x}" if own else (
        f"for tag {cur:#x} (a global copy cached under tag {held.tag:#x}, usable under every "
        "PCID of its VPID)")
    return Violation("freshness", (
        f"the guest's hardware TLB context ({which}) may still hold an old "
        f"translation of {wva} {what}{after}: KVM did not flush it"))


def root_key(root) -> tuple[int, int]:
    return (root.pgd, root.role)
