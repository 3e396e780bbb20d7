"""The saturated-TLB oracle: one test per row of the docs/design.md §2 invalidation table (Intel SDM
Vol. 3A §4.10.4.1), pinning exactly which entries each operation leaves behind, globals included.

Most tests start from `four_entries`: CR4.PCIDE=1 and CR4.PGE=1, a user non-global page A and a
supervisor global page G cached under PCID 1 and again under PCID 2 (the current one).  Entries
are named by (PCID, page, global).  Tests fill explicitly (no watched addresses), so what is left
after an operation is exactly what it retained.
"""

from __future__ import annotations

import pytest

from formal.concrete.paging import (
    FrameAllocator,
    Memory,
    Mode,
    Perms,
    Translation,
)
from formal.concrete.pte import PTE_A, PTE_G, PTE_P, PTE_RW, PTE_US
from formal.concrete.tlb_oracle import TlbOracle
from formal.model import bits
from formal.model.bits import PAGE_2M, PAGE_4K
from formal.model.state import Regs, Vendor
from tests.support.oracle import allowed
from tests.support.pagetables import PageTables

VA_A = 0x0040_0000
VA_G = 0x0060_0000
A1, A2, G = 0x1000_0000, 0x2000_0000, 0x3000_0000  # frames: A under root 1 / root 2, G in both
USER_RW = PTE_P | PTE_RW | PTE_US | PTE_A
CR0 = bits.CR0_PG | bits.CR0_PE | bits.CR0_WP
CR4 = bits.CR4_PAE | bits.CR4_PGE
EFER = bits.EFER_LME | bits.EFER_LMA | bits.EFER_NX

ALL = {(1, VA_A, False), (1, VA_G, True), (2, VA_A, False), (2, VA_G, True)}


def two_roots(mode: Mode = Mode.LEVEL4) -> tuple[Memory, PageTables, PageTables]:
    mem = Memory()
    alloc = FrameAllocator(0x10_0000)
    roots = PageTables(mem, mode, alloc), PageTables(mem, mode, alloc)
    for pt, frame_a in zip(roots, (A1, A2), strict=True):
        pt.map(VA_A, frame_a, USER_RW)
        pt.map(VA_G, G, PTE_P | PTE_RW | PTE_A | PTE_G)
    return mem, *roots


def tags(oracle: TlbOracle) -> set[tuple[int, int, bool]]:
    return {(e.pcid, e.page, e.global_) for e in oracle.entries}


def fill_both(oracle: TlbOracle) -> None:
    assert oracle.fill(VA_A) is not None
    assert oracle.fill(VA_G) is not None


def four_entries(vendor: Vendor = Vendor.INTEL,
                 cr4: int = 0) -> tuple[TlbOracle, PageTables, PageTables]:
    mem, root1, root2 = two_roots()
    regs = Regs(cr0=CR0, cr3=root1.cr3(1), cr4=CR4 | bits.CR4_PCIDE | cr4, efer=EFER)
    oracle = TlbOracle(mem, regs, vendor=vendor)
    fill_both(oracle)
    oracle.mov_cr3(root2.cr3(2) | bits.CR3_NOFLUSH)
    fill_both(oracle)
    assert tags(oracle) == ALL
    return oracle, root1, root2


def pcid0_entries(cr4: int = CR4) -> tuple[TlbOracle, PageTables, PageTables]:
    """CR4.PCIDE=0: A and G cached under PCID 000H."""
    mem, root1, root2 = two_roots()
    oracle = TlbOracle(mem, Regs(cr0=CR0, cr3=root1.cr3(), cr4=cr4, efer=EFER))
    fill_both(oracle)
    assert tags(oracle) == {(0, VA_A, False), (0, VA_G, cr4 & bits.CR4_PGE != 0)}
    return oracle, root1, root2


# Row: MOV CR0 changing PG 1->0 -> everything, all PCIDs, globals too.

def test_mov_cr0_clearing_pg_flushes_everything_including_globals():
    oracle, _, _ = pcid0_entries()
    oracle.mov_cr0(CR0 & ~bits.CR0_PG)
    assert tags(oracle) == set()
    assert oracle.fill(VA_A) is None  # nothing is cached without paging
    oracle.mov_cr0(CR0)  # PG 0->1 brings nothing back
    assert tags(oracle) == set()


# Row: MOV CR0 changing WP, PG 0->1, CD/NW -> nothing required.

@pytest.mark.parametrize("cr0", [CR0 & ~bits.CR0_WP, CR0 | bits.CR0_CD,
                                 CR0 | bits.CR0_CD | bits.CR0_NW])
def test_mov_cr0_changing_wp_cd_nw_invalidates_nothing(cr0):
    oracle, _, _ = four_entries()
    oracle.mov_cr0(cr0)
    assert tags(oracle) == ALL


# Row: MOV CR3 with PCIDE=0 -> PCID 000H, non-global.

def test_mov_cr3_without_pcide_flushes_pcid0_but_not_globals():
    oracle, _, root2 = pcid0_entries()
    oracle.mov_cr3(root2.cr3())
    assert tags(oracle) == {(0, VA_G, True)}


# Row: MOV CR3 with PCIDE=1, bit 63 clear -> the new PCID, non-global.

def test_mov_cr3_with_pcide_flushes_the_new_pcid_but_not_its_globals():
    oracle, root1, _ = four_entries()
    oracle.mov_cr3(root1.cr3(1))
    assert tags(oracle) == ALL - {(1, VA_A, False)}


# Row: MOV CR3 with PCIDE=1, bit 63 set -> nothing required.

def test_mov_cr3_noflush_keeps_every_entry():
    oracle, root1, _ = four_entries()
    oracle.mov_cr3(root1.cr3(1) | bits.CR3_NOFLUSH)
    assert tags(oracle) == ALL
    assert oracle.regs.cr3 == root1.cr3(1)  # bit 63 is not stored


# Row: MOV CR4 toggling PGE, or PCIDE 1->0 -> everything, all PCIDs, globals too.

@pytest.mark.parametrize("cleared", [bits.CR4_PGE, bits.CR4_PCIDE], ids=["PGE", "PCIDE"])
def test_mov_cr4_clearing_pge_or_pcide_flushes_everything(cleared):
    oracle, _, _ = four_entries()
    oracle.mov_cr4(oracle.regs.cr4 & ~cleared)
    assert tags(oracle) == set()


def test_mov_cr4_setting_pge_flushes_everything():
    oracle, _, _ = pcid0_entries(cr4=bits.CR4_PAE)
    assert tags(oracle) == {(0, VA_A, False), (0, VA_G, False)}  # not global while PGE=0
    oracle.mov_cr4(CR4)
    assert tags(oracle) == set()


# Row: MOV CR4 toggling PAE, or SMEP 0->1 -> the current PCID (Intel); AMD flushes everything.

def test_mov_cr4_setting_smep_flushes_current_pcid_including_its_globals():
    oracle, _, _ = four_entries()
    oracle.mov_cr4(oracle.regs.cr4 | bits.CR4_SMEP)
    assert tags(oracle) == {(1, VA_A, False), (1, VA_G, True)}


def test_mov_cr4_toggling_pae_flushes_current_pcid():
    mem, root1, _ = two_roots(Mode.BITS32)
    regs = Regs(cr0=CR0, cr3=root1.cr3(), cr4=bits.CR4_PGE, efer=0)
    oracle = TlbOracle(mem, regs)
    fill_both(oracle)
    assert tags(oracle) == {(0, VA_A, False), (0, VA_G, True)}
    oracle.mov_cr4(bits.CR4_PGE | bits.CR4_PAE)
    assert tags(oracle) == set()


def test_mov_cr4_setting_smep_on_amd_flushes_every_pcid():
    oracle, _, _ = four_entries(vendor=Vendor.AMD)
    oracle.mov_cr4(oracle.regs.cr4 | bits.CR4_SMEP)
    assert tags(oracle) == set()


# Row: MOV CR4 changing PCIDE 0->1, SMAP, PKE, PSE, SMEP 1->0 -> nothing required (AMD: PKE 0->1
# flushes everything).

@pytest.mark.parametrize("before,after", [
    (0, bits.CR4_SMAP), (bits.CR4_SMAP, 0), (0, bits.CR4_PKE), (0, bits.CR4_PSE),
    (bits.CR4_PSE, 0), (bits.CR4_SMEP, 0)],
    ids=["set-SMAP", "clear-SMAP", "set-PKE", "set-PSE", "clear-PSE", "clear-SMEP"])
def test_mov_cr4_changing_use_time_bits_invalidates_nothing(before, after):
    oracle, _, _ = four_entries(cr4=before)
    oracle.mov_cr4(oracle.regs.cr4 & ~before | after)
    assert tags(oracle) == ALL


def test_mov_cr4_setting_pcide_invalidates_nothing():
    oracle, _, _ = pcid0_entries()
    oracle.mov_cr4(CR4 | bits.CR4_PCIDE)
    assert tags(oracle) == {(0, VA_A, False), (0, VA_G, True)}
    assert [e.pcid for e in oracle.usable(VA_A)] == [0]  # still the current PCID (CR3[11:0]=0)


def test_mov_cr4_setting_pke_on_amd_flushes_everything():
    oracle, _, _ = four_entries(vendor=Vendor.AMD)
    oracle.mov_cr4(oracle.regs.cr4 | bits.CR4_PKE)
    assert tags(oracle) == set()


# Row: INVLPG va -> va in the current PCID, plus global entries for va in any PCID.

def test_invlpg_of_a_non_global_page_flushes_it_in_the_current_pcid_only():
    oracle, _, _ = four_entries()
    oracle.invlpg(VA_A + 0x123)
    assert tags(oracle) == ALL - {(2, VA_A, False)}


def test_invlpg_of_a_global_page_flushes_it_in_every_pcid():
    oracle, _, _ = four_entries()
    oracle.invlpg(VA_G)
    assert tags(oracle) == {(1, VA_A, False), (2, VA_A, False)}


def test_invlpg_anywhere_in_a_large_page_flushes_the_whole_page():
    mem = Memory()
    pt = PageTables(mem, Mode.LEVEL4, FrameAllocator(0x10_0000))
    pt.map(0x20_0000, 0x4000_0000, USER_RW, size=PAGE_2M)
    oracle = TlbOracle(mem, Regs(cr0=CR0, cr3=pt.cr3(), cr4=CR4, efer=EFER))
    entry = oracle.fill(0x20_0000)
    assert entry is not None and (entry.page, entry.size) == (0x20_0000, PAGE_2M)
    oracle.invlpg(0x3F_F000)  # the last 4 KiB of the 2 MiB page
    assert oracle.entries == {}


# Row: INVPCID 0 (address) / 1 (single context) / 2 (all incl. global) / 3 (all non-global).

@pytest.mark.parametrize("kind,pcid,va,left", [
    (0, 1, VA_A, ALL - {(1, VA_A, False)}),
    (0, 1, VA_G, ALL),  # individual-address spares global translations
    (1, 1, 0, ALL - {(1, VA_A, False)}),
    (2, 0, 0, set()),
    (3, 0, 0, {(1, VA_G, True), (2, VA_G, True)}),
], ids=["individual-address", "individual-address-global", "single-context",
        "all-context-incl-globals", "all-context"])
def test_invpcid(kind, pcid, va, left):
    oracle, _, _ = four_entries()
    oracle.invpcid(kind, pcid, va)
    assert tags(oracle) == left


def test_invpcid_rejects_unknown_types():
    oracle, _, _ = four_entries()
    with pytest.raises(ValueError, match="type 4"):
        oracle.invpcid(4)


# Row: SMI / RSM -> AMD: everything; Intel: not listed.

@pytest.mark.parametrize("vendor,left", [(Vendor.INTEL, ALL), (Vendor.AMD, set())])
def test_smi_and_rsm(vendor, left):
    oracle, _, _ = four_entries(vendor=vendor)
    saved = Regs(oracle.regs.cr0, oracle.regs.cr3, oracle.regs.cr4, oracle.regs.efer)
    oracle.smi(Regs(cr0=bits.CR0_ET, cr3=saved.cr3, cr4=0, efer=0))
    assert tags(oracle) == left
    oracle.rsm(saved)
    assert tags(oracle) == left
    assert oracle.regs == saved


def test_paging_off_serves_the_physical_address_and_no_entry_until_paging_is_back():
    """SDM §4.1.1: with CR0.PG=0 linear addresses are physical; §4.10.2.3: the TLBs cache only
    translations through paging structures.  An entry SMM entry did not invalidate (Intel)
    serves again after RSM."""
    oracle, _, _ = pcid0_entries()
    saved = Regs(oracle.regs.cr0, oracle.regs.cr3, oracle.regs.cr4, oracle.regs.efer)
    cached = Translation(A1, PAGE_4K, False, Perms(True, True, False))
    oracle.smi(Regs(cr0=bits.CR0_ET, cr3=saved.cr3, cr4=0, efer=0))
    assert tags(oracle) == {(0, VA_A, False), (0, VA_G, True)}  # kept, but not usable
    assert oracle.usable(VA_A) == [] and not allowed(oracle, VA_A, cached)
    assert allowed(oracle, VA_A | 0x10, Translation(VA_A | 0x10, PAGE_4K, False, cached.perms))
    assert oracle.explain(VA_A) == \
        "fresh walk of 0x400000 under PCID 0x0: paging disabled\nretained: none"
    oracle.rsm(saved)
    assert [e.frame for e in oracle.usable(VA_A)] == [A1]


# Row: INIT -> everything.

def test_init_flushes_everything_and_resets_registers():
    oracle, _, _ = four_entries()
    oracle.init()
    assert tags(oracle) == set()
    assert oracle.mode is Mode.NONE
    assert oracle.regs == Regs(0x10, 0, 0, 0)


def test_init_keeps_cr0_cd_and_nw():
    oracle, _, _ = four_entries()
    oracle.mov_cr0(CR0 | bits.CR0_CD | bits.CR0_NW)
    oracle.init()
    assert oracle.regs.cr0 == bits.CR0_CD | bits.CR0_NW | bits.CR0_ET


# Use: what the processor may serve.

def test_guest_pte_write_leaves_the_old_translation_usable_until_invlpg():
    oracle, root1, root2 = four_entries()
    leaf = root2.map(VA_A, 0x5000_0000, USER_RW)  # the guest rewrites its PTE: no flush
    old = Translation(A2 | 0x10, PAGE_4K, False, Perms(True, True, False))
    new = Translation(0x5000_0010, PAGE_4K, False, Perms(True, True, False))
    assert oracle.mem.read(leaf) == 0x5000_0000 | USER_RW
    assert allowed(oracle, VA_A | 0x10, old) and allowed(oracle, VA_A | 0x10, new)
    assert "retained: PCID 0x2 non-global 4 KiB page 0x400000 -> 0x20000000 WU" \
        in oracle.explain(VA_A)
    oracle.invlpg(VA_A)
    assert not allowed(oracle, VA_A | 0x10, old) and allowed(oracle, VA_A | 0x10, new)
    assert oracle.explain(VA_A).endswith("retained: none")


def test_other_pcids_entries_are_not_usable_but_globals_are():
    oracle, root1, _ = four_entries()
    a1 = Translation(A1, PAGE_4K, False, Perms(True, True, False))
    assert not allowed(oracle, VA_A, a1)  # cached under PCID 1, current is 2
    root1.map(VA_G, 0x6000_0000, PTE_P | PTE_A | PTE_G)  # unreachable from PCID 2's tables
    oracle.mov_cr3(root1.cr3(1) | bits.CR3_NOFLUSH)
    assert allowed(oracle, VA_A, a1)
    # The global G entries (cached under PCIDs 1 and 2) still serve G, though root 1 now maps
    # it elsewhere.
    g = Translation(G, PAGE_4K, True, Perms(True, False, False))
    assert allowed(oracle, VA_G, g)
    assert {e.pcid for e in oracle.usable(VA_G)} == {1, 2}


def test_watched_addresses_are_refilled_after_every_operation():
    mem, root1, _ = two_roots()
    oracle = TlbOracle(mem, Regs(cr0=CR0, cr3=root1.cr3(), cr4=CR4, efer=EFER))
    oracle.watch(VA_A)
    leaf = root1.map(VA_A, A1, USER_RW)
    oracle.write(leaf, 0x5000_0000 | USER_RW)
    frames = sorted((e.frame, why) for e, why in oracle.entries.items())
    why = f"write {0x5000_0000 | USER_RW:#x} to {leaf:#x}"
    assert frames == [(A1, "watch"), (0x5000_0000, why)]


PAE_CR0 = bits.CR0_PG | bits.CR0_PE


@pytest.mark.parametrize("operation,reloads", [
    (lambda o: o.mov_cr3(o.regs.cr3), True),
    (lambda o: (o.mov_cr0(bits.CR0_PE), o.mov_cr0(PAE_CR0)), True),
    (lambda o: o.mov_cr0(PAE_CR0 | bits.CR0_CD), True),
    (lambda o: o.mov_cr4(bits.CR4_PAE | bits.CR4_PGE), True),
    (lambda o: o.mov_cr4(bits.CR4_PAE | bits.CR4_SMEP), True),
    (lambda o: o.mov_cr0(PAE_CR0 | bits.CR0_WP), False),
    (lambda o: o.mov_cr4(bits.CR4_PAE | bits.CR4_SMAP), False),
    (lambda o: o.invlpg(VA_A), False),
], ids=["mov-cr3", "mov-cr0-pg-off-on", "mov-cr0-cd", "mov-cr4-pge", "mov-cr4-smep",
        "mov-cr0-wp", "mov-cr4-smap", "invlpg"])
def test_pae_pdpte_registers_are_reloaded_only_by_the_listed_cr_writes(operation, reloads):
    """SDM §4.4.1: PAE paging translates through PDPTE registers, loaded by MOV CR3 and by CR0/CR4
    writes that change PG, CD, NW, PAE, PGE, PSE or SMEP; a write to the PDPT alone does not."""
    mem = Memory()
    pt = PageTables(mem, Mode.PAE, FrameAllocator(0x10_0000))
    pt.map(VA_A, A1, USER_RW)
    oracle = TlbOracle(mem, Regs(cr0=PAE_CR0, cr3=pt.cr3(), cr4=bits.CR4_PAE, efer=0))
    oracle.write(pt.root, 0)  # PDPTE 0, which maps VA_A, becomes not present
    fresh = oracle.fresh(VA_A)
    assert fresh is not None and fresh.paddr == A1
    operation(oracle)
    assert (oracle.fresh(VA_A) is None) == reloads
    if reloads:
        assert "no valid translation (P=0 in the PDPTE)" in oracle.explain(VA_A)


# Operations the replay adds (formal.concrete.replay): whole-context flushes, one page in every
# PCID,
# register images, refilling a context that runs again.

def test_flush_and_invalidate_page_cover_every_pcid_and_globals():
    oracle, _, _ = four_entries()
    oracle.invalidate_page(VA_G, "INVVPID individual-address")
    assert tags(oracle) == {(1, VA_A, False), (2, VA_A, False)}
    oracle.flush("PV TLB flush")
    assert tags(oracle) == set()


@pytest.mark.parametrize("flush,left", [(False, ALL), (True, set())])
def test_load_replaces_the_registers_and_flushes_only_when_told(flush, left):
    oracle, root1, _ = four_entries()
    regs = Regs(cr0=CR0, cr3=root1.cr3(1), cr4=oracle.regs.cr4, efer=EFER)
    oracle.load(regs, "KVM_SET_SREGS", flush=flush)
    assert oracle.regs == regs and tags(oracle) == left


def test_refill_caches_the_watched_address_under_the_current_registers():
    mem, root1, _ = two_roots()
    oracle = TlbOracle(mem, Regs(cr0=CR0, cr3=root1.cr3(), cr4=CR4, efer=EFER))
    oracle.watched.add(VA_A)
    assert oracle.entries == {}
    oracle.refill("VM exit")
    assert [(e.frame, why) for e, why in oracle.entries.items()] == [(A1, "VM exit")]
