"""A builder of paging-structure hierarchies for tests: map pages of every size in each mode."""

from __future__ import annotations

from dataclasses import dataclass, field

from formal.concrete.paging import (
    MAXPHYADDR,
    FrameAllocator,
    Memory,
    Mode,
    check_va,
    mode_levels,
    table_address,
)
from formal.concrete.pte import PTE_P, PTE_PS, PTE_RW, PTE_US
from formal.model.bits import PAGE_1G, PAGE_2M, PAGE_4K, PAGE_4M

# SDM §4.3 Table 4-4 (PSE-36): a 4 MiB page's frame has at most 40 physical-address bits.
_PSE36_MAXPHYADDR = 40

_PAGE_SIZES = {Mode.BITS32: (PAGE_4K, PAGE_4M), Mode.PAE: (PAGE_4K, PAGE_2M),
               Mode.LEVEL4: (PAGE_4K, PAGE_2M, PAGE_1G)}


@dataclass
class PageTables:
    """A paging-structure hierarchy for one mode, rooted at a frame from alloc."""

    mem: Memory
    mode: Mode
    alloc: FrameAllocator
    root: int = field(init=False)

    def __post_init__(self) -> None:
        mode_levels(self.mode)
        self.root = self.alloc.alloc()

    def cr3(self, pcid: int = 0) -> int:
        """A CR3 value for these tables (SDM §4.5.2: PCID in bits 11:0 with CR4.PCIDE=1, which
        only 4-level paging has, §4.10.1; with PAE paging CR3[11:5] locate the PDPT, §4.4.1)."""
        if pcid and self.mode is not Mode.LEVEL4:
            raise ValueError(f"{self.mode.value} paging has no PCID in CR3")
        return self.root | pcid

    def map(self, va: int, pa: int, flags: int, *, size: int = PAGE_4K,
            table_flags: int = PTE_P | PTE_RW | PTE_US) -> int:
        """Map the page of `size` at va to pa with leaf `flags` (PS is added for large pages);
        paging-structure entries this creates get `table_flags` (PAE PDPTEs only P: §4.4.1
        reserves their other low bits).  Returns the address of the leaf entry."""
        if size not in _PAGE_SIZES[self.mode]:
            raise ValueError(f"{self.mode.value} paging has no {size:#x}-byte pages")
        if (va | pa) & (size - 1):
            raise ValueError(f"va {va:#x} and pa {pa:#x} must be {size:#x}-aligned")
        check_va(self.mode, va)
        limit = _PSE36_MAXPHYADDR if size == PAGE_4M else 32 if self.mode is Mode.BITS32 \
            else MAXPHYADDR
        if pa >> limit or (self.mode is Mode.BITS32 and flags >> 32):
            raise ValueError(f"pa {pa:#x} or flags {flags:#x} do not fit a {self.mode.value} entry")
        table = self.root
        levels = mode_levels(self.mode)
        for i, level in enumerate(levels):
            addr = level.entry_address(table, va)
            if level.large == size or i == len(levels) - 1:
                if size == PAGE_4K:
                    entry = pa | flags
                elif self.mode is Mode.BITS32:
                    entry = (pa & 0xFFC0_0000) | (pa >> 32) << 13 | flags | PTE_PS
                else:
                    entry = pa | flags | PTE_PS
                self.mem.write(addr, entry, level.entry_size)
                return addr
            entry = self.mem.read(addr, level.entry_size)
            if entry & PTE_P and level.large and entry & PTE_PS:
                raise ValueError(f"{va:#x} is already inside a large page mapped by a {level.name}")
            if not entry & PTE_P:
                pae_pdpte = self.mode is Mode.PAE and level.name == "PDPTE"
                entry = self.alloc.alloc() | (PTE_P if pae_pdpte else table_flags)
                self.mem.write(addr, entry, level.entry_size)
            table = table_address(self.mode, entry)
        raise AssertionError("unreachable: the PTE level maps every 4 KiB page")
