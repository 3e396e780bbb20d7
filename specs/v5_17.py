"""KVM as of v5.17, before the Feb 2022 series.  Since v5.13 it gained 21823fbda552 (v5.14,
kvm_invalidate_pcid on a flushing MOV CR3), 509bfe3d9796 (v5.16, prev roots cached with
PCIDE=0, KVM_REQ_MMU_RELOAD on a CR4.PCIDE change), a91a7c709600 (v5.16, PGE out of the CR4 role
bits), the LA57 role bit (v5.14), INVPCID(all) as a guest TLB flush (28f28d453ffc, v5.14),
TLB_FLUSH_GUEST on nested VMX transitions without VPID (50a417962a80, v5.14) and
kvm_mmu_sync_prev_roots on guest TLB flushes
(v5.16)."""

from __future__ import annotations

from formal.model import bits
from formal.model.bits import CR3_NOFLUSH, CR4_PCIDE, CR4_PGE
from formal.model.kvm import ROOT_CURRENT, ROOT_PREVIOUS
from formal.model.state import KVM_MMU_NUM_PREV_ROOTS, Req, Vcpu
from formal.model.values import on
from specs.v5_13 import V5_13


class V5_17(V5_13):
    name = "v5.17"

    # mmu.h KVM_MMU_CR4_ROLE_BITS after a91a7c709600 (v5.16): PGE is no longer a role bit.
    cr4_reset_bits = bits.CR4_PSE | bits.CR4_PAE | bits.CR4_SMEP | bits.CR4_SMAP \
        | bits.CR4_PKE | bits.CR4_LA57
    # x86.c kvm_handle_invpcid since 28f28d453ffc (v5.14).
    invpcid_all_request = Req.TLB_FLUSH_GUEST
    # vmx/nested.c nested_vmx_transition_tlb_flush since 50a417962a80 (v5.14).
    vmx_transition_request = Req.TLB_FLUSH_GUEST

    def kvm_vcpu_flush_tlb_guest(self, v: Vcpu) -> None:
        """x86.c v5.16+ (61b05a9fd4ae "KVM: X86: Don't unload MMU in
        kvm_vcpu_flush_tlb_guest()"): sync the current root and free unsync prev roots."""
        if not self.tdp_enabled:
            self.kvm_mmu_sync_roots(v)
            self.kvm_mmu_sync_prev_roots(v)
        self.vendor_flush_tlb_guest(v)

    def kvm_mmu_sync_prev_roots(self, v: Vcpu) -> None:
        """mmu.c kvm_mmu_sync_prev_roots (61b05a9fd4ae, v5.16; unchanged to v6.7 but for v6.6's
        dummy roots, which the model has not): "if (is_unsync_root(...prev_roots[i].hpa))
        roots_to_free |= KVM_MMU_ROOT_PREVIOUS(i)" -- "sync prev_roots by simply freeing
        them"."""
        roots_to_free = 0
        for i, prev in enumerate(v.mmu.prev_roots):
            roots_to_free |= on(self.is_unsync_root(v, prev), ROOT_PREVIOUS(i))
        self.kvm_mmu_free_roots(v, v.mmu, roots_to_free)

    def kvm_post_set_cr4(self, v: Vcpu, old_cr4: int, cr4: int) -> None:
        """x86.c v5.17 kvm_post_set_cr4 (509bfe3d9796): "resetting MMU is a superset of
        KVM_REQ_MMU_RELOAD and KVM_REQ_MMU_RELOAD is a superset of KVM_REQ_TLB_FLUSH_GUEST,
        hence the usage of 'else if'"."""
        if (cr4 ^ old_cr4) & self.cr4_reset_bits:
            self.kvm_mmu_reset_context(v)
        elif (cr4 ^ old_cr4) & CR4_PCIDE:
            self.kvm_make_request(v, Req.MMU_RELOAD)
        elif (cr4 ^ old_cr4) & CR4_PGE:
            self.kvm_make_request(v, Req.TLB_FLUSH_GUEST)

    def kvm_set_cr3(self, v: Vcpu, cr3: int) -> None:
        """x86.c v5.17 kvm_set_cr3 (21823fbda552): the flush goes through kvm_invalidate_pcid,
        even on the "same CR3" path."""
        skip_tlb_flush = False
        pcid = 0
        if v.regs.cr4 & CR4_PCIDE:
            skip_tlb_flush = cr3 & CR3_NOFLUSH != 0
            cr3 &= ~CR3_NOFLUSH
            pcid = cr3 & bits.CR3_PCID_MASK
        if not (cr3 == v.regs.cr3 and not self.is_pae_paging(v)):
            if cr3 != v.regs.cr3:
                self.kvm_mmu_new_pgd(v, cr3)
            v.regs.cr3 = cr3
        # "A load of CR3 that flushes the TLB flushes only the current PCID, even if PCID is
        # disabled, in which case PCID=0 is flushed."
        if not skip_tlb_flush:
            self.kvm_invalidate_pcid(v, pcid)

    def kvm_mmu_new_pgd(self, v: Vcpu, new_pgd: int) -> None:  # type: ignore[override]
        """mmu.c v5.17 kvm_mmu_new_pgd -> __kvm_mmu_new_pgd(kvm_mmu_calc_root_page_role):
        a hit requests LOAD_MMU_PGD only (force_flush_and_sync_on_reuse defaults to false);
        the caller decides about sync and flush."""
        self._kvm_mmu_new_pgd(v, new_pgd, self.kvm_mmu_calc_root_page_role(v))

    def nested_tdp_new_pgd(self, v: Vcpu, new_pgd: int) -> None:
        """kvm_init_shadow_ept_mmu / kvm_init_shadow_npt_mmu -> __kvm_mmu_new_pgd(new_eptp)."""
        self._kvm_mmu_new_pgd(v, new_pgd, v.mmu.root_role)

    def _kvm_mmu_new_pgd(self, v: Vcpu, new_pgd: int, new_role: int) -> None:  # type: ignore[override]
        """mmu.c v5.17 __kvm_mmu_new_pgd."""
        if not self.fast_pgd_switch(v, new_pgd, new_role):
            self.kvm_mmu_free_roots(v, v.mmu, ROOT_CURRENT)
            return
        self.kvm_make_request(v, Req.LOAD_MMU_PGD)

    def kvm_invalidate_pcid(self, v: Vcpu, pcid: int) -> None:
        """x86.c v5.17 kvm_invalidate_pcid."""
        mmu = v.mmu
        # "KVM_REQ_TLB_FLUSH_GUEST covers both the 'sync' and 'flush' requirements."
        if self.tdp_enabled:
            self.kvm_make_request(v, Req.TLB_FLUSH_GUEST)
            return
        if self.kvm_get_active_pcid(v) == pcid:
            self.kvm_make_request(v, Req.MMU_SYNC)
            self.kvm_make_request(v, Req.TLB_FLUSH_CURRENT)
        # 509bfe3d9796: "If PCID is disabled, there is no need to free prev_roots even if the
        # PCIDs for them are also 0, because MOV to CR3 always flushes the TLB with PCIDE=0."
        if not v.regs.cr4 & CR4_PCIDE:
            return
        roots_to_free = 0
        for i in range(KVM_MMU_NUM_PREV_ROOTS):
            roots_to_free |= on(self.kvm_get_pcid(v, mmu.prev_roots[i].pgd) == pcid,
                                ROOT_PREVIOUS(i))
        self.kvm_mmu_free_roots(v, mmu, roots_to_free)

    def kvm_handle_invpcid(self, v: Vcpu, type_: int, pcid: int, gva: int) -> None:
        """x86.c v5.17 kvm_handle_invpcid: single-context goes through kvm_invalidate_pcid."""
        if type_ == 1:
            self.kvm_invalidate_pcid(v, pcid)
        else:
            super().kvm_handle_invpcid(v, type_, pcid, gva)

    def guest_flush_vpid01(self, v: Vcpu) -> object:
        """vmx.c since 2b4a5a5d5688 (v5.16): vmx_flush_tlb_guest and vmx_flush_tlb_gva flush
        vmx_get_current_vpid's VPID (current_vpid01)."""
        return self.current_vpid01(v)

    def flush_new_vpid12(self, v: Vcpu) -> None:
        """vmx/nested.c since 712494de96f3 ("KVM: nVMX: Emulate guest TLB flush on nested
        VM-Enter with new vpid12", v5.16): a new vpid12 requests KVM_REQ_TLB_FLUSH_GUEST, which
        with shadow paging also syncs the roots, instead of flushing vpid02 alone."""
        self.kvm_make_request(v, Req.TLB_FLUSH_GUEST)

    def nested_vmx_load_cr3(self, v: Vcpu, cr3: int, nested_ept: bool) -> None:
        """vmx/nested.c v5.17: new_pgd (no sync/flush requests), then init_mmu."""
        if not nested_ept:
            self.kvm_mmu_new_pgd(v, cr3)
        v.regs.cr3 = cr3
        self.kvm_init_mmu(v)

    def nested_svm_load_cr3(self, v: Vcpu, cr3: int, nested_npt: bool) -> None:
        """svm/nested.c v5.17: new_pgd, then init_mmu; the transition flush syncs."""
        if not nested_npt:
            self.kvm_mmu_new_pgd(v, cr3)
        v.regs.cr3 = cr3
        self.kvm_init_mmu(v)
