"""Page walks and access rights against the Intel SDM Vol. 3A §4.3-§4.7.

The permission matrix follows kvm-unit-tests x86/access.c: PTE and PDE R/W, U/S and XD bits and
PDE.PS, times CR0.WP, CR4.SMEP, CR4.SMAP, EFER.NXE and EFLAGS.AC, times user/supervisor
read/write/fetch, in each paging mode.  The expected outcome comes from `expected_fault`, the
SDM's rules restated here as the conditions under which an access faults; it never calls
formal.concrete.paging.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from formal.concrete.paging import (
    Access,
    FrameAllocator,
    Kind,
    Memory,
    Mode,
    Perms,
    check_access,
    load_pdptes,
    pdpt_address,
    pdptes_error,
    translate,
    walk,
)
from formal.concrete.pte import (
    PFERR_I,
    PFERR_P,
    PFERR_RSVD,
    PFERR_U,
    PFERR_W,
    PTE_A,
    PTE_D,
    PTE_G,
    PTE_P,
    PTE_PS,
    PTE_RW,
    PTE_US,
    PTE_XD,
)
from formal.concrete.tlb_oracle import TlbOracle
from formal.model import bits
from formal.model.bits import PAGE_1G, PAGE_2M, PAGE_4K, PAGE_4M
from formal.model.state import Regs
from tests.support.pagetables import PageTables

PG = bits.CR0_PG | bits.CR0_PE
LONG = bits.EFER_LME | bits.EFER_LMA
# CR4 and EFER bits that select each mode (SDM §4.1.1 Table 4-1); 32-bit paging gets PSE so
# that PDE.PS means a 4 MiB page.
MODE_REGS = {Mode.BITS32: (bits.CR4_PSE, 0), Mode.PAE: (bits.CR4_PAE, 0),
             Mode.LEVEL4: (bits.CR4_PAE, LONG)}
LARGE = {Mode.BITS32: PAGE_4M, Mode.PAE: PAGE_2M, Mode.LEVEL4: PAGE_2M}
TABLES_AT = 0x10_0000
ACCESSES = [Access(kind, user) for user in (False, True) for kind in Kind]


def tables(mode: Mode) -> tuple[Memory, PageTables]:
    mem = Memory()
    return mem, PageTables(mem, mode, FrameAllocator(TABLES_AT))


def do_walk(mem: Memory, mode: Mode, cr3: int, va: int, access: Access, *, cr0: int = PG,
            cr4: int = 0, efer: int = 0, ac: bool = False):
    mode_cr4, mode_efer = MODE_REGS[mode]
    return walk(mem, cr0, cr3, mode_cr4 | cr4, mode_efer | efer, va, access, ac=ac)


READ = Access(Kind.READ, user=False)


# The independent statement of the rules.

@dataclass(frozen=True)
class Rights:
    """The R/W, U/S and XD bits of one paging-structure entry."""

    w: bool
    u: bool
    nx: bool

    def flags(self) -> int:
        return PTE_P | PTE_A | PTE_D | (PTE_RW if self.w else 0) | (PTE_US if self.u else 0) \
            | (PTE_XD if self.nx else 0)

    def __str__(self) -> str:
        return f"{'W' if self.w else '-'}{'U' if self.u else '-'}{'X' if not self.nx else '-'}"


@dataclass(frozen=True)
class Cpu:
    wp: bool
    smep: bool
    smap: bool
    nxe: bool
    ac: bool

    def __str__(self) -> str:
        return "-".join(f"{name}{int(getattr(self, name))}" for name in
                        ("wp", "smep", "smap", "nxe", "ac"))

    def regs(self) -> tuple[int, int, int]:
        return (PG | (bits.CR0_WP if self.wp else 0),
                (bits.CR4_SMEP if self.smep else 0) | (bits.CR4_SMAP if self.smap else 0),
                bits.EFER_NX if self.nxe else 0)


CPUS = [Cpu(*flags) for flags in itertools.product((False, True), repeat=5)]

# SDM §4.6.1 and §4.6.2 as a list of the ways an access is denied, given the rights of every
# entry on the path; user = U/S=1 in all, writable = R/W=1 in all, xd = XD=1 in any.
DENY_RULES = [
    ("user access to a supervisor-mode address",
     lambda a, cpu, user, writable, xd: a.user and not user),
    ("user write to a read-only address (whatever CR0.WP)",
     lambda a, cpu, user, writable, xd: a.user and a.kind is Kind.WRITE and not writable),
    ("supervisor write to a read-only address with CR0.WP=1",
     lambda a, cpu, user, writable, xd:
        not a.user and a.kind is Kind.WRITE and cpu.wp and not writable),
    ("supervisor data access to a user-mode address with CR4.SMAP=1 and EFLAGS.AC=0",
     lambda a, cpu, user, writable, xd:
        not a.user and a.kind is not Kind.FETCH and user and cpu.smap and not cpu.ac),
    ("supervisor fetch from a user-mode address with CR4.SMEP=1",
     lambda a, cpu, user, writable, xd: not a.user and a.kind is Kind.FETCH and user and cpu.smep),
    ("fetch from an execute-disabled address with EFER.NXE=1",
     lambda a, cpu, user, writable, xd: a.kind is Kind.FETCH and cpu.nxe and xd),
]


def expected_fault(mode: Mode, path: list[Rights], cpu: Cpu, a: Access) -> int | None:
    """The #PF error code the SDM gives, or None."""
    # §4.7: W/R is set for writes, U/S for user accesses, I/D for fetches only with SMEP=1 or
    # with PAE/4-level paging and NXE=1.
    code = (PFERR_W if a.kind is Kind.WRITE else 0) | (PFERR_U if a.user else 0)
    if a.kind is Kind.FETCH and (cpu.smep or (mode is not Mode.BITS32 and cpu.nxe)):
        code |= PFERR_I
    user = all(r.u for r in path)
    writable = all(r.w for r in path)
    xd = any(r.nx for r in path)
    if xd and not cpu.nxe:
        return PFERR_P | PFERR_RSVD | code  # §4.1.4: bit 63 is reserved with NXE=0
    if any(rule(a, cpu, user, writable, xd) for _, rule in DENY_RULES):
        return PFERR_P | code
    return None


def rights_cases(mode: Mode):
    """(large, PDE rights, PTE rights or None); 32-bit paging has no XD bit."""
    nx_values = (False,) if mode is Mode.BITS32 else (False, True)
    every = [Rights(w, u, nx) for w in (False, True) for u in (False, True) for nx in nx_values]
    for pde in every:
        yield True, pde, None
        for pte in every:
            yield False, pde, pte


VA = 0x0060_1234
PA_4K = 0x0234_5000
PA_LARGE = 0x0C00_0000


@pytest.mark.parametrize("mode", list(MODE_REGS), ids=lambda m: m.value)
@pytest.mark.parametrize("cpu", CPUS, ids=str)
@pytest.mark.parametrize("access", ACCESSES, ids=str)
def test_access_rights_matrix(mode, cpu, access):
    cr0, cr4, efer = cpu.regs()
    mismatches = []
    for large, pde, pte in rights_cases(mode):
        mem, pt = tables(mode)
        if large:
            size = LARGE[mode]
            pt.map(VA & ~(size - 1), PA_LARGE, pde.flags(), size=size)
            want_pa, path = PA_LARGE | (VA & (size - 1)), [pde]
        else:
            # Every paging-structure entry above the PTE gets the PDE's rights: the combination
            # over the path is the same as with only the PDE restricted.
            pt.map(VA & ~0xFFF, PA_4K, pte.flags(), table_flags=pde.flags())
            want_pa, path = PA_4K | (VA & 0xFFF), [pde, pte]
        got = do_walk(mem, mode, pt.cr3(), VA, access, cr0=cr0, cr4=cr4, efer=efer, ac=cpu.ac)
        want = expected_fault(mode, path, cpu, access)
        got_pa = got.translation.paddr if got.translation else None
        rsvd = want is not None and want & PFERR_RSVD
        if (got.fault, got_pa) != (want, None if rsvd else want_pa):
            shape = f"large PDE {pde}" if large else f"PDE {pde} PTE {pte}"
            mismatches.append(f"{shape}: got fault {got.fault} pa {got_pa}, want {want}")
    assert not mismatches, "\n".join(mismatches)


def test_supervisor_write_to_read_only_page_faults_after_cr0_wp_set_without_flush():
    """SDM §4.10.2.2: CR0.WP is applied when a TLB entry is used, so setting it needs no flush,
    yet the entry cached while WP=0 must now fault a supervisor write."""
    mem, pt = tables(Mode.LEVEL4)
    pt.map(0x40_0000, 0x1000_0000, PTE_P | PTE_A)  # supervisor, read-only
    cr4, efer = bits.CR4_PAE, LONG | bits.EFER_NX
    oracle = TlbOracle(mem, Regs(cr0=PG, cr3=pt.cr3(), cr4=cr4, efer=efer))
    oracle.watch(0x40_0000)
    write = Access(Kind.WRITE, user=False)
    assert walk(mem, PG, pt.cr3(), cr4, efer, 0x40_0123, write).fault is None
    [entry] = oracle.usable(0x40_0123)
    assert check_access(entry.perms, PG, cr4, efer, write) is None

    oracle.mov_cr0(PG | bits.CR0_WP)
    assert oracle.usable(0x40_0123) == [entry]  # retained: MOV CR0 changing WP flushes nothing
    r = oracle.regs
    assert check_access(entry.perms, r.cr0, r.cr4, r.efer, write) == PFERR_P | PFERR_W
    assert walk(mem, r.cr0, r.cr3, r.cr4, r.efer, 0x40_0123, write).fault == PFERR_P | PFERR_W


# Walks with pinned addresses.

@pytest.mark.parametrize("mode,va,pa,size,entries,paddr", [
    # 32-bit: PDE 1 at 0x100004 -> PT 0x101000; PTE 0x201 at 0x101804.
    (Mode.BITS32, 0x0060_1234, 0x0234_5000, PAGE_4K,
     {0x10_0004: 0x10_1000 | 0x7, 0x10_1804: 0x0234_5000 | 0x7}, 0x0234_5234),
    # 32-bit 4 MiB page above 4 GiB (PSE-36: physical bits 39:32 in PDE bits 20:13).
    (Mode.BITS32, 0x0041_2345, 0x12_0040_0000, PAGE_4M,
     {0x10_0004: 0x0040_0000 | 0x12 << 13 | PTE_PS | 0x7}, 0x12_0041_2345),
    # PAE: PDPTE 0 (P only) -> PD 0x101000; PDE 3 at 0x101018 -> PT 0x102000; PTE 1 at 0x102008.
    (Mode.PAE, 0x0060_1234, 0x1_2345_6000, PAGE_4K,
     {0x10_0000: 0x10_1001, 0x10_1018: 0x10_2000 | 0x7, 0x10_2008: 0x1_2345_6000 | 0x7},
     0x1_2345_6234),
    # PAE 2 MiB page through PDPTE 3 (at 0x100018) and PDE 3.
    (Mode.PAE, 0xC060_1234, 0x2_0020_0000, PAGE_2M,
     {0x10_0018: 0x10_1001, 0x10_1018: 0x2_0020_0000 | PTE_PS | 0x7}, 0x2_0020_1234),
    # 4-level, upper half: PML4E 256 at 0x100800, PDPTE 0, PDE 3, PTE 1.
    (Mode.LEVEL4, 0xFFFF_8000_0060_1234, 0x7_FFFF_F000, PAGE_4K,
     {0x10_0800: 0x10_1000 | 0x7, 0x10_1000: 0x10_2000 | 0x7, 0x10_2018: 0x10_3000 | 0x7,
      0x10_3008: 0x7_FFFF_F000 | 0x7}, 0x7_FFFF_F234),
    # 4-level 2 MiB page: PML4E 254, PDPTE 0, PDE 1.
    (Mode.LEVEL4, 0x7F00_0021_2345, 0x40_0020_0000, PAGE_2M,
     {0x10_07F0: 0x10_1000 | 0x7, 0x10_1000: 0x10_2000 | 0x7,
      0x10_2008: 0x40_0020_0000 | PTE_PS | 0x7}, 0x40_0021_2345),
    # 4-level 1 GiB page: PML4E 0, PDPTE 256.
    (Mode.LEVEL4, 0x40_1234_5678, 0xF_C000_0000, PAGE_1G,
     {0x10_0000: 0x10_1000 | 0x7, 0x10_1800: 0xF_C000_0000 | PTE_PS | 0x7}, 0xF_D234_5678),
], ids=["32bit-4K", "32bit-4M-pse36", "pae-4K", "pae-2M", "4level-4K", "4level-2M",
        "4level-1G"])
def test_walk_pinned(mode, va, pa, size, entries, paddr):
    mem, pt = tables(mode)
    pt.map(va & ~(size - 1), pa, PTE_P | PTE_RW | PTE_US, size=size)
    width = 4 if mode is Mode.BITS32 else 8
    assert {addr: mem.read(addr, width) for addr in entries} == entries
    r = do_walk(mem, mode, pt.cr3(), va, Access(Kind.WRITE, user=True))
    assert r.fault is None
    assert r.translation is not None
    assert (r.translation.paddr, r.translation.page_size) == (paddr, size)
    assert r.translation.perms == Perms(writable=True, user=True, xd=False)


def test_32bit_pde_ps_is_ignored_without_cr4_pse():
    """SDM §4.3: with CR4.PSE=0 a PDE always references a page table, whatever its PS bit."""
    mem, pt = tables(Mode.BITS32)
    pt.map(0x0040_0000, 0x0080_0000, PTE_P | PTE_RW, size=PAGE_4M)
    mem.write(0x0080_0000 + 4 * 0x12, 0x0555_5000 | PTE_P, 4)  # "PTE" 0x12 in the 4 MiB frame
    r = walk(mem, PG, pt.cr3(), 0, 0, 0x0041_2345, READ)
    assert r.translation is not None and r.translation.paddr == 0x0555_5345
    assert r.translation.perms == Perms(writable=False, user=False, xd=False)
    r = walk(mem, PG, pt.cr3(), bits.CR4_PSE, 0, 0x0041_2345, READ)
    assert r.translation is not None and r.translation.paddr == 0x0081_2345


def test_pcid_in_cr3_does_not_move_the_root():
    mem, pt = tables(Mode.LEVEL4)
    pt.map(0x40_0000, 0x5000, PTE_P)
    cr4 = bits.CR4_PAE | bits.CR4_PCIDE
    r = walk(mem, PG, pt.cr3(0xABC), cr4, LONG, 0x40_0010, READ)
    assert r.translation is not None and r.translation.paddr == 0x5010


def test_global_bit_of_the_leaf_is_reported():
    mem, pt = tables(Mode.LEVEL4)
    pt.map(0x40_0000, 0x5000, PTE_P | PTE_G, table_flags=PTE_P | PTE_G)
    pt.map(0x60_0000, 0x6000, PTE_P, table_flags=PTE_P | PTE_G)
    globals_ = [translate(mem, PG, pt.cr3(), bits.CR4_PAE, LONG, va).global_
                for va in (0x40_0000, 0x60_0000)]
    assert globals_ == [True, False]


def test_not_present_fault_reports_the_access():
    mem, pt = tables(Mode.LEVEL4)
    leaf = pt.map(0x40_0000, 0x5000, PTE_RW | PTE_US)  # P=0
    user_write = Access(Kind.WRITE, user=True)
    assert do_walk(mem, Mode.LEVEL4, pt.cr3(), 0x40_0000, user_write).fault == PFERR_W | PFERR_U
    assert do_walk(mem, Mode.LEVEL4, pt.cr3(), 0x80_0000, READ).fault == 0  # empty PDE
    mem.write(leaf, 0x5000 | PTE_P | PTE_XD | 1 << 52)
    # Reserved bits are not checked in an entry whose P flag is 0 (SDM §4.7); here P=1.
    assert do_walk(mem, Mode.LEVEL4, pt.cr3(), 0x40_0000, READ).fault == PFERR_P | PFERR_RSVD


@pytest.mark.parametrize("mode,size,extra,efer,fault", [
    (Mode.BITS32, PAGE_4M, 1 << 21, 0, PFERR_P | PFERR_RSVD),
    (Mode.BITS32, PAGE_4K, 1 << 21, 0, None),  # an address bit of a 4 KiB PTE
    (Mode.PAE, PAGE_4K, 1 << 52, 0, PFERR_P | PFERR_RSVD),
    (Mode.PAE, PAGE_4K, 1 << 62, 0, PFERR_P | PFERR_RSVD),
    (Mode.PAE, PAGE_2M, 1 << 13, 0, PFERR_P | PFERR_RSVD),
    (Mode.PAE, PAGE_4K, PTE_XD, 0, PFERR_P | PFERR_RSVD),
    (Mode.PAE, PAGE_4K, PTE_XD, bits.EFER_NX, None),
    (Mode.LEVEL4, PAGE_4K, 1 << 52 | 1 << 62, 0, None),  # bits 62:52 are ignored
    (Mode.LEVEL4, PAGE_2M, 1 << 20, 0, PFERR_P | PFERR_RSVD),
    (Mode.LEVEL4, PAGE_2M, 1 << 12, 0, None),  # PAT
    (Mode.LEVEL4, PAGE_1G, 1 << 29, 0, PFERR_P | PFERR_RSVD),
    (Mode.LEVEL4, PAGE_1G, 1 << 13, 0, PFERR_P | PFERR_RSVD),
    (Mode.LEVEL4, PAGE_4K, PTE_XD, 0, PFERR_P | PFERR_RSVD),
], ids=["32bit-4M-bit21", "32bit-4K-bit21", "pae-bit52", "pae-bit62", "pae-2M-bit13",
        "pae-xd-nxe0", "pae-xd-nxe1", "4level-bits62-52", "4level-2M-bit20", "4level-2M-pat",
        "4level-1G-bit29", "4level-1G-bit13", "4level-xd-nxe0"])
def test_reserved_bits_in_the_leaf(mode, size, extra, efer, fault):
    mem, pt = tables(mode)
    va = 0x4000_0000 if size == PAGE_1G else 0x0040_0000
    leaf = pt.map(va, 0x8000_0000, PTE_P, size=size)
    width = 4 if mode is Mode.BITS32 else 8
    mem.write(leaf, mem.read(leaf, width) | extra, width)
    r = do_walk(mem, mode, pt.cr3(), va, READ, efer=efer)
    assert r.fault == fault
    assert (r.translation is None) == (fault is not None)


def test_pml4e_ps_is_reserved():
    mem, pt = tables(Mode.LEVEL4)
    pt.map(0x40_0000, 0x5000, PTE_P)
    mem.write(pt.root, mem.read(pt.root) | PTE_PS)
    assert do_walk(mem, Mode.LEVEL4, pt.cr3(), 0x40_0000, READ).fault == PFERR_P | PFERR_RSVD


def test_pae_pdpte_with_reserved_bits_cannot_be_loaded():
    mem, pt = tables(Mode.PAE)
    pt.map(0x40_0000, 0x5000, PTE_P)
    mem.write(pt.root, mem.read(pt.root) | PTE_RW)  # PDPTE bits 2:1 are reserved (§4.4.1)
    assert pdptes_error(load_pdptes(mem, pt.cr3())) == "#GP: reserved bits 0x2 set in PDPTE 0"
    with pytest.raises(ValueError, match="would have faulted"):
        do_walk(mem, Mode.PAE, pt.cr3(), 0x40_0000, READ)


def test_pae_walk_uses_the_pdpte_registers_given():
    mem, pt = tables(Mode.PAE)
    pt.map(0x40_0000, 0x5000, PTE_P)
    loaded = load_pdptes(mem, pt.cr3())
    mem.write(pt.root, 0)
    assert walk(mem, PG, pt.cr3(), bits.CR4_PAE, 0, 0x40_0000, READ).fault == 0
    r = walk(mem, PG, pt.cr3(), bits.CR4_PAE, 0, 0x40_0000, READ, pdptes=loaded)
    assert r.translation is not None and r.translation.paddr == 0x5000


def test_pae_pdpt_is_at_cr3_31_5_not_at_the_start_of_its_page():
    """SDM §4.4.1: the PDPT is 32-byte aligned at CR3[31:5]; PDPTE i is at CR3[31:5] + 8 * i.
    A decoy PDPT at the start of the page maps the same address elsewhere."""
    mem = Memory()
    decoy = {0x1008: 0x10_0001, 0x10_0010: 0x11_0000 | 0x7, 0x11_0008: 0x5000 | 0x7}
    # PDPTE 1 at 0x1028 -> PD 0x102000; PDE 2 at 0x102010 -> PT 0x103000; PTE 1 at 0x103008.
    pdpt = {0x1028: 0x10_2001, 0x10_2010: 0x10_3000 | 0x7, 0x10_3008: 0x6_0000 | 0x7}
    for addr, entry in {**decoy, **pdpt}.items():
        mem.write(addr, entry)
    va = 0x4040_1234  # PDPTE 1, PDE 2, PTE 1
    assert pdpt_address(0x1020) == 0x1020 and pdpt_address(0x1_0000_1FFF) == 0x1FE0
    assert load_pdptes(mem, 0x1020) == (0, 0x10_2001, 0, 0)
    r = walk(mem, PG, 0x1020, bits.CR4_PAE, 0, va, READ)
    assert r.fault is None and r.translation is not None
    assert r.translation.paddr == 0x6_0234
    # CR3[4:3] are PWT/PCD: 0x1018 names the decoy PDPT at 0x1000; 0x1040 an empty one.
    decoyed = walk(mem, PG, 0x1018, bits.CR4_PAE, 0, va, READ).translation
    assert decoyed is not None and decoyed.paddr == 0x5234
    assert walk(mem, PG, 0x1040, bits.CR4_PAE, 0, va, READ).fault == 0  # PDPTE 1 P=0
    with pytest.raises(ValueError, match="no PCID"):
        tables(Mode.PAE)[1].cr3(0x20)


@pytest.mark.parametrize("mode,va", [(Mode.LEVEL4, 0x0000_8000_0000_0000),
                                     (Mode.PAE, 0x1_0000_0000), (Mode.BITS32, 0x1_0000_0000)])
def test_addresses_outside_the_linear_address_space_are_rejected(mode, va):
    mem, pt = tables(mode)
    with pytest.raises(ValueError):
        do_walk(mem, mode, pt.cr3(), va, READ)


def test_no_walk_without_paging():
    with pytest.raises(ValueError, match="paging is disabled"):
        walk(Memory(), bits.CR0_PE, 0, 0, 0, 0x1000, READ)


def test_builder_rejects_what_an_entry_cannot_hold():
    mem, pt = tables(Mode.BITS32)
    with pytest.raises(ValueError, match="no 0x200000-byte pages"):
        pt.map(0, 0, PTE_P, size=PAGE_2M)
    with pytest.raises(ValueError, match="aligned"):
        pt.map(0x1000, 0, PTE_P, size=PAGE_4M)
    with pytest.raises(ValueError, match="do not fit"):
        pt.map(0, 1 << 32, PTE_P)
    pt.map(0, 0, PTE_P, size=PAGE_4M)
    with pytest.raises(ValueError, match="inside a large page"):
        pt.map(0x1000, 0, PTE_P)


# Properties.

CANONICAL_LOW = st.integers(0, (1 << 47) - 1)


@settings(max_examples=150, deadline=None)
@given(va=CANONICAL_LOW, frame=st.integers(0, (1 << 52) - 1),
       size=st.sampled_from([PAGE_4K, PAGE_2M, PAGE_1G]))
def test_4level_walk_returns_the_mapped_frame_plus_offset(va, frame, size):
    mem, pt = tables(Mode.LEVEL4)
    base, pa = va & ~(size - 1), frame & ~(size - 1)
    pt.map(base, pa, PTE_P | PTE_RW | PTE_US, size=size)
    r = do_walk(mem, Mode.LEVEL4, pt.cr3(), va, Access(Kind.WRITE, user=True))
    assert r.fault is None and r.translation is not None
    assert (r.translation.paddr, r.translation.page_size) == (pa | (va & (size - 1)), size)


PERMS = st.builds(Perms, st.booleans(), st.booleans(), st.booleans())
CR0S = st.sampled_from([PG, PG | bits.CR0_WP])
CR4S = st.sampled_from([a | b | c for a in (0, bits.CR4_PAE) for b in (0, bits.CR4_SMEP)
                        for c in (0, bits.CR4_SMAP)])
EFERS = st.sampled_from([0, bits.EFER_NX])


@settings(max_examples=300, deadline=None)
@given(perms=PERMS, cr0=CR0S, cr4=CR4S, efer=EFERS, user=st.booleans(), ac=st.booleans())
def test_a_permitted_write_implies_a_permitted_read(perms, cr0, cr4, efer, user, ac):
    if check_access(perms, cr0, cr4, efer, Access(Kind.WRITE, user), ac=ac) is None:
        assert check_access(perms, cr0, cr4, efer, Access(Kind.READ, user), ac=ac) is None


@settings(max_examples=300, deadline=None)
@given(perms=PERMS, cr0=CR0S, cr4=CR4S, efer=EFERS, access=st.sampled_from(ACCESSES),
       ac=st.booleans())
def test_setting_rw_or_clearing_xd_never_adds_a_fault(perms, cr0, cr4, efer, access, ac):
    """R/W=1 and XD=0 only grant (SDM §4.6); U/S is not monotone: SMEP and SMAP deny
    supervisor accesses to user-mode addresses."""
    wider = Perms(writable=True, user=perms.user, xd=False)
    if check_access(perms, cr0, cr4, efer, access, ac=ac) is None:
        assert check_access(wider, cr0, cr4, efer, access, ac=ac) is None
