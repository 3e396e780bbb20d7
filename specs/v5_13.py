"""KVM as of v5.13: v5.12 plus "KVM: x86: Unload MMU on guest TLB flush if TDP disabled to
force MMU sync" (May 2021, Fixes: f38a7b75267f).  21823fbda552 is not in yet."""

from __future__ import annotations

from formal.model.state import Vcpu
from specs.v5_12 import V5_12


class V5_13(V5_12):
    name = "v5.13"

    def kvm_vcpu_flush_tlb_guest(self, v: Vcpu) -> None:
        """x86.c v5.13: "A TLB flush on behalf of the guest is equivalent to INVPCID(all),
        toggling CR4.PGE, etc., which requires a full sync of the MMU": with shadow paging
        unload (the next kvm_mmu_load builds synced roots); with TDP flush the context."""
        if not self.tdp_enabled:
            self.kvm_mmu_unload(v)
            return
        self.vendor_flush_tlb_guest(v)
