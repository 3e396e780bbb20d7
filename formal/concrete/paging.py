"""Guest physical memory and real x86 paging structures (Intel SDM Vol. 3A chapter 4).

Three paging modes: 32-bit (§4.3, 2 levels, 4 MiB pages with CR4.PSE), PAE (§4.4, 4 PDPTEs
loaded from CR3 into registers, 2 MiB pages) and 4-level (§4.5, 2 MiB and 1 GiB pages, PCID in
CR3[11:0] when CR4.PCIDE=1).  `translate` finds the translation of a linear address, `walk` adds
the access-rights check of §4.6, and `check_access` applies that check on its own to permissions a
TLB entry cached earlier (§4.10.2.2: CR0.WP, CR4.SMEP, CR4.SMAP, CR4.PKE with PKRU and EFER.NXE
are applied when an entry is used, not when it is cached).

Not modelled: 5-level paging (CR4.LA57), protection keys for supervisor pages (CR4.PKS),
implicit supervisor accesses, memory types, and the accessed/dirty updates a walk makes (§4.8):
they change no translation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from formal.concrete.pte import (
    PFERR_I,
    PFERR_P,
    PFERR_PK,
    PFERR_RSVD,
    PFERR_U,
    PFERR_W,
    PTE_G,
    PTE_P,
    PTE_PS,
    PTE_RW,
    PTE_US,
    PTE_XD,
)
from formal.errors import NotModeled
from formal.model import bits
from formal.model.bits import PAGE_1G, PAGE_2M, PAGE_4K, PAGE_4M

# The model's MAXPHYADDR, the one bits.CR3_ADDR_MASK assumes (SDM §4.1.4: CPUID.80000008H:EAX[7:0]).
MAXPHYADDR = 52
_PHYS_MASK = (1 << MAXPHYADDR) - 1
_ADDR_MASK = _PHYS_MASK & ~(PAGE_4K - 1)  # bits M-1:12 of a PAE or 4-level entry


def _bit_range(high: int, low: int) -> int:
    return ((1 << (high - low + 1)) - 1) << low


# SDM §4.4.1, Table 4-8: reserved bits of a present PAE PDPTE (2:1, 8:5 and 63:M); loading one
# through MOV CR3 (or a CR0/CR4 write that loads the PDPTEs) causes #GP.
_PDPTE_RSVD = _bit_range(2, 1) | _bit_range(8, 5) | _bit_range(63, MAXPHYADDR)
# SDM §4.4.2, Tables 4-9..4-11: bits 62:M of PAE PDEs and PTEs are reserved (4-level paging
# ignores bits 62:52 instead, §4.5.4 Tables 4-17..4-20).
_PAE_HIGH_RSVD = _bit_range(62, MAXPHYADDR)
# SDM §4.3 Table 4-4: bit 21 of a 4 MiB PDE is reserved (bits 20:13 hold physical-address bits
# 39:32 with PSE-36; M is at most 40 for 32-bit paging).
_PDE4M_RSVD = 1 << 21


class Mode(Enum):
    """The paging mode (SDM §4.1.1, Table 4-1)."""

    NONE = "no paging"
    BITS32 = "32-bit"
    PAE = "PAE"
    LEVEL4 = "4-level"


def paging_mode(cr0: int, cr4: int, efer: int) -> Mode:
    """SDM §4.1.1 Table 4-1: CR0.PG, CR4.PAE and IA32_EFER.LME select the mode."""
    if not cr0 & bits.CR0_PG:
        return Mode.NONE
    if not cr4 & bits.CR4_PAE:
        return Mode.BITS32
    if not efer & bits.EFER_LME:
        return Mode.PAE
    if cr4 & bits.CR4_LA57:
        raise NotModeled("the concrete level: 5-level paging (CR4.LA57=1) is not modelled")
    return Mode.LEVEL4


@dataclass
class Memory:
    """Sparse guest physical memory: 4 KiB frames, zero until written; little-endian words."""

    frames: dict[int, bytearray] = field(default_factory=dict)

    def _frame(self, addr: int, size: int) -> tuple[bytearray, int]:
        offset = addr & (PAGE_4K - 1)
        if offset + size > PAGE_4K:
            raise ValueError(f"{size}-byte access at {addr:#x} crosses a 4 KiB frame")
        return self.frames.setdefault(addr & ~(PAGE_4K - 1), bytearray(PAGE_4K)), offset

    def read(self, addr: int, size: int = 8) -> int:
        frame, offset = self._frame(addr, size)
        return int.from_bytes(frame[offset:offset + size], "little")

    def write(self, addr: int, value: int, size: int = 8) -> None:
        frame, offset = self._frame(addr, size)
        frame[offset:offset + size] = value.to_bytes(size, "little")


class Kind(Enum):
    READ = "read"
    WRITE = "write"
    FETCH = "fetch"


@dataclass(frozen=True)
class Access:
    """A guest access: its kind, and whether it is a user-mode (CPL=3) access (SDM §4.6)."""

    kind: Kind
    user: bool

    def __str__(self) -> str:
        return f"{'user' if self.user else 'supervisor'} {self.kind.value}"


@dataclass(frozen=True)
class Perms:
    """The access rights of a translation, combined over every paging-structure entry used
    (SDM §4.6.1): R/W and U/S are ANDed, XD is ORed; this is what a TLB entry caches (§4.10.2.2)."""

    writable: bool
    user: bool
    xd: bool

    def __str__(self) -> str:
        rights = ("W" if self.writable else "R") + ("U" if self.user else "S")
        return rights + (" XD" if self.xd else "")


@dataclass(frozen=True)
class Translation:
    """A valid translation of one linear address."""

    paddr: int  # physical address of the accessed byte
    page_size: int
    global_: bool  # the G bit of the entry that maps the page
    perms: Perms
    pkey: int = 0  # the leaf's protection key, bits 62:59 (4-level paging only, SDM §4.6.2)

    @property
    def frame(self) -> int:
        return self.paddr & ~(self.page_size - 1)


@dataclass(frozen=True)
class NoTranslation:
    """The walk stopped at `level`: its P flag is 0, or (rsvd) it has a reserved bit set."""

    level: str
    rsvd: bool


@dataclass(frozen=True)
class WalkResult:
    """The translation (None when none is valid) and the #PF error code (None: no fault)."""

    translation: Translation | None
    fault: int | None


@dataclass(frozen=True)
class _Level:
    name: str
    shift: int  # lowest linear-address bit the level's index covers
    index_bits: int
    entry_size: int  # bytes
    large: int | None  # the page an entry with PS=1 maps; None: PS is not a page size here

    def entry_address(self, table: int, va: int) -> int:
        return table + ((va >> self.shift) & ((1 << self.index_bits) - 1)) * self.entry_size


# SDM §4.3 (Figure 4-2): 10-bit indexes, 4-byte entries; §4.4.2 (Figure 4-5): a 2-bit PDPTE
# index, then 9-bit indexes, 8-byte entries; §4.5.4 (Figure 4-8): four 9-bit indexes.
_LEVELS = {
    Mode.BITS32: (_Level("PDE", 22, 10, 4, PAGE_4M), _Level("PTE", 12, 10, 4, None)),
    Mode.PAE: (_Level("PDPTE", 30, 2, 8, None), _Level("PDE", 21, 9, 8, PAGE_2M),
               _Level("PTE", 12, 9, 8, None)),
    Mode.LEVEL4: (_Level("PML4E", 39, 9, 8, None), _Level("PDPTE", 30, 9, 8, PAGE_1G),
                  _Level("PDE", 21, 9, 8, PAGE_2M), _Level("PTE", 12, 9, 8, None)),
}


def mode_levels(mode: Mode) -> tuple[_Level, ...]:
    if mode is Mode.NONE:
        raise ValueError("paging is disabled: linear addresses are physical, nothing to walk")
    return _LEVELS[mode]


def _root(mode: Mode, cr3: int) -> int:
    if mode is Mode.BITS32:
        return cr3 & 0xFFFF_F000  # SDM §4.3: CR3[31:12]
    if mode is Mode.PAE:
        return cr3 & 0xFFFF_FFE0  # SDM §4.4.1: CR3[31:5], a 32-byte aligned PDPT
    return cr3 & bits.CR3_ADDR_MASK  # SDM §4.5.2: CR3[M-1:12]; 11:0 hold the PCID or PWT/PCD


def _large_frame(mode: Mode, entry: int, size: int) -> int:
    if mode is Mode.BITS32:
        # SDM §4.3 Table 4-4 (PSE-36): bits 31:22 and, in bits 20:13, physical bits 39:32.
        return (entry & 0xFFC0_0000) | ((entry >> 13) & 0xFF) << 32
    return entry & _ADDR_MASK & ~(size - 1)


def table_address(mode: Mode, entry: int) -> int:
    return entry & (0xFFFF_F000 if mode is Mode.BITS32 else _ADDR_MASK)


def _reserved(mode: Mode, level: _Level, large: bool, nxe: bool) -> int:
    """The reserved bits of a present entry (SDM §4.3 Tables 4-4..4-6, §4.4.2 Tables 4-9..4-11,
    §4.5.4 Tables 4-15..4-20)."""
    if mode is Mode.BITS32:
        return _PDE4M_RSVD if large else 0
    rsvd = 0 if nxe else PTE_XD  # SDM §4.1.4, §4.6: with IA32_EFER.NXE=0 bit 63 is reserved
    if mode is Mode.PAE:
        rsvd |= _PAE_HIGH_RSVD
    if level.name == "PML4E":
        rsvd |= PTE_PS  # SDM §4.5.4 Table 4-15: bit 7 of a PML4E is reserved
    if large:
        rsvd |= _bit_range(level.shift - 1, 13)  # 1 GiB: bits 29:13; 2 MiB: bits 20:13
    return rsvd


def pdpt_address(cr3: int) -> int:
    """SDM §4.4.1: the physical address of PAE paging's PDPT, CR3[31:5] (32-byte aligned; bits
    11:5 are part of it, not of a PCID)."""
    return _root(Mode.PAE, cr3)


def load_pdptes(mem: Memory, cr3: int) -> tuple[int, ...]:
    """SDM §4.4.1: the 4 PDPTEs a MOV CR3 (or a CR0/CR4 write entering PAE paging) loads."""
    base = pdpt_address(cr3)
    return tuple(mem.read(base + 8 * i) for i in range(4))


def pdptes_error(pdptes: tuple[int, ...]) -> str | None:
    """SDM §4.4.1: loading a present PDPTE with a reserved bit set causes #GP."""
    for i, entry in enumerate(pdptes):
        if entry & PTE_P and entry & _PDPTE_RSVD:
            return f"#GP: reserved bits {entry & _PDPTE_RSVD:#x} set in PDPTE {i}"
    return None


def check_va(mode: Mode, va: int) -> None:
    if mode is Mode.LEVEL4:
        top = va >> 47
        if top not in (0, (1 << 17) - 1):
            raise ValueError(f"{va:#x} is not canonical (SDM §3.3.7.1: #GP, not #PF)")
    elif va >> 32:
        raise ValueError(f"{va:#x} is wider than the 32-bit linear addresses of {mode.value}")


def translate(mem: Memory, cr0: int, cr3: int, cr4: int, efer: int, va: int, *,
              pdptes: tuple[int, ...] | None = None) -> Translation | NoTranslation:
    """The translation of va under these registers, ignoring access rights.

    pdptes are PAE paging's PDPTE registers; None reads them from CR3 as a MOV CR3 would.
    """
    mode = paging_mode(cr0, cr4, efer)
    levels = mode_levels(mode)
    check_va(mode, va)
    nxe = bool(efer & bits.EFER_NX)
    writable, user, xd = True, True, False
    table = _root(mode, cr3)
    if mode is Mode.PAE:
        # SDM §4.4.2: translation starts from the PDPTE registers, not from memory; PDPTEs have
        # no R/W, U/S or XD bits (Table 4-8), so they do not restrict access rights.
        regs = load_pdptes(mem, cr3) if pdptes is None else pdptes
        err = pdptes_error(regs)
        if err:
            raise ValueError(f"{err}: the MOV that loaded these PDPTEs would have faulted")
        entry = regs[(va >> 30) & 3]
        if not entry & PTE_P:
            return NoTranslation(levels[0].name, rsvd=False)
        table = table_address(mode, entry)
        levels = levels[1:]
    for i, level in enumerate(levels):
        entry = mem.read(level.entry_address(table, va), level.entry_size)
        if not entry & PTE_P:
            return NoTranslation(level.name, rsvd=False)  # SDM §4.7: P=0 in an entry used
        # SDM §4.3: a PDE's PS is a page size only with CR4.PSE=1 (ignored otherwise);
        # §4.4.2 and §4.5.4: PAE and 4-level paging honour PS whatever CR4.PSE is.
        large = level.large is not None and entry & PTE_PS != 0 \
            and (mode is not Mode.BITS32 or cr4 & bits.CR4_PSE != 0)
        if entry & _reserved(mode, level, large, nxe):
            return NoTranslation(level.name, rsvd=True)
        # SDM §4.6.1: R/W and U/S restrict when 0 in any entry; XD (§4.6.2) when 1 in any.
        writable = writable and entry & PTE_RW != 0
        user = user and entry & PTE_US != 0
        xd = xd or entry & PTE_XD != 0
        if large or i == len(levels) - 1:
            size = level.large if large and level.large else PAGE_4K
            frame = _large_frame(mode, entry, size) if large else table_address(mode, entry)
            # SDM §4.5.4 Tables 4-18..4-20: bits 62:59 of the leaf are its protection key.
            pkey = (entry >> 59) & 0xF if mode is Mode.LEVEL4 else 0
            return Translation(paddr=frame | (va & (size - 1)), page_size=size,
                               global_=entry & PTE_G != 0, perms=Perms(writable, user, xd),
                               pkey=pkey)
        table = table_address(mode, entry)
    raise AssertionError("unreachable: the last level always maps a page")


def access_error_bits(access: Access, cr4: int, efer: int) -> int:
    """The error-code bits that describe the access itself (SDM §4.7)."""
    code = 0
    if access.kind is Kind.WRITE:
        code |= PFERR_W
    if access.user:
        code |= PFERR_U
    # SDM §4.7: I/D is reported for a fetch only with CR4.SMEP=1, or with PAE/4-level paging
    # (CR4.PAE=1) and IA32_EFER.NXE=1.
    reports_fetch = cr4 & bits.CR4_SMEP or (cr4 & bits.CR4_PAE and efer & bits.EFER_NX)
    if access.kind is Kind.FETCH and reports_fetch:
        code |= PFERR_I
    return code


def check_access(perms: Perms, cr0: int, cr4: int, efer: int, access: Access, *,
                 ac: bool = False, pkru: int = 0, pkey: int = 0) -> int | None:
    """The #PF error code if the access rights deny the access, else None (SDM §4.6).

    Applied at use time to a cached translation (SDM §4.10.2.2).  ac is EFLAGS.AC, which lets
    explicit supervisor data accesses reach user-mode addresses under CR4.SMAP; pkru is the
    PKRU register and pkey the translation's protection key.
    """
    nx = perms.xd and efer & bits.EFER_NX != 0  # §4.6.2: XD only counts with NXE=1
    if access.user:
        # §4.6.1 user-mode accesses: only user-mode addresses; writes need R/W=1 at every level
        # whatever CR0.WP is; fetches need XD=0.
        allowed = perms.user and {
            Kind.READ: True, Kind.WRITE: perms.writable, Kind.FETCH: not nx}[access.kind]
    elif access.kind is Kind.FETCH:
        # §4.6.1 supervisor fetches: never from user-mode addresses with CR4.SMEP=1; XD applies.
        allowed = not (perms.user and cr4 & bits.CR4_SMEP) and not nx
    else:
        # §4.6.1 supervisor data accesses: CR4.SMAP forbids user-mode addresses unless
        # EFLAGS.AC=1; with CR0.WP=1 writes need R/W=1 at every level.
        smap_denies = perms.user and cr4 & bits.CR4_SMAP and not ac
        wp_denies = access.kind is Kind.WRITE and cr0 & bits.CR0_WP and not perms.writable
        allowed = not smap_denies and not wp_denies
    if not allowed:
        return PFERR_P | access_error_bits(access, cr4, efer)
    if _pkey_denies(perms, cr0, cr4, efer, access, pkru, pkey):
        return PFERR_P | PFERR_PK | access_error_bits(access, cr4, efer)
    return None


def _pkey_denies(perms: Perms, cr0: int, cr4: int, efer: int, access: Access, pkru: int,
                 pkey: int) -> bool:
    """SDM §4.6.2 (protection keys): with CR4.PKE=1 and IA-32e paging, a data access to a
    user-mode address is denied if PKRU's AD bit for the page's key is set, and a write if its
    WD bit is set (a supervisor write only with CR0.WP=1).  Instruction fetches are exempt."""
    if not (cr4 & bits.CR4_PKE and efer & bits.EFER_LMA) or not perms.user \
            or access.kind is Kind.FETCH:
        return False
    ad, wd = (pkru >> 2 * pkey) & 1, (pkru >> (2 * pkey + 1)) & 1
    if ad:
        return True
    return bool(wd) and access.kind is Kind.WRITE and (access.user or cr0 & bits.CR0_WP != 0)


def walk(mem: Memory, cr0: int, cr3: int, cr4: int, efer: int, va: int, access: Access, *,
         ac: bool = False, pkru: int = 0,
         pdptes: tuple[int, ...] | None = None) -> WalkResult:
    """Translate va for an access and check its rights: the hardware page walk (SDM §4.3-§4.7)."""
    found = translate(mem, cr0, cr3, cr4, efer, va, pdptes=pdptes)
    if isinstance(found, NoTranslation):
        # SDM §4.7: P=0 for a not-present entry; a reserved bit sets P and RSVD.
        stop = PFERR_P | PFERR_RSVD if found.rsvd else 0
        return WalkResult(None, stop | access_error_bits(access, cr4, efer))
    return WalkResult(found, check_access(found.perms, cr0, cr4, efer, access, ac=ac, pkru=pkru,
                                          pkey=found.pkey))


@dataclass
class FrameAllocator:
    """Hands out zeroed frames of size bytes (4 KiB unless told) upwards from next_free."""

    next_free: int
    size: int = PAGE_4K

    def alloc(self) -> int:
        frame = self.next_free
        self.next_free += self.size
        return frame
