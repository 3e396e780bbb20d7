"""kvm_mmu_page_role and kvm_mmu_extended_role as bit words (arch/x86/include/asm/kvm_host.h).

A role is an int: the page role word in bits 31:0 and, for the cpu role, the extended role word
in bits 63:32 (union kvm_mmu_role / struct kvm_cpu_role, v5.17 .. v6.6).  Field positions follow
the bitfield order of the v6.x header; the encoding only has to be injective, since KVM only
ever compares role words for equality (is_root_usable, kvm_init_mmu).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from formal.model import bits
from formal.model.values import SymbolicValue, ite, neg, on

# union kvm_mmu_page_role (kvm_host.h): level:4 has_4_byte_gpte:1 quadrant:2 direct:1 access:3
# invalid:1 efer_nx:1 cr0_wp:1 smep_andnot_wp:1 smap_andnot_wp:1 ad_disabled:1 guest_mode:1
# passthrough:1 :5 smm:8.
LEVEL_SHIFT = 0
HAS_4_BYTE_GPTE = 1 << 4
DIRECT = 1 << 7
ACCESS_SHIFT = 8
ACC_ALL = 7
EFER_NX = 1 << 12
CR0_WP = 1 << 13
SMEP_ANDNOT_WP = 1 << 14
SMAP_ANDNOT_WP = 1 << 15
AD_DISABLED = 1 << 16
GUEST_MODE = 1 << 17
SMM_SHIFT = 24

# union kvm_mmu_extended_role (kvm_host.h), shifted into bits 63:32 of the cpu role.
EXT_SHIFT = 32
EXT_VALID = 1 << (EXT_SHIFT + 0)
EXT_EXECONLY = 1 << (EXT_SHIFT + 1)
EXT_CR4_PSE = 1 << (EXT_SHIFT + 2)
EXT_CR4_PKE = 1 << (EXT_SHIFT + 3)
EXT_CR4_SMAP = 1 << (EXT_SHIFT + 4)
EXT_CR4_SMEP = 1 << (EXT_SHIFT + 5)
EXT_CR4_LA57 = 1 << (EXT_SHIFT + 6)
EXT_EFER_LMA = 1 << (EXT_SHIFT + 7)

BASE_MASK = (1 << 32) - 1
LEVEL_MASK = 0xF

# mmu.h PT32E_ROOT_LEVEL / PT64_ROOT_4LEVEL.
PT32_ROOT_LEVEL = 2
PT32E_ROOT_LEVEL = 3
PT64_ROOT_4LEVEL = 4


@dataclass(frozen=True)
class RoleFacts:
    """How one kernel version computes roles where versions differ."""

    # v5.19 kvm_init_shadow_mmu sets root_role.efer_nx = true (the shadow MMU always uses NX);
    # before, the shadow root role copied the guest's EFER.NX.
    shadow_root_forces_nx: bool
    # The TDP root level KVM uses (kvm_mmu_get_tdp_level); 4 on hosts without LA57.
    tdp_level: int = PT64_ROOT_4LEVEL


def level(role: int) -> int:
    return role & LEVEL_MASK


def is_direct(role: int) -> bool:
    return role & DIRECT != 0


def calc_cpu_role(cr0: int, cr4: int, efer: int, smm: bool, guest_mode: bool) -> int:
    """What the guest's paging looks like: mmu.c kvm_calc_cpu_role (v5.19+), equivalently
    kvm_calc_mmu_role_common + kvm_calc_shadow_root_page_role_common (v5.17/v5.18).  Written
    without branches (`on`/`ite`) so that symbolic registers give one term, not a path each;
    on concrete registers (the simulator, the explicit search) the answer is remembered."""
    if any(isinstance(x, SymbolicValue) for x in (cr0, cr4, efer, smm, guest_mode)):
        return _cpu_role(cr0, cr4, efer, smm, guest_mode)
    return _concrete_cpu_role(cr0, cr4, efer, bool(smm), bool(guest_mode))


def _cpu_role(cr0: int, cr4: int, efer: int, smm: bool, guest_mode: bool) -> int:
    role = (ACC_ALL << ACCESS_SHIFT) | EXT_VALID | on(smm, 1 << SMM_SHIFT) \
        | on(guest_mode, GUEST_MODE)
    wp = cr0 & bits.CR0_WP != 0
    lma = efer & bits.EFER_LMA != 0
    pae = cr4 & bits.CR4_PAE != 0
    lvl = ite(lma, ite(cr4 & bits.CR4_LA57 != 0, 5, PT64_ROOT_4LEVEL),
              ite(pae, PT32E_ROOT_LEVEL, PT32_ROOT_LEVEL))
    paging = role | on(efer & bits.EFER_NX, EFER_NX) | on(wp, CR0_WP) \
        | on(cr4 & bits.CR4_SMEP, on(neg(wp), SMEP_ANDNOT_WP)) \
        | on(cr4 & bits.CR4_SMAP, on(neg(wp), SMAP_ANDNOT_WP)) \
        | on(neg(pae), HAS_4_BYTE_GPTE) | lvl << LEVEL_SHIFT \
        | on(cr4 & bits.CR4_PSE, EXT_CR4_PSE) | on(cr4 & bits.CR4_SMEP, EXT_CR4_SMEP) \
        | on(cr4 & bits.CR4_SMAP, EXT_CR4_SMAP) \
        | on(lma, EXT_EFER_LMA | on(cr4 & bits.CR4_PKE, EXT_CR4_PKE)
             | on(cr4 & bits.CR4_LA57, EXT_CR4_LA57))
    # ext.cr4_pke / cr4_la57 only describe 64-bit paging (kvm_calc_cpu_role, the lma terms).
    # Non-paging: direct and nothing else (kvm_calc_cpu_role, "if (!____is_cr0_pg(regs))").
    return ite(cr0 & bits.CR0_PG != 0, paging, role | DIRECT)


_concrete_cpu_role = lru_cache(maxsize=4096)(_cpu_role)


def shadow_root_role(cpu_role: int, facts: RoleFacts) -> int:
    """The role of the roots the shadow MMU builds (mmu.c kvm_init_shadow_mmu; v5.17/v5.18
    kvm_calc_shadow_mmu_root_page_role): the guest's page role, at least PAE-level."""
    role = cpu_role & BASE_MASK
    # "KVM uses PAE paging whenever the guest isn't using 64-bit paging."
    role = ite(level(role) < PT32E_ROOT_LEVEL, (role & ~LEVEL_MASK) | PT32E_ROOT_LEVEL, role)
    if facts.shadow_root_forces_nx:
        role |= EFER_NX
    return role


def tdp_root_role(smm: bool, guest_mode: bool, facts: RoleFacts) -> int:
    """mmu.c kvm_calc_tdp_mmu_root_page_role: invariant under guest CR0/CR4/EFER changes."""
    return (ACC_ALL << ACCESS_SHIFT) | DIRECT | CR0_WP | EFER_NX | facts.tdp_level \
        | on(smm, 1 << SMM_SHIFT) | on(guest_mode, GUEST_MODE)


def nested_tdp_root_role(smm: bool) -> int:
    """The guest_mmu's root role for L1's EPT/NPT tables (mmu.c kvm_calc_shadow_ept_root_page_role
    / kvm_init_shadow_npt_mmu): indirect, guest_mode=1, 4-level (EPTP[5:3] = 3 means 4 levels)."""
    return (ACC_ALL << ACCESS_SHIFT) | GUEST_MODE | CR0_WP | EFER_NX | PT64_ROOT_4LEVEL \
        | on(smm, 1 << SMM_SHIFT)


def describe(role: int) -> str:
    """A short human rendering, in the kernel's field names."""
    parts = [f"level={level(role)}"]
    for name, mask in (("direct", DIRECT), ("4byte", HAS_4_BYTE_GPTE), ("nx", EFER_NX),
                       ("wp", CR0_WP), ("smep&!wp", SMEP_ANDNOT_WP), ("smap&!wp", SMAP_ANDNOT_WP),
                       ("guest", GUEST_MODE)):
        if role & mask:
            parts.append(name)
    if role >> SMM_SHIFT & 0xFF:
        parts.append("smm")
    ext = [name for name, mask in (("pse", EXT_CR4_PSE), ("smep", EXT_CR4_SMEP),
                                   ("smap", EXT_CR4_SMAP), ("pke", EXT_CR4_PKE),
                                   ("la57", EXT_CR4_LA57), ("lma", EXT_EFER_LMA))
           if role & mask]
    if ext:
        parts.append("ext:" + "+".join(ext))
    return ",".join(parts)
