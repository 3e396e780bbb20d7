"""KVM as of v6.4.  Since v5.18: separate cpu_role/root_role and NX always on for shadow roots
(v5.19), and the CR0.WP fast path (v6.4, "KVM: x86: Do not unload MMU roots when only toggling
CR0.WP with TDP enabled").

The root cache (fast_pgd_switch, cached_root_find_and_keep_current,
cached_root_find_without_current, kvm_mmu_new_pgd) is inherited from V5_18, where it was
introduced.  What later list patches show of it -- mmu->root_role instead of mmu_role.base
(v5.19), the comments "Limit reuse to 64-bit hosts+VMs without 'special' roots" and "Return
immediately if no usable root was found, kvm_mmu_reload() will establish a valid root prior to
the next VM-Enter", root_to_sp() with a WARN -- renames and comments only, no change in what is
kept, freed or requested.  No v6.4 mmu.c was found in the kernel trees searched when this
policy was written, so that v6.4's root cache equals v5.18's is an assumption, not a reading of
the v6.4 tree."""

from __future__ import annotations

from formal.model.bits import CR0_PG, CR0_WP
from formal.model.roles import RoleFacts
from formal.model.state import Vcpu
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
