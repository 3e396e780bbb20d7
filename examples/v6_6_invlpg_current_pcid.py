"""An experiment, not a fix: v6.6 with an INVLPG that resyncs only the roots of the current PCID.

kvm_mmu_invlpg resyncs the address in every previous root, and its comment says why: "INVLPG is
required to invalidate any global mappings for the VA, irrespective of PCID", and telling which
prev root maps the VA as global would cost about as much as syncing them all (mmu.c, v5.12's
kvm_mmu_invalidate_gva through v6.12's kvm_mmu_invlpg).  This policy takes the other road without
the global test: it resyncs the current root and the previous roots whose PCID is the current one
(the loop of kvm_mmu_invpcid_gva, with the active PCID).  For a non-global page that is all INVLPG
invalidates; for a global page (a trace's "page": {"global": true}) a previous root of another
PCID keeps the translation INVLPG invalidated, and a NOFLUSH switch back to it serves it
(docs/model.md "Global pages").
"""

from formal.model import arch, roles
from formal.model.state import Vcpu
from specs.v6_6 import V6_6


class V6_6InvlpgCurrentPcid(V6_6):
    name = "v6.6-invlpg-current-pcid"

    def kvm_mmu_invlpg(self, v: Vcpu, gva: int) -> None:
        """specs/v5_12.py kvm_mmu_invlpg, its prev-root loop limited to the active PCID."""
        if not arch.canonical(gva):
            return
        mmu = v.mmu
        if not v.mmu_is_guest and not roles.is_direct(mmu.root_role):
            self.invlpg_root(v, mmu.root, gva)
            pcid = self.kvm_get_active_pcid(v)
            for prev in mmu.prev_roots:
                same = self.kvm_get_pcid(v, prev.pgd) == pcid
                self.invlpg_root(v, prev, gva, prev.valid & same)
        self.vendor_flush_tlb_gva(v, gva)
