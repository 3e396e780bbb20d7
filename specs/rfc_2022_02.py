"""`rfc-2022-02`: v5.17 plus the series "[PATCH 00/12] KVM: MMU: do not unload MMU roots on all
role changes" (Paolo Bonzini, v1, 9 Feb 2022,
https://lore.kernel.org/kvm/20220209170020.1775368-1-pbonzini@redhat.com/), patches 1..12 as
posted; 12/12 was never merged.  Facts from the posted patches (the thread above).

The posted 12/12 applies on top of 1..11, so the tree modelled is "v5.17 + 1..12".  What each
patch does to the model:
- 1/12 "host-initiated EFER.LME write affects the MMU" (-2): EFER.LME becomes a role bit, as in
  v5.18 ("KVM: x86: Reinitialize context if host userspace toggles EFER.LME").
- 2..8 (-3 .. -9): no change the model can see -- accessors moved to a header; async PF (not
  modelled); WARNs; kvm_mmu_reload renamed; mmu->root becomes a kvm_mmu_root_info (same swaps);
  kvm_mmu_free_roots no longer consults levels (the model's never did).
- 9/12 "look for a cached PGD when going from 32-bit to 64-bit" (-10): the root-cache rework.
  As posted its code (cached_root_find_and_promote / cached_root_find_and_replace,
  fast_pgd_switch, no free on a miss in __kvm_mmu_new_pgd) is, up to the helpers' names, what
  v5.18 merged; the methods are V5_18's.
- 10/12 "load new PGD after the shadow MMU is initialized" (-11): nested_{vmx,svm}_load_cr3 call
  new_pgd after kvm_init_mmu, as merged in v5.18 (V5_18's methods).  kvm_init_shadow_{ept,npt}_
  mmu's new_pgd already follows the MMU's initialisation in the model (Common).
- 11/12 "remove kvm_mmu_calc_root_page_role" (-12): kvm_mmu_new_pgd uses mmu_role.base, as
  merged in v5.18 ("Always use current mmu's role when loading new PGD"; V5_18's method).
- 12/12 "do not unload MMU roots on all role changes" (-13): the methods defined below.

Everything else is v5.17's: KVM_REQ_MMU_RELOAD (unload) on a CR4.PCIDE change, no guest TLB
flush on CR0.PG 1->0 beyond the unload, and the v5.17 kvm_post_set_cr4 chain apart from 12/12's
SMEP flush.  Sean Christopherson's "KVM: x86: flush TLB separately from MMU reset" and the rest
of v5.18's CR0/CR4 changes are not part of the posted series."""

from __future__ import annotations

from formal.model.bits import CR0_CD, CR0_ET, CR0_NW, CR0_PG, CR4_PCIDE, CR4_PGE, CR4_SMEP
from formal.model.state import Req, Vcpu
from specs.v5_17 import V5_17
from specs.v5_18 import V5_18

# lore links of the patches (Message-IDs <20220209170020.1775368-N-pbonzini@redhat.com>).
_LORE = "https://lore.kernel.org/kvm/20220209170020.1775368-{}-pbonzini@redhat.com/"
PATCH_1, PATCH_9, PATCH_10, PATCH_11, PATCH_12 = (_LORE.format(n) for n in (2, 10, 11, 12, 13))


class Rfc2022_02(V5_17):
    name = "rfc-2022-02"

    # 1/12 (PATCH_1): "KVM_MMU_EFER_ROLE_BITS = EFER_LME | EFER_NX"; set_efer resets the MMU
    # when either changes.  Identical to v5.18.
    efer_reset_bits = V5_18.efer_reset_bits

    # 9/12 (PATCH_9): fast_pgd_switch frees a special (PAE) current root and searches the cache
    # anyway; find_and_promote (v5.18: find_and_keep_current) frees the evicted root on a miss;
    # find_and_replace (v5.18: find_without_current) bubbles the prev roots up; a miss in
    # __kvm_mmu_new_pgd frees nothing more.  The posted code equals v5.18's.
    _kvm_mmu_new_pgd = V5_18._kvm_mmu_new_pgd
    fast_pgd_switch = V5_18.fast_pgd_switch
    cached_root_find_and_keep_current = V5_18.cached_root_find_and_keep_current
    cached_root_find_without_current = V5_18.cached_root_find_without_current

    # 10/12 (PATCH_10): init_mmu before new_pgd on nested CR3 loads.  Identical to v5.18.
    nested_vmx_load_cr3 = V5_18.nested_vmx_load_cr3
    nested_svm_load_cr3 = V5_18.nested_svm_load_cr3

    # 11/12 (PATCH_11): "new_role = vcpu->arch.mmu->mmu_role.base".  Identical to v5.18.
    kvm_mmu_new_pgd = V5_18.kvm_mmu_new_pgd

    # -- 12/12 (PATCH_12), "KVM: x86: do not unload MMU roots on all role changes" --

    def kvm_mmu_reset_context(self, v: Vcpu) -> None:
        """mmu.c + 12/12 (PATCH_12): "kvm_init_mmu(vcpu); kvm_mmu_new_pgd(vcpu,
        vcpu->arch.cr3);" -- no kvm_mmu_unload.  new_pgd works on vcpu->arch.mmu (the
        guest_mmu while L2 runs with nested EPT/NPT) with the freshly computed role: the cache
        is searched for (arch.cr3, role); on a miss the current root is freed and the next
        kvm_mmu_reload builds one for get_guest_pgd().  Every caller inherits this: MOV CR0/CR4,
        set_efer, SMM entry/exit, KVM_SET_SREGS."""
        self.note("kvm_mmu_reset_context")
        self.kvm_init_mmu(v)
        self.kvm_mmu_new_pgd(v, v.regs.cr3)

    def kvm_post_set_cr0(self, v: Vcpu, old_cr0: int, cr0: int) -> None:
        """x86.c + 12/12 (PATCH_12): "/* Flush the TLB if CR0 is changed 1 -> 0.  */" -- on a
        role-bit change, CR0.PG 1->0 unloads (every root of both MMUs) before the reset."""
        if (cr0 ^ old_cr0) & self.cr0_reset_bits:
            if old_cr0 & CR0_PG and not cr0 & CR0_PG:
                self.kvm_mmu_unload(v)
            self.kvm_mmu_reset_context(v)

    def kvm_post_set_cr4(self, v: Vcpu, old_cr4: int, cr4: int) -> None:
        """x86.c + 12/12 (PATCH_12): "Setting SMEP also needs to flush the TLB, in addition to
        resetting the MMU."  The "superset ... hence the usage of 'else if'" note is dropped but
        the chain stays: a role-bit change that also toggles PCIDE or PGE raises neither
        MMU_RELOAD nor TLB_FLUSH_GUEST."""
        if (cr4 ^ old_cr4) & self.cr4_reset_bits:
            self.kvm_mmu_reset_context(v)
            if cr4 & CR4_SMEP and not old_cr4 & CR4_SMEP:
                self.kvm_make_request(v, Req.TLB_FLUSH_GUEST)
        elif (cr4 ^ old_cr4) & CR4_PCIDE:
            self.kvm_make_request(v, Req.MMU_RELOAD)
        elif (cr4 ^ old_cr4) & CR4_PGE:
            self.kvm_make_request(v, Req.TLB_FLUSH_GUEST)

    def kvm_vcpu_reset(self, v: Vcpu, init_event: bool) -> None:
        """x86.c kvm_vcpu_reset + 12/12 (PATCH_12): "if (old_cr0 & X86_CR0_PG) {
        kvm_mmu_unload(vcpu); kvm_init_mmu(vcpu); }" -- all roots freed, no new_pgd; the INIT
        guest TLB flush (v5.14) is unchanged."""
        old_cr0 = v.regs.cr0
        new_cr0 = CR0_ET | old_cr0 & (CR0_NW | CR0_CD) if init_event \
            else CR0_ET | CR0_NW | CR0_CD
        self.vendor_set_cr0(v, new_cr0)
        v.regs.cr3 = 0
        self.vendor_set_cr4(v, 0)
        self.vendor_set_efer(v, 0)
        if old_cr0 & CR0_PG:
            self.kvm_mmu_unload(v)
            self.kvm_init_mmu(v)
        if init_event:
            self.kvm_make_request(v, Req.TLB_FLUSH_GUEST)

    def kvm_vcpu_after_set_cpuid(self, v: Vcpu) -> None:
        """mmu.c kvm_mmu_after_set_cpuid + 12/12 (PATCH_12): "Invalidate all MMU roles and
        roots" -- kvm_mmu_unload, then kvm_mmu_reset_context."""
        self.kvm_mmu_unload(v)
        self.kvm_mmu_reset_context(v)
