"""KVM as of v6.4.  Since v5.18: separate cpu_role/root_role and NX always on for shadow roots
(v5.19), the root cache rewritten as cached_root_find_and_keep_current /
cached_root_find_without_current with special (PAE) roots never cached (v6.0), and the CR0.WP
fast path (v6.4, "KVM: x86: Do not unload MMU roots when only toggling CR0.WP with TDP
enabled")."""

from __future__ import annotations

from formal import roles
from formal.bits import CR0_PG, CR0_WP
from formal.kvm import ROOT_CURRENT
from formal.roles import RoleFacts
from formal.state import KVM_MMU_NUM_PREV_ROOTS, Req, Vcpu, invalid_root
from specs.v5_18 import V5_18


class V6_4(V5_18):
    name = "v6.4"

    # mmu.c v5.19+ kvm_init_shadow_mmu: "root_role.efer_nx = true".
    role_facts = RoleFacts(shadow_root_forces_nx=True)

    def kvm_post_set_cr0(self, v: Vcpu, old_cr0: int, cr0: int) -> None:
        """x86.c v6.4 kvm_post_set_cr0: "If paging is disabled, no updates are needed as there
        are no permission bits to emulate.  If TDP is enabled, the MMU's metadata needs to be
        updated ... but there's no need to unload the root as CR0.WP doesn't affect SPTEs."""
        if cr0 ^ old_cr0 == CR0_WP:
            if not cr0 & CR0_PG:
                return
            if self.tdp_enabled:
                self.kvm_init_mmu(v)
                return
        super().kvm_post_set_cr0(v, old_cr0, cr0)

    def _kvm_mmu_new_pgd(self, v: Vcpu, new_pgd: int, new_role: int) -> None:
        """mmu.c v6.x kvm_mmu_new_pgd: "Return immediately if no usable root was found,
        kvm_mmu_reload() will establish a valid root prior to the next VM-Enter."""
        if not self.fast_pgd_switch(v, new_pgd, new_role):
            return
        self.kvm_make_request(v, Req.LOAD_MMU_PGD)

    def fast_pgd_switch(self, v: Vcpu, new_pgd: int, new_role: int) -> bool:
        """mmu.c v6.x fast_pgd_switch: "Limit reuse to 64-bit hosts+VMs without 'special'
        roots"; a special (PAE) root is freed first."""
        mmu = v.mmu
        if mmu.root.valid and roles.level(mmu.root.role) < roles.PT64_ROOT_4LEVEL:
            self.kvm_mmu_free_roots(v, mmu, ROOT_CURRENT)
        if mmu.root.valid:
            return self.cached_root_find_and_keep_current(v, new_pgd, new_role)
        return self.cached_root_find_without_current(v, new_pgd, new_role)

    def cached_root_find_and_keep_current(self, v: Vcpu, new_pgd: int, new_role: int) -> bool:
        """mmu.c: rotate C 0 1 2 -> hit on prev i leaves [C, 0 .. i-1, rest]; a miss leaves
        [C, 0, 1] and frees the old prev_roots[2]."""
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
        """mmu.c: take the first usable prev root and "bubble up the remaining roots"."""
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
