"""A fix for F5 (docs/findings.md): kvm_set_cr3 leaves the root alone while mmu_is_nested.

While L2 runs under nested NPT (or EPT), vcpu->arch.mmu is the guest_mmu, whose roots shadow
L1's NPT and are keyed by nCR3.  v6.6's kvm_set_cr3 (x86.c) still calls kvm_mmu_new_pgd(cr3) for
an L2 MOV CR3 that the emulator reaches (svm_check_intercept lets it through when L1 does not
intercept it), and since v5.18 ("KVM: x86/mmu: Always use current mmu's role when loading new
PGD") that search can hit the root of an earlier nCR3 equal to L2's new CR3.  The nested entry
paths already skip kvm_mmu_new_pgd under nested NPT/EPT (svm/nested.c nested_svm_load_cr3,
vmx/nested.c nested_vmx_load_cr3); this patch makes kvm_set_cr3 do the same, as Paolo Bonzini
suggested in the review of the Feb 2022 series (kvm list, 14 Feb 2022).
"""

from formal.model import bits
from formal.model.bits import CR3_NOFLUSH, CR4_PCIDE
from formal.model.state import Vcpu
from specs.v6_6 import V6_6


class V6_6NestedCr3(V6_6):
    name = "v6.6-fix-f5"

    def kvm_set_cr3(self, v: Vcpu, cr3: int) -> None:
        """x86.c v6.6 kvm_set_cr3 (the model's V5_17.kvm_set_cr3), patched: "if (cr3 !=
        kvm_read_cr3(vcpu) && !mmu_is_nested(vcpu)) kvm_mmu_new_pgd(vcpu, cr3)".  The model's
        mmu_is_guest is mmu_is_nested: both hold exactly while L2 runs under nested NPT/EPT."""
        skip_tlb_flush = False
        pcid = 0
        if v.regs.cr4 & CR4_PCIDE:
            skip_tlb_flush = cr3 & CR3_NOFLUSH != 0
            cr3 &= ~CR3_NOFLUSH
            pcid = cr3 & bits.CR3_PCID_MASK
        if not (cr3 == v.regs.cr3 and not self.is_pae_paging(v)):
            if cr3 != v.regs.cr3 and not v.mmu_is_guest:
                self.kvm_mmu_new_pgd(v, cr3)
            v.regs.cr3 = cr3
        if not skip_tlb_flush:
            self.kvm_invalidate_pcid(v, pcid)
