"""Role computation against the bit-level definitions of kvm_host.h / mmu.c, for every
version."""

from __future__ import annotations

import itertools

import pytest

from formal.model import bits, roles
from formal.model.state import CONFIGS, Regs, Vcpu
from specs import POLICIES

CR0S = [0x33, 0x8000_0033, 0x8001_0033]  # paging off; PG without WP; PG|WP
CR4S = [0x0, 0x20, 0x10, 0x30_0020, 0x40_0020, 0x1020, 0x10_0020]  # PSE, PAE, SMEP/SMAP, PKE
EFERS = [0x0, 0x800, 0x500, 0xD00]


def field(role: int, shift: int, width: int = 1) -> int:
    return role >> shift & ((1 << width) - 1)


@pytest.mark.parametrize("cr0,cr4,efer,smm,guest", list(itertools.product(
    CR0S, CR4S, EFERS, [False, True], [False, True])))
def test_cpu_role_fields_follow_the_registers(cr0, cr4, efer, smm, guest):
    role = roles.calc_cpu_role(cr0, cr4, efer, smm, guest)
    assert field(role, 24, 8) == int(smm)
    assert field(role, 17) == int(guest)
    assert field(role, 8, 3) == 7  # access = ACC_ALL
    assert field(role, 32) == 1  # ext.valid
    pg = bool(cr0 & bits.CR0_PG)
    assert field(role, 7) == int(not pg)  # direct iff paging is off
    if not pg:
        # "if (!____is_cr0_pg(regs))": direct and nothing else
        assert role & ~(roles.DIRECT | 0xFF << 24 | roles.GUEST_MODE | 7 << 8) \
            == roles.EXT_VALID
        return
    wp = bool(cr0 & bits.CR0_WP)
    lma = bool(efer & bits.EFER_LMA)
    pae = bool(cr4 & bits.CR4_PAE)
    la57 = bool(cr4 & bits.CR4_LA57)
    assert field(role, 0, 4) == ((5 if la57 else 4) if lma else 3 if pae else 2)
    assert field(role, 4) == int(not pae)  # has_4_byte_gpte
    assert field(role, 12) == int(bool(efer & bits.EFER_NX))
    assert field(role, 13) == int(wp)
    assert field(role, 14) == int(bool(cr4 & bits.CR4_SMEP) and not wp)
    assert field(role, 15) == int(bool(cr4 & bits.CR4_SMAP) and not wp)
    assert field(role, 34) == int(bool(cr4 & bits.CR4_PSE))
    assert field(role, 35) == int(bool(cr4 & bits.CR4_PKE) and lma)
    assert field(role, 36) == int(bool(cr4 & bits.CR4_SMAP))
    assert field(role, 37) == int(bool(cr4 & bits.CR4_SMEP))
    assert field(role, 38) == int(la57 and lma)
    assert field(role, 39) == int(lma)


def _vcpu(cr0: int, cr4: int, efer: int) -> Vcpu:
    return Vcpu(regs=Regs(cr0, 0x1000, cr4, efer))


@pytest.mark.parametrize("policy", list(POLICIES))
def test_shadow_root_role_is_at_least_pae_and_nx_only_forced_from_v5_19(policy):
    p = POLICIES[policy](CONFIGS["shadow"])
    v = _vcpu(0x8001_0033, 0x0, 0x0)  # 32-bit paging, EFER.NX=0
    role = p.calc_root_role(v)
    assert roles.level(role) == 3  # PT32E_ROOT_LEVEL for a 2-level guest
    assert field(role, 4) == 1  # still has_4_byte_gpte
    forced = policy in ("v6.4", "v6.6", "v6.7", "v6.12", "mainline")
    assert field(role, 12) == int(forced)
    assert role >> 32 == 0  # the root role is the page role word only


@pytest.mark.parametrize("policy", list(POLICIES))
def test_tdp_root_role_ignores_guest_paging_but_not_smm(policy):
    p = POLICIES[policy](CONFIGS["tdp"])
    seen = {p.calc_root_role(_vcpu(cr0, cr4, efer))
            for cr0, cr4, efer in itertools.product(CR0S, CR4S, EFERS)}
    assert seen == {0x3784}  # level 4, direct, ACC_ALL, efer_nx, cr0_wp
    v = _vcpu(0x33, 0, 0)
    v.smm = True
    assert p.calc_root_role(v) == 0x3784 | 1 << 24
