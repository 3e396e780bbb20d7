"""A fix for F1 (docs/findings.md): sync the root that the root cache hands back on a hit.

v6.6's kvm_mmu_new_pgd requests only KVM_REQ_LOAD_MMU_PGD when it finds the new CR3's root among
the previous roots; KVM_REQ_MMU_SYNC (and TLB_FLUSH_CURRENT) come only with the
force_flush_and_sync_on_reuse module parameter, default off (mmu.c, v5.18 .. v6.7).  A prev root
that went unsync while it was inactive (F1: INVLPG of the current PCID, then a write to the
inactive tables) is then reused with its old leaf.  This patch makes a hit request the sync half
of force_flush_and_sync_on_reuse always, not the flush: a NOFLUSH MOV CR3 keeps what the
architecture lets it keep in the TLB, and kvm_mmu_sync_roots returns at once for a root without
unsync children (mmu.c is_unsync_root), so the sync costs a check on most hits.
"""

from formal.model.state import Req, Vcpu
from specs.v6_6 import V6_6


class V6_6SyncOnReuse(V6_6):
    name = "v6.6-fix-f1"

    def _kvm_mmu_new_pgd(self, v: Vcpu, new_pgd: int, new_role: int) -> None:
        """mmu.c v6.6 kvm_mmu_new_pgd, patched: on a hit, KVM_REQ_MMU_SYNC as well as
        KVM_REQ_LOAD_MMU_PGD (the "if (force_flush_and_sync_on_reuse)" block's sync request,
        made unconditional)."""
        if not self.fast_pgd_switch(v, new_pgd, new_role):
            return
        self.kvm_make_request(v, Req.LOAD_MMU_PGD)
        self.kvm_make_request(v, Req.MMU_SYNC)
