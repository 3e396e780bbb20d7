"""KVM as of v6.4.  Since v5.18: separate cpu_role/root_role and NX always on for shadow roots
(v5.19), and the CR0.WP fast path (v6.4, "KVM: x86: Do not unload MMU roots when only toggling
CR0.WP with TDP enabled").

The root cache (fast_pgd_switch, cached_root_find_and_keep_current,
cached_root_find_without_current, kvm_mmu_new_pgd, kvm_mmu_sync_prev_roots) is inherited from
V5_18, where it was introduced.  No v6.4 mmu.c is in the public code index searched (the
repositories named linux-6.4* there hold no arch/x86/kvm files), so v6.4 is bracketed, not read:
- below, v5.18 (mmu.c as read at b28cb0cd2c5e, specs/v5_18.py);
- above, two later mmu.c copies read for specs/v6_12.py: torvalds/linux @56ea38e436ea (dated
  v6.8..v6.10) and intel/tdx @6ee3a4ddf940 (a TDX branch on v6.11..v6.12).  Both have, line for
  line in what the model uses, V5_18's code: fast_pgd_switch frees a current root without a
  shadow page ("Limit reuse to 64-bit hosts+VMs without 'special' roots") and searches on;
  cached_root_find_and_keep_current rotates "C 0 1 2 3 ... 3 C 0 1 2" and frees the evicted
  root on a miss; cached_root_find_without_current bubbles the rest up and invalidates the last
  slot; kvm_mmu_new_pgd takes mmu->root_role, returns at once on a miss and otherwise requests
  KVM_REQ_LOAD_MMU_PGD only (sync and flush only with force_flush_and_sync_on_reuse);
  kvm_mmu_sync_prev_roots frees every prev root that is_unsync_root (sp->unsync ||
  sp->unsync_children; the model tests only the watched page, an approximation that issue 18
  item 3 is about and that every version since V5_17 shares).  kvm_mmu_free_roots was not read.
What differs between the brackets is names and checks the model does not see: mmu_role.base
became root_role (v5.19), is_root_usable compares root_to_sp(root)->role with a WARN,
is_unsync_root skips dummy roots.  That v6.4 equals both brackets is an assumption: a change made
in v6.4 and reverted by v6.8 would escape it."""

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
