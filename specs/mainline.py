"""`mainline`: the newest mainline tree readable in the public code index, dated after v6.18.

Tree read: torvalds/linux arch/x86/kvm/regs.c @7bb6284aa7b3 (the only stored version).  Dated
by content: kvm_set_cr0/cr3/cr4, kvm_post_set_cr0/cr4, load_pdptrs and __set_sregs have moved
out of x86.c into regs.c; EXPORT_SYMBOL_FOR_KVM_INTERNAL and the CET checks in
kvm_set_cr0/kvm_set_cr4 (both v6.18 material -- from the patches that add them, not checked
against a merge log); load_pdptrs walks vcpu->arch.gva_walk (struct kvm_pagewalk) where the
v6.10..v6.13 x86.c read for specs/v6_12.py has vcpu->arch.walk_mmu.  The exact release is not
known; the policy is named for what it is, the newest tree readable.

What changed since v6.12 on the modelled paths: nothing.
- kvm_set_cr3 (now regs.c): the same NOFLUSH strip, same-CR3 shortcut, kvm_mmu_new_pgd if CR3
  changed and kvm_invalidate_pcid(pcid) unless NOFLUSH.
- kvm_post_set_cr0 (regs.c): the CR0.WP fast path, TLB_FLUSH_GUEST on CR0.PG 1->0, reset on
  KVM_MMU_CR0_ROLE_BITS; the async-#PF handling on a PG toggle became a KVM_REQ_APF_READY
  request on PG 0->1 (not modelled: no MMU effect); no CR0.CD zap (gone since v6.12, see
  specs/v6_12.py).
- kvm_post_set_cr4 (regs.c): reset on KVM_MMU_CR4_ROLE_BITS; unload on PCIDE 0->1 without TDP;
  TLB_FLUSH_GUEST on a PGE toggle or PCIDE 1->0, else TLB_FLUSH_CURRENT on a PAE toggle or SMEP
  0->1 -- V5_18's.
- __set_sregs / kvm_vcpu_ioctl_x86_set_sregs2 (regs.c): kvm_mmu_reset_context followed by
  KVM_REQ_TLB_FLUSH_GUEST -- V6_7's.
Not read in this tree: x86.c (kvm_invalidate_pcid, vcpu_enter_guest, kvm_vcpu_flush_tlb_guest,
kvm_vcpu_reset, kvm_handle_invpcid), mmu/mmu.c, smm.c, vmx/nested.c, vmx/vmx.c and
svm/nested.c at a commit dated after v6.18: the index returned older versions of those files for
torvalds/linux.  They are taken from V6_12 (whose mmu.c reading is of a v6.8..v6.10 tree), and
kvm_invalidate_pcid is called by this regs.c with the v6.12 contract.  So this policy is V6_12
with the regs.c reading; its verdicts can differ from the kernel's only where the unread files
changed."""

from __future__ import annotations

from specs.v6_12 import V6_12


class Mainline(V6_12):
    name = "mainline"
