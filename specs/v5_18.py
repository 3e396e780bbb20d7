"""KVM as of v5.18: the parts of the Feb 2022 series that were merged.  CR4 flushes are
separated from the MMU reset, CR0.PG 1->0 flushes the guest TLB, EFER.LME is a role bit,
KVM_REQ_MMU_RELOAD is gone, the root cache is reworked (fast_pgd_switch ->
cached_root_find_and_keep_current / cached_root_find_without_current), kvm_mmu_new_pgd uses the
MMU's root role, and nested CR3 loads initialise the MMU before switching the pgd.

The root-cache commits are in the "First batch of KVM patches for 5.18" pull
(<20220321173215.2824704-1-pbonzini@redhat.com>): "KVM: x86/mmu: look for a cached PGD when going
from 32-bit to 64-bit" (v1 9/12, <20220209170020.1775368-10-pbonzini@redhat.com>), "KVM:
x86/mmu: load new PGD after the shadow MMU is initialized" (v1 10/12), "KVM: x86/mmu: Always use
current mmu's role when loading new PGD" (v1 11/12), "KVM: x86: Reinitialize context if host
userspace toggles EFER.LME" (v1 1/12).  The code below follows mmu.c as read at b28cb0cd2c5e
(the last mmu.c commit before the v5.18 tag)."""

from __future__ import annotations

from formal.model import roles
from formal.model.bits import CR0_PG, CR4_PAE, CR4_PCIDE, CR4_PGE, CR4_SMEP, EFER_LME, EFER_NX
from formal.model.kvm import ROOT_CURRENT
from formal.model.state import KVM_MMU_NUM_PREV_ROOTS, Req, Vcpu, invalid_root
from formal.model.values import on
from specs.v5_17 import V5_17


class V5_18(V5_17):
    name = "v5.18"

    # mmu.h v5.18 KVM_MMU_EFER_ROLE_BITS = EFER_LME | EFER_NX ("KVM: x86: Reinitialize context
    # if host userspace toggles EFER.LME", v1 1/12).
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

    # -- the root cache (mmu.c v5.18; v1 9/12 and 11/12 of the Feb 2022 series) --

    def kvm_mmu_new_pgd(self, v: Vcpu, new_pgd: int) -> None:
        """mmu.c v5.18 kvm_mmu_new_pgd ("KVM: x86/mmu: Always use current mmu's role when
        loading new PGD", v1 11/12): kvm_mmu_calc_root_page_role is gone and __kvm_mmu_new_pgd
        is folded in; the role is the already-initialised MMU's own mmu_role.base."""
        self._kvm_mmu_new_pgd(v, new_pgd, v.mmu.root_role)

    def _kvm_mmu_new_pgd(self, v: Vcpu, new_pgd: int, new_role: int) -> None:
        """mmu.c v5.18 kvm_mmu_new_pgd body (v1 9/12): on a miss return at once -- the current
        root was already freed by the cache search (or was invalid), and kvm_mmu_reload builds
        a new one before the next VM-entry; on a hit request LOAD_MMU_PGD only
        (force_flush_and_sync_on_reuse defaults to false)."""
        if not self.fast_pgd_switch(v, new_pgd, new_role):
            return
        self.kvm_make_request(v, Req.LOAD_MMU_PGD)

    def fast_pgd_switch(self, v: Vcpu, new_pgd: int, new_role: int) -> bool:
        """mmu.c v5.18 fast_pgd_switch ("KVM: x86/mmu: look for a cached PGD when going from
        32-bit to 64-bit", v1 9/12): "limit the caching to 64-bit hosts+VMs in order to avoid
        having to deal with PDPTEs" -- a valid current root without a shadow page (the special
        PAE root; the model's roots of level < 4) is freed first, and the cache is searched
        anyway.  The v5.17 gate on shadow_root_level/root_level >= 4 is gone.

        The searches below branch like the C (return on the first usable slot) instead of
        accumulating the slot conditions: kvm_mmu_new_pgd is a merge point
        (formal.symbolic.transition.MERGE_POINTS), and on the symbolic build the branch-free
        form's nested select_root terms made the later branches (kvm_mmu_reload) slower
        (docs/proving.md, "Cost")."""
        mmu = v.mmu
        special = mmu.root.valid & (roles.level(mmu.root.role) < roles.PT64_ROOT_4LEVEL)
        self.kvm_mmu_free_roots(v, mmu, on(special, ROOT_CURRENT))
        if mmu.root.valid:
            return self.cached_root_find_and_keep_current(v, new_pgd, new_role)
        return self.cached_root_find_without_current(v, new_pgd, new_role)

    def cached_root_find_and_keep_current(self, v: Vcpu, new_pgd: int, new_role: int) -> bool:
        """mmu.c v5.18 (v1 9/12 "cached_root_find_and_promote", renamed in review): "The swaps
        end up rotating the cache like this: C 0 1 2 3 ... 3 C 0 1 2": the current root is kept
        if usable, else swapped with prev_roots[0], [1], [2] in turn until a usable one is
        current.  A hit on prev i leaves [C, 0 .. i-1, rest]; a miss leaves [C, 0, 1] and
        frees the evicted old prev_roots[2] (kvm_mmu_free_roots(KVM_MMU_ROOT_CURRENT))."""
        mmu = v.mmu
        if self.is_root_usable(mmu.root, new_pgd, new_role):
            self.note(f"keep current root pgd={mmu.root.pgd:#x}")
            return True
        for i in range(KVM_MMU_NUM_PREV_ROOTS):
            mmu.root, mmu.prev_roots[i] = mmu.prev_roots[i], mmu.root
            if self.is_root_usable(mmu.root, new_pgd, new_role):
                self.note(f"switch to cached prev_roots[{i}] pgd={mmu.root.pgd:#x}")
                return True
        self.kvm_mmu_free_roots(v, mmu, ROOT_CURRENT)
        return False

    def cached_root_find_without_current(self, v: Vcpu, new_pgd: int, new_role: int) -> bool:
        """mmu.c v5.18 (v1 9/12 "cached_root_find_and_replace", renamed in review): with no
        valid current root, take the first usable prev root, "Bubble up the remaining roots"
        and invalidate the last slot."""
        mmu = v.mmu
        for i in range(KVM_MMU_NUM_PREV_ROOTS):
            if self.is_root_usable(mmu.prev_roots[i], new_pgd, new_role):
                self.note(f"switch to cached prev_roots[{i}] pgd={mmu.prev_roots[i].pgd:#x}")
                mmu.root, mmu.prev_roots[i] = mmu.prev_roots[i], mmu.root
                for j in range(i, KVM_MMU_NUM_PREV_ROOTS - 1):
                    mmu.prev_roots[j] = mmu.prev_roots[j + 1]
                mmu.prev_roots[KVM_MMU_NUM_PREV_ROOTS - 1] = invalid_root()
                return True
        return False

    # -- nested CR3 loads ("KVM: x86/mmu: load new PGD after the shadow MMU is initialized",
    #    v1 10/12) --

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
