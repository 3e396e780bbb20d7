"""KVM as of v6.12 (LTS): v6.7 plus the v6.5 rewrite of INVLPG through kvm_mmu_invalidate_addr.

Trees read (public code index, 2026-12-05; each dated by its own content, none at the v6.12 tag):
- torvalds/linux arch/x86/kvm/mmu/mmu.c @56ea38e436ea, dated v6.8..v6.10: kvm_gmem_get_pfn and
  kvm_arch_nr_memslot_as_ids (>= 6.8), __kvm_mmu_honors_guest_mtrrs and
  static_call(kvm_x86_flush_tlb_current) (<= 6.10).  Read: is_root_usable,
  cached_root_find_and_keep_current, cached_root_find_without_current, fast_pgd_switch,
  kvm_mmu_new_pgd, is_unsync_root, kvm_mmu_sync_roots, kvm_mmu_sync_prev_roots,
  kvm_mmu_reset_context, kvm_mmu_load, kvm_mmu_unload, kvm_mmu_invalidate_addr, kvm_mmu_invlpg,
  kvm_mmu_invpcid_gva, kvm_init_shadow_{npt,ept}_mmu.  The root cache is V5_18's line for line.
- intel/tdx arch/x86/kvm/mmu/mmu.c @6ee3a4ddf940, a TDX development branch on v6.11..v6.12:
  kvm_x86_call() and kvm_arch_vcpu_pre_fault_memory (>= 6.11), kvm_release_pfn_clean and
  __gfn_to_pfn_memslot in the fault path (<= 6.12).  Read: is_root_usable,
  cached_root_find_and_keep_current, cached_root_find_without_current, fast_pgd_switch,
  kvm_mmu_new_pgd -- identical to the v6.8..v6.10 copy.  The closest reading of v6.12's mmu.c.
- an x86.c the index does not name (find_string id 76668769), dated v6.10..v6.13:
  kvm_x86_call() (>= 6.10), guest_can_use()/guest_cpuid_has() (<= 6.13).  Read:
  kvm_post_set_cr0, kvm_post_set_cr4, kvm_set_cr4, kvm_invalidate_pcid, kvm_set_cr3: the same
  requests as V6_7's, and kvm_post_set_cr0 no longer zaps on a CR0.CD toggle.
- torvalds/linux arch/x86/kvm/regs.c @7bb6284aa7b3 (the newest tree, specs/mainline.py) has the
  same kvm_post_set_cr0/cr4, kvm_set_cr3, kvm_invalidate_pcid and __set_sregs bodies, so v6.12
  (between the two) has them too.
- smm.c: torvalds/linux @5944e723af9c (static_call(), so <= 6.10): kvm_smm_changed, enter_smm,
  rsm_enter_protected_mode as Common models them.
Not read in a tree dated >= v6.8: vmx/nested.c (nested_vmx_transition_tlb_flush,
nested_vmx_load_cr3, handle_invvpid; only the v6.12 patch's hunks below), svm/nested.c, and the
rest of x86.c (set_efer, vcpu_enter_guest, kvm_vcpu_flush_tlb_guest, kvm_handle_invpcid,
record_steal_time, kvm_vcpu_reset).  Those are taken unchanged from V6_7 -- an assumption, not
a reading; __set_sregs is read in the newer regs.c (specs/mainline.py).

What changed since v6.7, and what the model does with it:
- INVLPG (6.5, before v6.6): kvm_mmu_invlpg is kvm_mmu_invalidate_addr(walk_mmu, gva,
  KVM_MMU_ROOTS_ALL), which flushes the gva in hardware first and then syncs the roots if the MMU
  has sync_spte.  Written out below.  It is equivalent on the model to V5_12's body, which
  V6_6/V6_7 keep (same syncs, same flush; their order does not change the ghost state).
  kvm_mmu_invpcid_gva's 6.5 form (a root mask handed to kvm_mmu_invalidate_addr) is likewise
  equivalent to V5_12's, which is inherited.
- vmx_get_current_vpid (vmx.c), "KVM: nVMX: Treat vpid01 as current if L2 is active, but with
  VPID disabled" (<20241031202011.1580522-1-seanjc@google.com>, in "KVM fixes for Linux
  6.12-rc8 or final", <20241112181700.384873-1-pbonzini@redhat.com>): while L2 runs without
  vmcs12 VPID, TLB_FLUSH_CURRENT/GUEST flush vpid01 (L1's, on which KVM runs that L2) instead of
  vpid02.  Modelled by current_vpid01 below (the hardware context each level runs in:
  formal.model.kvm.Mechanism.hw_ctx1; docs/model.md "Hardware tags").  The policy's requests
  are unchanged; only the hardware target differs.
- CR0.CD: the kvm_zap_gfn_range on a CR0.CD toggle (honoured guest MTRRs) is gone from
  kvm_post_set_cr0; the model never had it (it zaps SPTEs, it frees no root and requests no
  guest TLB flush).
Everything else on the modelled paths is v6.7's."""

from __future__ import annotations

from formal.model import arch, roles
from formal.model.kvm import ROOT_CURRENT, ROOT_PREVIOUS, ROOTS_ALL
from formal.model.state import Vcpu
from formal.model.values import truth
from specs.v6_7 import V6_7


class V6_12(V6_7):
    name = "v6.12"

    def current_vpid01(self, v: Vcpu) -> object:
        """vmx.c v6.12 vmx_get_current_vpid: vpid02 only "if (is_guest_mode(vcpu) &&
        nested_cpu_has_vpid(get_vmcs12(vcpu)))", else vpid01 (<20241031202011.1580522-1-
        seanjc@google.com>)."""
        return self.runs_on_vpid01(v)

    def kvm_mmu_invlpg(self, v: Vcpu, gva: int) -> None:
        """mmu.c v6.5+ kvm_mmu_invlpg: "INVLPG is required to invalidate any global mappings
        for the VA, irrespective of PCID.  Blindly sync all roots" -- through walk_mmu, which is
        the nested MMU while L2 runs under nested EPT/NPT, else root_mmu."""
        self.kvm_mmu_invalidate_addr(v, walk_mmu_is_nested=v.mmu_is_guest, addr=gva,
                                     roots=ROOTS_ALL)

    def kvm_mmu_invalidate_addr(self, v: Vcpu, walk_mmu_is_nested: bool, addr: int,
                                roots: int) -> None:
        """mmu.c v6.5+ kvm_mmu_invalidate_addr for mmu = walk_mmu (never the guest_mmu here):
        a non-canonical address is a NOP, else flush the gva in hardware; then, if the MMU has
        sync_spte (NULL for the nested MMU and for direct MMUs: init_kvm_nested_mmu,
        init_kvm_tdp_mmu, nonpaging_init_context), sync the gva in the requested roots
        (__kvm_mmu_invalidate_addr returns on an invalid root)."""
        if not arch.canonical(addr):
            return
        self.vendor_flush_tlb_gva(v, addr)
        mmu = v.mmu
        if walk_mmu_is_nested or roles.is_direct(mmu.root_role):
            return
        self.invlpg_root(v, mmu.root, addr, mmu.root.valid & truth(roots & ROOT_CURRENT))
        for i, prev in enumerate(mmu.prev_roots):
            self.invlpg_root(v, prev, addr, prev.valid & truth(roots & ROOT_PREVIOUS(i)))
