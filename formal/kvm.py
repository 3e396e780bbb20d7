"""KVM's MMU mechanism: the primitives the policy specs call.

The policy (specs/) decides *which* roots to keep, free or switch to and which requests to raise;
this module carries those decisions out on the model state and keeps the ghost state (DESIGN.md
§5) in step: which roots hold out-of-sync or architecturally invalidated translations of the
watched page, and what the hardware TLB contexts may still hold.
"""

from __future__ import annotations

from formal import arch, roles
from formal.arch import Inval
from formal.bits import CR3_ADDR_MASK
from formal.state import Config, HwTlb, Mmu, Req, Root, Vcpu, invalid_root

# kvm_host.h: KVM_MMU_ROOT_CURRENT, KVM_MMU_ROOT_PREVIOUS(i), KVM_MMU_ROOTS_ALL.
ROOT_CURRENT = 1


def ROOT_PREVIOUS(i: int) -> int:  # noqa: N802 - the kernel's macro name
    return 1 << (i + 1)


ROOTS_ALL = 0xF


def root_ctx(root: Root) -> int:
    """Which hardware TLB context a shadow root's translations live in: L1's or L2's VPID."""
    return 1 if root.role & roles.GUEST_MODE else 0


class Mechanism:
    """Primitives shared by every policy version; subclasses are the versions' policies."""

    name = ""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.log: list[str] = []

    def note(self, text: str) -> None:
        self.log.append(text)

    # -- requests (kvm_host.h kvm_make_request / kvm_check_request) --

    def kvm_make_request(self, v: Vcpu, req: Req) -> None:
        if not v.requests & req:
            self.note(f"request {req.name}")
        v.requests |= req

    def kvm_check_request(self, v: Vcpu, req: Req) -> bool:
        if v.requests & req:
            v.requests &= ~req
            self.note(f"service {req.name}")
            return True
        return False

    def kvm_clear_request(self, v: Vcpu, req: Req) -> None:
        v.requests &= ~req

    # -- roots --

    @property
    def tdp_enabled(self) -> bool:
        return self.cfg.tdp_enabled

    def free_root(self, v: Vcpu, mmu: Mmu, slot: int) -> None:
        """mmu_free_root_page: slot -1 is the current root, 0..2 the previous ones."""
        root = mmu.root if slot < 0 else mmu.prev_roots[slot]
        if not root.valid:
            return
        where = "current root" if slot < 0 else f"prev_roots[{slot}]"
        self.note(f"free {where} pgd={root.pgd:#x}")
        if root.hw_old:
            # Freeing a root does not flush the hardware TLB; what it cached stays there.
            self.hw_keeps(v.hw[root_ctx(root)], False, root.tag, root.stale)
        if slot < 0:
            mmu.root = invalid_root()
        else:
            mmu.prev_roots[slot] = invalid_root()

    def alloc_root(self, v: Vcpu, mmu: Mmu, pgd: int) -> None:
        """mmu_alloc_roots: a new root for pgd with the MMU's root role.  Shadow pages are found
        again by (gfn, role), but kvm_mmu_load syncs the new root before use, so it starts
        fresh; its translations were never in the TLB."""
        mmu.root = Root(valid=True, pgd=pgd, role=mmu.root_role, tag=arch.tag(v))
        self.note(f"load new root pgd={pgd:#x} role={roles.describe(mmu.root_role)}")

    def sync_root(self, v: Vcpu, root: Root) -> None:
        """mmu_sync_children on a root: every unsync leaf below it is brought up to date with
        the guest's PTEs.  Shadow pages are shared by (gfn, role), so every cached root with the
        same page-table address and role sees the sync."""
        if not root.valid or roles.is_direct(root.role):
            return
        for other in v.all_roots():
            if other.valid and other.role == root.role \
                    and other.pgd & CR3_ADDR_MASK == root.pgd & CR3_ADDR_MASK:
                if other.unsync:
                    self.note(f"sync root pgd={other.pgd:#x}")
                other.unsync = False
                other.stale = other.stale and other.hw_old

    def flush_hw_context(self, v: Vcpu, ctx: int) -> None:
        """A hardware TLB flush of one guest context (vpid_sync_context / ASID flush): whatever
        the hardware cached of shadow roots or, with TDP, of the guest's page tables, is gone."""
        hw = v.hw[ctx]
        hw.old = hw.stale = hw.any_tag = False
        hw.tag = 0
        for root in v.all_roots():
            if root.valid and root_ctx(root) == ctx:
                root.hw_old = False
                root.stale = root.stale and root.unsync

    @staticmethod
    def hw_keeps(hw: HwTlb, any_tag: bool, tag: int, stale: bool) -> None:
        """Record that a hardware context may hold an old translation under tag (or any)."""
        hw.any_tag = any_tag or hw.any_tag or (hw.old and hw.tag != tag)
        hw.tag = tag
        hw.old = True
        hw.stale = hw.stale or stale

    def current_ctx(self, v: Vcpu) -> int:
        return 1 if v.guest_mode else 0

    # -- guest page-table writes (mmu.c mmu_try_to_unsync_pages) --

    def guest_pte_write(self, v: Vcpu, pgd: int) -> None:
        """The guest writes the watched page's leaf PTE in the tables at pgd.  With shadow paging
        the leaf shadow page is write-protected; KVM lets it go unsync and the guest's write
        lands, so every root shadowing those tables keeps the old translation until synced."""
        addr = pgd & CR3_ADDR_MASK
        nested_tables = self.cfg.nested_tdp and addr == v.nested_pgd & CR3_ADDR_MASK
        for root in v.all_roots():
            if root.valid and not roles.is_direct(root.role) \
                    and root.pgd & CR3_ADDR_MASK == addr and not root.unsync:
                self.note(f"root pgd={root.pgd:#x} goes unsync")
                root.unsync = True
                # Not cached since its tag's last flush: the old translation was never allowed.
                root.stale = root.stale or not root.live
        if self.cfg.tdp_enabled and not nested_tables:
            # The hardware walks the guest's tables itself and may cache the old translation.
            self.hw_keeps(v.hw[self.current_ctx(v)], True, 0, False)

    # -- the architecture's invalidations applied to the ghost state --

    def apply_invalidations(self, v: Vcpu, invals: tuple[Inval, ...], native: bool) -> None:
        """Mark what the architecture's invalidations make stale.  A natively executed
        instruction (native) invalidated the hardware TLB itself: only KVM's shadow roots can
        still hold what it covered."""
        linear_roots = [v.root_mmu.root] + v.root_mmu.prev_roots
        if not self.cfg.nested_tdp:
            linear_roots += [v.guest_mmu.root] + v.guest_mmu.prev_roots
        for inval in invals:
            for root in linear_roots:
                if root.valid and inval.covers(root.tag >> 12, root.tag & 0xFFF):
                    root.live = False
                    if root.unsync or root.hw_old:
                        root.stale = True
            # An old translation of unknown tag (TDP: the hardware walked the guest's tables
            # under any PCID) is made stale by any covering invalidation: an over-approximation.
            for ctx, hw in enumerate(v.hw):
                if native:
                    continue
                if hw.any_tag:
                    covered = inval.covers(v.vpid12 if ctx else 0, None)
                else:
                    covered = inval.covers(hw.tag >> 12, hw.tag & 0xFFF)
                if hw.old and covered:
                    hw.stale = True

    def mark_active(self, v: Vcpu) -> None:
        """The guest runs on the active root: the hardware may now cache its translations."""
        root = v.mmu.root
        if root.valid and not roles.is_direct(root.role):
            root.tag = arch.tag(v)
            root.live = True
            if root.unsync:
                root.hw_old = True
