"""KVM as of v5.12 (before "KVM: x86: Unload MMU on guest TLB flush if TDP disabled to force
MMU sync" and before 21823fbda552).  Functions mirror arch/x86/kvm/{x86.c,mmu/mmu.c} of v5.12."""

from __future__ import annotations

from formal.model import arch, bits, roles
from formal.model.bits import CR0_PG, CR0_WP, CR3_NOFLUSH, CR4_PCIDE, EFER_NX
from formal.model.kvm import ROOT_CURRENT, ROOT_PREVIOUS
from formal.model.state import KVM_MMU_NUM_PREV_ROOTS, Req, Root, Vcpu
from specs.common import Common


class V5_12(Common):
    name = "v5.12"

    # x86.c v5.12 kvm_set_cr0: "update_bits = X86_CR0_PG | X86_CR0_WP".
    cr0_reset_bits = CR0_PG | CR0_WP
    # x86.c v5.11-v5.13 kvm_post_set_cr4: "mmu_role_bits = X86_CR4_PGE | X86_CR4_PSE |
    # X86_CR4_PAE | X86_CR4_SMEP | X86_CR4_SMAP | X86_CR4_PKE" (SMAP and PKE since 8d214c481611
    # "KVM: x86: Reset MMU context if guest toggles CR4.SMAP or CR4.PKE", v5.9-rc7; pdptr_bits,
    # the first four, only decide when kvm_set_cr4 reloads the PDPTRs).  LA57 joined in v5.14
    # (KVM_MMU_CR4_ROLE_BITS); PGE left in v5.16 (a91a7c709600).
    cr4_reset_bits = bits.CR4_PGE | bits.CR4_PSE | bits.CR4_PAE | bits.CR4_SMEP \
        | bits.CR4_SMAP | bits.CR4_PKE
    # x86.c v5.12 set_efer: "if ((efer ^ old_efer) & EFER_NX) kvm_mmu_reset_context(vcpu)".
    efer_reset_bits = EFER_NX

    # x86.c v5.11-v5.13 kvm_handle_invpcid, INVPCID_TYPE_ALL_INCL_GLOBAL (ALL_NON_GLOBAL falls
    # through): KVM_REQ_MMU_RELOAD; KVM_REQ_TLB_FLUSH_GUEST since 28f28d453ffc (v5.14).
    invpcid_all_request = Req.MMU_RELOAD
    # vmx/nested.c nested_vmx_transition_tlb_flush before 50a417962a80 (v5.14): without a VPID
    # for L2, "kvm_make_request(KVM_REQ_TLB_FLUSH, vcpu)" (every context, no MMU sync).
    vmx_transition_request = Req.TLB_FLUSH

    # -- guest entry (x86.c v5.12 vcpu_enter_guest) --

    # The request that drops roots at guest entry: KVM_REQ_MMU_RELOAD until v5.17.
    root_request = Req.MMU_RELOAD

    def vcpu_enter_guest(self, v: Vcpu) -> None:
        if self.kvm_check_request(v, self.root_request):
            self.service_root_request(v)
        if self.kvm_check_request(v, Req.MMU_SYNC):
            self.kvm_mmu_sync_roots(v)
        if self.kvm_check_request(v, Req.LOAD_MMU_PGD):
            pass  # kvm_mmu_load_pgd: hardware CR3/EPTP := root; no TLB effect
        if self.kvm_check_request(v, Req.TLB_FLUSH):
            self.kvm_vcpu_flush_tlb_all(v)
            self.kvm_clear_request(v, Req.TLB_FLUSH_CURRENT)
        if self.kvm_check_request(v, Req.TLB_FLUSH_CURRENT):
            self.kvm_vcpu_flush_tlb_current(v)
        if self.kvm_check_request(v, Req.TLB_FLUSH_GUEST):
            self.kvm_vcpu_flush_tlb_guest(v)
        self.kvm_mmu_reload(v)

    def service_root_request(self, v: Vcpu) -> None:
        """KVM_REQ_MMU_RELOAD: kvm_mmu_unload."""
        self.kvm_mmu_unload(v)

    def kvm_vcpu_flush_tlb_guest(self, v: Vcpu) -> None:
        """x86.c v5.12: only the hardware context; shadow roots are not synced."""
        self.vendor_flush_tlb_guest(v)

    def record_steal_time(self, v: Vcpu) -> None:
        """x86.c record_steal_time: "if (xchg(&st->preempted, 0) & KVM_VCPU_FLUSH_TLB)
        kvm_vcpu_flush_tlb_guest(vcpu)"."""
        self.kvm_vcpu_flush_tlb_guest(v)

    # -- CR0 / CR4 / EFER --

    def kvm_set_cr0(self, v: Vcpu, cr0: int) -> None:
        old_cr0 = v.regs.cr0
        self.vendor_set_cr0(v, cr0)
        self.kvm_post_set_cr0(v, old_cr0, cr0)

    def kvm_post_set_cr0(self, v: Vcpu, old_cr0: int, cr0: int) -> None:
        if (cr0 ^ old_cr0) & self.cr0_reset_bits:
            self.kvm_mmu_reset_context(v)

    def kvm_set_cr4(self, v: Vcpu, cr4: int) -> None:
        old_cr4 = v.regs.cr4
        self.vendor_set_cr4(v, cr4)
        self.kvm_post_set_cr4(v, old_cr4, cr4)

    def kvm_post_set_cr4(self, v: Vcpu, old_cr4: int, cr4: int) -> None:
        """x86.c v5.12 kvm_set_cr4: reset on a role bit or on PCIDE 1->0."""
        if (cr4 ^ old_cr4) & self.cr4_reset_bits or \
                (not cr4 & CR4_PCIDE and old_cr4 & CR4_PCIDE):
            self.kvm_mmu_reset_context(v)

    def set_efer(self, v: Vcpu, efer: int) -> None:
        old_efer = v.regs.efer
        # "efer &= ~EFER_LMA; efer |= vcpu->arch.efer & EFER_LMA;"
        efer = (efer & ~bits.EFER_LMA) | (old_efer & bits.EFER_LMA)
        self.vendor_set_efer(v, efer)
        if (efer ^ old_efer) & self.efer_reset_bits:
            self.kvm_mmu_reset_context(v)

    # -- CR3 and the root cache --

    def kvm_set_cr3(self, v: Vcpu, cr3: int) -> None:
        """x86.c v5.12 kvm_set_cr3."""
        skip_tlb_flush = False
        if v.regs.cr4 & CR4_PCIDE:
            skip_tlb_flush = cr3 & CR3_NOFLUSH != 0
            cr3 &= ~CR3_NOFLUSH
        # The kernel's test is "!pdptrs_changed(vcpu)"; the model keeps no PDPTE history and
        # takes PAE paging as "changed": it frees the root and rebuilds it at kvm_mmu_load,
        # which syncs and flushes as the same-CR3 path does.
        if cr3 == v.regs.cr3 and not self.is_pae_paging(v):
            if not skip_tlb_flush:
                self.kvm_mmu_sync_roots(v)
                self.kvm_make_request(v, Req.TLB_FLUSH_CURRENT)
            return
        self.kvm_mmu_new_pgd(v, cr3, skip_tlb_flush, skip_tlb_flush)
        v.regs.cr3 = cr3

    def kvm_mmu_new_pgd(self, v: Vcpu, new_pgd: int, skip_tlb_flush: bool,
                        skip_mmu_sync: bool) -> None:
        """mmu.c v5.12 kvm_mmu_new_pgd: the role is kvm_mmu_calc_root_page_role(vcpu), also
        while vcpu->arch.mmu is the guest_mmu of L2 under nested NPT, whose indirect roots
        that direct TDP role never matches (so docs/findings.md F5 starts in v5.18)."""
        self._kvm_mmu_new_pgd(v, new_pgd, self.kvm_mmu_calc_root_page_role(v), skip_tlb_flush,
                              skip_mmu_sync)

    def _kvm_mmu_new_pgd(self, v: Vcpu, new_pgd: int, new_role: int, skip_tlb_flush: bool,
                         skip_mmu_sync: bool) -> None:
        """mmu.c v5.12 __kvm_mmu_new_pgd: on a miss free the current root (the next
        kvm_mmu_reload builds one); on a hit sync and flush unless told to skip."""
        if not self.fast_pgd_switch(v, new_pgd, new_role):
            self.kvm_mmu_free_roots(v, v.mmu, ROOT_CURRENT)
            return
        self.kvm_make_request(v, Req.LOAD_MMU_PGD)
        if not skip_mmu_sync:
            self.kvm_make_request(v, Req.MMU_SYNC)
        if not skip_tlb_flush:
            self.kvm_make_request(v, Req.TLB_FLUSH_CURRENT)

    def fast_pgd_switch(self, v: Vcpu, new_pgd: int, new_role: int) -> bool:
        """mmu.c fast_pgd_switch: "limit the fast switch to 64-bit hosts+VMs in order to avoid
        having to deal with PDPTEs" (shadow_root_level and root_level >= PT64_ROOT_4LEVEL)."""
        mmu = v.mmu
        if roles.level(mmu.root_role) >= roles.PT64_ROOT_4LEVEL \
                and roles.level(mmu.cpu_role) >= roles.PT64_ROOT_4LEVEL:
            return self.cached_root_available(v, new_pgd, new_role)
        return False

    def cached_root_available(self, v: Vcpu, new_pgd: int, new_role: int) -> bool:
        """mmu.c cached_root_available: swap the current root with prev_roots[0], [1], [2] in
        turn until a usable one is current; a miss leaves the old prev_roots[2] current (the
        caller frees it)."""
        mmu = v.mmu
        root: Root = mmu.root
        if self.is_root_usable(root, new_pgd, new_role):
            self.note(f"keep current root pgd={root.pgd:#x}")
            return True
        i = 0
        while i < KVM_MMU_NUM_PREV_ROOTS:
            root, mmu.prev_roots[i] = mmu.prev_roots[i], root
            if self.is_root_usable(root, new_pgd, new_role):
                self.note(f"switch to cached prev_roots[{i}] pgd={root.pgd:#x}")
                break
            i += 1
        mmu.root = root
        return i < KVM_MMU_NUM_PREV_ROOTS

    # -- INVLPG / INVPCID --

    def kvm_mmu_invlpg(self, v: Vcpu, gva: int) -> None:
        """mmu.c kvm_mmu_invlpg -> kvm_mmu_invalidate_gva(walk_mmu, gva, INVALID_PAGE): the
        current root and every prev root, then the hardware flush of gva."""
        if not arch.canonical(gva):
            return  # "INVLPG on a non-canonical address is a NOP according to the SDM."
        mmu = v.mmu
        if not v.mmu_is_guest and not roles.is_direct(mmu.root_role):
            self.invlpg_root(v, mmu.root, gva)
            for prev in mmu.prev_roots:
                self.invlpg_root(v, prev, gva, prev.valid)
        self.vendor_flush_tlb_gva(v, gva)

    def kvm_mmu_invpcid_gva(self, v: Vcpu, gva: int, pcid: int) -> None:
        """mmu.c kvm_mmu_invpcid_gva: the roots whose PCID matches, then flush gva."""
        mmu = v.mmu
        tlb_flush = False
        if pcid == self.kvm_get_active_pcid(v):
            if not roles.is_direct(mmu.root_role):
                self.invlpg_root(v, mmu.root, gva)
            tlb_flush = True
        for prev in mmu.prev_roots:
            hit = prev.valid & (pcid == self.kvm_get_pcid(v, prev.pgd))
            self.invlpg_root(v, prev, gva, hit)
            tlb_flush = tlb_flush | hit
        if tlb_flush:
            self.vendor_flush_tlb_gva(v, gva)

    def kvm_handle_invpcid(self, v: Vcpu, type_: int, pcid: int, gva: int) -> None:
        """x86.c v5.12 kvm_handle_invpcid."""
        if type_ == 0:
            self.kvm_mmu_invpcid_gva(v, gva, pcid)
        elif type_ == 1:
            if self.kvm_get_active_pcid(v) == pcid:
                self.kvm_mmu_sync_roots(v)
                self.kvm_make_request(v, Req.TLB_FLUSH_CURRENT)
            roots_to_free = 0
            for i in range(KVM_MMU_NUM_PREV_ROOTS):
                if self.kvm_get_pcid(v, v.mmu.prev_roots[i].pgd) == pcid:
                    roots_to_free |= ROOT_PREVIOUS(i)
            self.kvm_mmu_free_roots(v, v.mmu, roots_to_free)
        else:
            # "KVM doesn't mark global entries in the shadow page tables, so a non-global flush
            # just degenerates to a global flush."
            self.kvm_make_request(v, self.invpcid_all_request)

    # -- nested CR3 loads (vmx/nested.c, svm/nested.c, mmu.c) --

    def nested_vmx_load_cr3(self, v: Vcpu, cr3: int, nested_ept: bool) -> None:
        """vmx/nested.c v5.12: "Unconditionally skip the TLB flush on fast CR3 switch, all TLB
        flushes are handled by nested_vmx_transition_tlb_flush()"; new_pgd, then init_mmu."""
        if not nested_ept:
            self.kvm_mmu_new_pgd(v, cr3, True, not self.nested_vmx_transition_mmu_sync(v))
        v.regs.cr3 = cr3
        self.kvm_init_mmu(v)

    def nested_vmx_transition_mmu_sync(self, v: Vcpu) -> bool:
        """vmx/nested.c v5.12: the MMU needs a sync on a transition iff L0 shadows and L1 did
        not give L2 a VPID (so L1 expects the TLB flushed)."""
        return not self.tdp_enabled and not v.vpid12

    def nested_svm_load_cr3(self, v: Vcpu, cr3: int, nested_npt: bool) -> None:
        """svm/nested.c v5.12 nested_svm_load_cr3: new_pgd (sync and flush), then init_mmu."""
        if not nested_npt:
            self.kvm_mmu_new_pgd(v, cr3, False, False)
        v.regs.cr3 = cr3
        self.kvm_init_mmu(v)

    def nested_tdp_new_pgd(self, v: Vcpu, new_pgd: int) -> None:
        """mmu.c v5.12 kvm_init_shadow_ept_mmu: __kvm_mmu_new_pgd(new_eptp, role, true, true);
        kvm_init_shadow_npt_mmu: __kvm_mmu_new_pgd(nested_cr3, role, false, false)."""
        skip = self.cfg.nested == "vmx"
        self._kvm_mmu_new_pgd(v, new_pgd, v.mmu.root_role, skip, skip)
