"""KVM as of v5.18: the parts of the Feb 2022 series that were merged.  CR4 flushes are
separated from the MMU reset, CR0.PG 1->0 flushes the guest TLB, EFER.LME is a role bit,
KVM_REQ_MMU_RELOAD is gone, kvm_mmu_new_pgd uses the MMU's root role, and nested CR3 loads
initialise the MMU before switching the pgd."""

from __future__ import annotations

from formal.bits import CR0_PG, CR4_PAE, CR4_PCIDE, CR4_PGE, CR4_SMEP, EFER_LME, EFER_NX
from formal.state import Req, Vcpu
from specs.v5_17 import V5_17


class V5_18(V5_17):
    name = "v5.18"

    # mmu.h v5.18 KVM_MMU_EFER_ROLE_BITS = EFER_LME | EFER_NX.
    efer_reset_bits = EFER_LME | EFER_NX

    # x86.c v5.18: KVM_REQ_MMU_RELOAD is replaced by KVM_REQ_MMU_FREE_OBSOLETE_ROOTS.
    root_request = Req.FREE_OBSOLETE_ROOTS

    def service_root_request(self, v: Vcpu) -> None:
        """kvm_mmu_free_obsolete_roots: frees roots made obsolete by a memslot change; the
        model has no memslot events, so no root is ever obsolete."""

    def kvm_post_set_cr0(self, v: Vcpu, old_cr0: int, cr0: int) -> None:
        """x86.c v5.18: "Clearing CR0.PG is defined to flush the TLB from the guest's
        perspective."""
        if (cr0 ^ old_cr0) & CR0_PG and not cr0 & CR0_PG:
            self.kvm_make_request(v, Req.TLB_FLUSH_GUEST)
        if (cr0 ^ old_cr0) & self.cr0_reset_bits:
            self.kvm_mmu_reset_context(v)

    def kvm_post_set_cr4(self, v: Vcpu, old_cr4: int, cr4: int) -> None:
        """x86.c v5.18 kvm_post_set_cr4."""
        changed = cr4 ^ old_cr4
        if changed & self.cr4_reset_bits:
            self.kvm_mmu_reset_context(v)
        # "stale prev_roots could be reused incorrectly in the future after a MOV to CR3 with
        # NOFLUSH=1, so we free them all.  This is *not* a superset of ... the hardware TLB is
        # not flushed, so fall through."
        if not self.tdp_enabled and cr4 & CR4_PCIDE and not old_cr4 & CR4_PCIDE:
            self.kvm_mmu_unload(v)
        if changed & CR4_PGE or (not cr4 & CR4_PCIDE and old_cr4 & CR4_PCIDE):
            self.kvm_make_request(v, Req.TLB_FLUSH_GUEST)
        elif changed & CR4_PAE or (cr4 & CR4_SMEP and not old_cr4 & CR4_SMEP):
            self.kvm_make_request(v, Req.TLB_FLUSH_CURRENT)

    def kvm_mmu_new_pgd(self, v: Vcpu, new_pgd: int) -> None:
        """mmu.c v5.18: the role is the MMU's own root role (mmu_role.base)."""
        self._kvm_mmu_new_pgd(v, new_pgd, v.mmu.root_role)

    def nested_vmx_load_cr3(self, v: Vcpu, cr3: int, nested_ept: bool) -> None:
        """vmx/nested.c v5.18: init_mmu, then (without nested EPT) new_pgd."""
        v.regs.cr3 = cr3
        self.kvm_init_mmu(v)
        if not nested_ept:
            self.kvm_mmu_new_pgd(v, cr3)

    def nested_svm_load_cr3(self, v: Vcpu, cr3: int, nested_npt: bool) -> None:
        """svm/nested.c v5.18: init_mmu, then (without nested NPT) new_pgd."""
        v.regs.cr3 = cr3
        self.kvm_init_mmu(v)
        if not nested_npt:
            self.kvm_mmu_new_pgd(v, cr3)

