"""`509bfe3-no-pcide-free`: a hypothetical patch (docs/design.md §4).  v5.17 keeps 509bfe3d9796's
caching of prev roots while CR4.PCIDE=0 but does not free the roots when CR4.PCIDE changes:
0 -> 1 does nothing (the SDM requires no flush) and 1 -> 0 only raises the architecturally
required flush of all PCIDs (KVM_REQ_TLB_FLUSH_GUEST, as v5.18 does)."""

from __future__ import annotations

from formal.model.bits import CR4_PCIDE, CR4_PGE
from formal.model.state import Req, Vcpu
from specs.v5_17 import V5_17


class NoPcideFree(V5_17):
    name = "509bfe3-no-pcide-free"

    def kvm_post_set_cr4(self, v: Vcpu, old_cr4: int, cr4: int) -> None:
        if (cr4 ^ old_cr4) & self.cr4_reset_bits:
            self.kvm_mmu_reset_context(v)
        elif (cr4 ^ old_cr4) & CR4_PGE or (old_cr4 & CR4_PCIDE and not cr4 & CR4_PCIDE):
            self.kvm_make_request(v, Req.TLB_FLUSH_GUEST)
