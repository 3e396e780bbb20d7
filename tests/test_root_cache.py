"""The root cache: fast_pgd_switch's rotation on every version (hit on each slot, miss and
eviction of the LRU, switch without a current root)."""

from __future__ import annotations

import pytest

from formal.model.state import CONFIGS, Regs, Root, Vcpu
from specs import POLICIES

ROLE = 0x3704  # the 4-level shadow root role of tests.conftest.LONG_MODE
C, P0, P1, P2, NEW = 0x1000, 0x2000, 0x3000, 0x4000, 0x5000
OLD_STYLE = {"v5.12", "v5.13"}  # kvm_mmu_new_pgd(vcpu, pgd, skip_tlb_flush, skip_mmu_sync)


def setup(policy: str, current: bool = True):
    p = POLICIES[policy](CONFIGS["shadow"])
    v = Vcpu(regs=Regs(0x8001_0033, C, 0x20, 0xD00))
    p.kvm_init_mmu(v)
    mmu = v.root_mmu
    mmu.root = Root(valid=current, pgd=C if current else 0, role=ROLE if current else 0)
    mmu.prev_roots = [Root(valid=True, pgd=pgd, role=ROLE) for pgd in (P0, P1, P2)]
    return p, v


def new_pgd(p, v, pgd: int) -> None:
    if p.name in OLD_STYLE:
        p.kvm_mmu_new_pgd(v, pgd, True, True)
    else:
        p.kvm_mmu_new_pgd(v, pgd)


def show(r: Root) -> int | None:
    return r.pgd if r.valid else None


def pgds(v) -> tuple[int | None, list[int | None]]:
    mmu = v.root_mmu
    return show(mmu.root), [show(r) for r in mmu.prev_roots]


@pytest.mark.parametrize("policy", list(POLICIES))
def test_hit_on_current_keeps_everything(policy):
    p, v = setup(policy)
    new_pgd(p, v, C)
    assert pgds(v) == (C, [P0, P1, P2])


@pytest.mark.parametrize("policy", list(POLICIES))
@pytest.mark.parametrize("slot,want", [
    (0, (P0, [C, P1, P2])),
    (1, (P1, [C, P0, P2])),
    (2, (P2, [C, P0, P1])),
])
def test_hit_on_prev_slot_makes_it_current_and_shifts_the_newer_ones(policy, slot, want):
    p, v = setup(policy)
    new_pgd(p, v, (P0, P1, P2)[slot])
    assert pgds(v) == want
    assert "request LOAD_MMU_PGD" in p.log


@pytest.mark.parametrize("policy", list(POLICIES))
def test_miss_evicts_the_lru_and_leaves_no_current_root(policy):
    p, v = setup(policy)
    new_pgd(p, v, NEW)
    assert pgds(v) == (None, [C, P0, P1])
    assert f"free current root pgd={P2:#x}" in p.log
    v.regs.cr3 = NEW
    p.vcpu_enter_guest(v)
    assert pgds(v) == (NEW, [C, P0, P1])


@pytest.mark.parametrize("policy", list(POLICIES))
def test_role_mismatch_is_a_miss(policy):
    p, v = setup(policy)
    v.root_mmu.prev_roots[0].role = ROLE ^ 1 << 13  # another cr0_wp
    new_pgd(p, v, P0)
    assert pgds(v)[0] is None


@pytest.mark.parametrize("policy,want", [
    # v5.17 and earlier swap through the invalid current root like any other.
    ("v5.12", (P1, [None, P0, P2])), ("v5.17", (P1, [None, P0, P2])),
    # v5.18 already has cached_root_find_without_current ("KVM: x86/mmu: look for a cached PGD
    # when going from 32-bit to 64-bit", v1 9/12, merged for 5.18; read in mmu.c at
    # b28cb0cd2c5e): "Bubble up the remaining roots".  So do the later versions and the RFC,
    # which carries patch 9 as posted (the same code under the name find_and_replace).
    ("v5.18", (P1, [P0, P2, None])), ("rfc-2022-02", (P1, [P0, P2, None])),
    ("v6.4", (P1, [P0, P2, None])), ("v6.6", (P1, [P0, P2, None])),
])
def test_switch_without_a_current_root(policy, want):
    p, v = setup(policy, current=False)
    new_pgd(p, v, P1)
    assert pgds(v) == want
