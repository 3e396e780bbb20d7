"""The concrete shadow MMU (docs/design.md §6, issue #4 item 3): KVM's mechanism on real guest page
tables, run by the unchanged policy specs.

`concrete_policy(cls)` builds `type(name, (ConcreteMmuMixin, cls), {})`: the mixin overrides the
Mechanism primitives of formal.model.kvm so that, besides keeping the ghost state (super()), they
act
on a concrete model of what KVM and the hardware hold for the watched page
(formal.model.arch.WATCHED_VA):

- guest memory with x86 paging structures for every pgd (`GuestWorld`, formal.concrete.paging
formats);
- shadow pages keyed by (gfn, role) in one shared table, as KVM's mmu_page_hash
  (mmu.c kvm_mmu_get_page / kvm_mmu_find_shadow_page): a leaf shadow page holds the guest PTE its
  SPTE was built from, goes unsync on a guest PTE write (mmu.c mmu_try_to_unsync_pages ->
  kvm_unsync_page) and keeps the old translation until synced (mmu.c mmu_sync_children ->
  kvm_sync_page, paging_tmpl.h FNAME(sync_spte) re-reads the guest PTE);
- the hardware TLB of each guest context (L1's VPID, L2's vpid02): a saturated set of
  (PCID, translation) entries of the watched page, filled whenever the guest runs and emptied only
  by KVM's flushes (vmx_flush_tlb_* / svm_flush_tlb_*) or, for an instruction the hardware
  executes itself, by that instruction (SDM Vol. 3A §4.10.4.1).

With TDP the hardware walks the guest's tables itself (SDM Vol. 3C §28.2.1); KVM's direct root maps
guest-physical addresses correctly, so the guest's translation is a hardware walk of its own
tables.  For L2 under nested EPT/NPT the guest_mmu roots shadow L1's EPT/NPT tables: their leaf
shadow page holds the EPT entry of L2's data pages (modelled as an offset from L2-physical to
L1-physical addresses, the one EPT entry the traces write).

Another page's leaf PTE (guest_pte_write_other) has a leaf table and leaf shadow pages of its own,
which only say whether a root is unsync (mmu.c is_unsync_root); no access reads that page.

What the concrete level does not model: guest writes to non-leaf tables (the traces write only leaf
PTEs; KVM keeps non-leaf guest tables write-protected, so the path to the leaf table is always the
current one), zapping (no event zaps a shadow page), and permission bits of roles
(a root built for another CR0.WP/SMEP/SMAP/NX regime serves the same read of the watched page,
a user read of a user page or a supervisor read of a supervisor one).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from formal.concrete.emulation import PROBES
from formal.concrete.paging import (
    FrameAllocator,
    Memory,
    Mode,
    Perms,
    Translation,
    load_pdptes,
    paging_mode,
    pdpt_address,
    translate,
)
from formal.concrete.pte import PTE_G, PTE_P, PTE_PS, PTE_RW, PTE_US, PTE_XD
from formal.errors import NotModeled
from formal.model import arch, bits, roles
from formal.model.arch import Inval
from formal.model.bits import PAGE_1G, PAGE_2M, PAGE_4K, PAGE_4M
from formal.model.kvm import Mechanism
from formal.model.properties import ModelError
from formal.model.state import DEFAULT_PAGE, Config, Mmu, Nested, Page, Regs, Root, Vcpu

# Paging structures other than the roots (which sit at the pgds' own addresses) and the guest's
# data pages live in these regions of guest-physical memory, below 4 GiB so that 32-bit paging
# reaches them (SDM §4.3).
TABLES_BASE = 0x0100_0000
DATA_BASE = 0x0200_0000
REGION_END = 0x0400_0000
# The offset each write to an L1 EPT/NPT table moves L2's data pages by, and how far apart the
# offsets of L1's different EPT/NPT tables start (see GuestWorld.ept): distinct tables map L2's
# pages to distinct L1 pages, so using one table's shadow root for another is seen.
EPT_STEP = 0x1000_0000
EPT_TABLE_STEP = 0x1_0000_0000
# A 2 MiB watched page's frames: above every 4 KiB one (PAE and 4-level PDEs reach them; 32-bit
# paging never maps a 2 MiB page, formal.model.scope).  A 1 GiB page's frames
# (4-level PDPTEs reach them) lie 64 GiB apart from 1 TiB up, so that no L2 frame plus the
# offsets L1's EPT/NPT tables add (EPT_STEP, EPT_TABLE_STEP) meets another within 16 tables or
# 256 writes of one.  A 4 MiB page's frames lie below 4 GiB, where a 32-bit PDE reaches them
# without PSE-36 (SDM §4.3), above the tables and data regions.
LARGE_BASE = 0x1_0000_0000
PAGE_4M_BASE = 0x4000_0000
HUGE_BASE = 0x100_0000_0000
HUGE_STRIDE = 0x10_0000_0000

TABLE_FLAGS = PTE_P | PTE_RW | PTE_US
LEAF_FLAGS = PTE_P | PTE_RW | PTE_US
_ADDR = bits.CR3_ADDR_MASK

# Indexes of WATCHED_VA (0x400000): PAE and 4-level PDPTE index 0, 4-level and PAE PD index 2,
# PT index 0 (SDM §4.4.2, §4.5.4); 32-bit PDE index 1, PTE index 0 (SDM §4.3).
_PDPTE_INDEX = (arch.WATCHED_VA >> 30) & 3
_PDPTE64_INDEX = (arch.WATCHED_VA >> 30) & 0x1FF
_PD_INDEX = (arch.WATCHED_VA >> 21) & 0x1FF
_PT_INDEX = (arch.WATCHED_VA >> 12) & 0x1FF
_PDE32_INDEX = arch.WATCHED_VA >> 22
# The probe pages of emulated accesses (formal.concrete.emulation.PROBES) share the watched
# page's table, at PT indexes 2 and 6 both as 8-byte and as 32-bit PTEs: the 32-bit entries lie
# in the low halves of the 8-byte entries 1 and 3, so no two probe entries overlap (and the
# 32-bit view of the 8-byte ones is entries 4, 5, 12 and 13, which no probe uses).  The pages
# they map are never read: their frames sit at the top of the tables region.
PROBE_FRAMES = DATA_BASE - 0x1_0000
# The level of the guest entry that maps the watched page, by its size (SDM §4.3, §4.5.4).
_LEAF_LEVEL = {PAGE_4K: 1, PAGE_2M: 2, PAGE_4M: 2, PAGE_1G: 3}
# The 32-bit PTE index of WATCHED_VA (SDM §4.3).
_PTE32_INDEX = (arch.WATCHED_VA >> 12) & 0x3FF


@dataclass
class Tables:
    """The paging structures below one pgd's root frame, shared by every paging mode: the PD and
    PT are valid both as PAE/4-level tables (8-byte entries) and, since every address is below
    4 GiB, the PT's first entry as a 32-bit PTE (its low 4 bytes).  Pgds that differ only in
    CR3[11:0] share them, as the abstract model's tables are CR3[M-1:12]
    (formal.model.arch.tables)."""

    root: int
    pdpt: int
    pd: int
    pt: int
    # The 32-bit PDE with PS=1 that maps a 4 MiB watched page (0: none), which the root frame
    # holds under 32-bit paging (GuestWorld.format_root).
    pde_4m: int = 0

    @property
    def leaf(self) -> int:
        """Address of the watched page's PTE."""
        return self.pt + 8 * _PT_INDEX

    @property
    def large_leaf(self) -> int:
        """Address of the PDE that maps a 2 MiB watched page."""
        return self.pd + 8 * _PD_INDEX

    @property
    def huge_leaf(self) -> int:
        """Address of the 4-level PDPTE that maps a 1 GiB watched page."""
        return self.pdpt + 8 * _PDPTE64_INDEX


@dataclass
class GuestWorld:
    """Guest-physical memory and the guest's page tables: each pgd maps WATCHED_VA to a data page
    of its own; each guest PTE write points that leaf at a fresh data page, so an out-of-sync
    translation always differs from the current one.  Every leaf of the watched page has the
    page's G, U/S, R/W and XD bits (formal.model.state.Page); with a size of 2 MiB the
    PD entry maps a 2 MiB page with PS=1 (Vcpu.page_large) in a 2 MiB frame of its own, with
    1 GiB the 4-level PDPT entry maps a 1 GiB page (Vcpu.page_1g), with 4 MiB the 32-bit PDE a
    4 MiB page (Vcpu.page_4m); the tables below are then unreachable, and the probe pages
    (formal.concrete.emulation.PROBES) lie inside the large page, with its rights."""

    page: Page = DEFAULT_PAGE
    mem: Memory = field(default_factory=Memory)
    tables: dict[int, Tables] = field(default_factory=dict)
    alloc: FrameAllocator = field(default_factory=lambda: FrameAllocator(TABLES_BASE))
    data: FrameAllocator = field(default_factory=lambda: FrameAllocator(DATA_BASE))
    large: FrameAllocator = field(default_factory=lambda: FrameAllocator(LARGE_BASE, PAGE_2M))
    huge: FrameAllocator = field(default_factory=lambda: FrameAllocator(HUGE_BASE, HUGE_STRIDE))
    m4: FrameAllocator = field(default_factory=lambda: FrameAllocator(PAGE_4M_BASE, PAGE_4M))
    # L1's EPT/NPT for L2, per nested pgd: every offset (L1 GPA - L2 GPA of a data page) it ever
    # held, current last, the k-th table named starting at k * EPT_TABLE_STEP; and the frame of
    # its leaf table (the shadow page's gfn).
    ept: dict[int, list[int]] = field(default_factory=dict)
    ept_leaf: dict[int, int] = field(default_factory=dict)
    # Per table address (a pgd's, or an EPT/NPT table's), the frame of the leaf table of another
    # page, whose PTE guest_pte_write_other rewrites.  No access reads that page, so the frame
    # is not linked into the walk: it is the gfn of the other page's leaf shadow page.
    other_leaf: dict[int, int] = field(default_factory=dict)

    def add_pgd(self, pgd: int) -> Tables:
        """The tables rooted at pgd's frame, built on first use (root formatted for 4-level)."""
        addr = pgd & _ADDR
        if addr in self.tables:
            return self.tables[addr]
        if TABLES_BASE <= addr < REGION_END or addr >> 32:
            raise NotModeled(f"the concrete level: pgd {pgd:#x}: its root frame must lie below "
                             f"4 GiB and outside {TABLES_BASE:#x}..{REGION_END:#x}, where replay "
                             "builds tables")
        t = Tables(addr, self.alloc.alloc(), self.alloc.alloc(), self.alloc.alloc())
        self.mem.write(t.pdpt, t.pd | TABLE_FLAGS)
        self.mem.write(t.large_leaf, t.pt | TABLE_FLAGS)
        self.mem.write(t.leaf, self.data.alloc() | self.leaf_flags)
        if self.page.size != PAGE_4K:
            self.mem.write(*self._mapping(t))
        for k, (va, flags) in enumerate(PROBES):
            index, frame = (va >> 12) & 0x1FF, PROBE_FRAMES + k * PAGE_4K
            self.mem.write(t.pt + 8 * index, frame | flags)
            self.mem.write(t.pt + 4 * index, frame | (flags & 0xFFF), 4)
        self.tables[addr] = t
        self.format_root(pgd, Mode.LEVEL4)
        return t

    def format_root(self, pgd: int, mode: Mode) -> None:
        """Lay out pgd's top-level table for a paging mode: the first 8-byte entry of the root
        frame holds the PML4E 0 (4-level) or, in its high half, the 32-bit PDE 1 (SDM §4.3);
        with PAE paging the PDPTE 0 of the PDPT at CR3[31:5] (SDM §4.4.1: 32-byte aligned, so
        CR3[11:5] place it inside the frame; only P, Table 4-8 reserves its other low bits).
        A guest that changes paging mode rewrites its top-level table this way before it uses
        it."""
        t = self.tables[pgd & _ADDR]
        if mode is Mode.PAE:
            self.mem.write(pdpt_address(pgd) + 8 * _PDPTE_INDEX, t.pd | PTE_P)
        elif mode is Mode.LEVEL4:
            self.mem.write(t.root, t.pdpt | TABLE_FLAGS)
        elif mode is Mode.BITS32:
            self.mem.write(t.root, (t.pde_4m or t.pt | TABLE_FLAGS) << 32 * _PDE32_INDEX)

    @property
    def leaf_flags(self) -> int:
        """The flags of the watched page's leaf entry: P, R/W, U/S, G and XD are bits 0, 1, 2, 8 and
        63 of a PAE or 4-level entry (SDM Vol. 3A §4.4.2, §4.5.4), the first four of a 32-bit one
        (§4.3)."""
        page = self.page
        return PTE_P | (PTE_G if page.global_ else 0) | (PTE_US if page.user else 0) \
            | (PTE_RW if page.writable else 0) | (PTE_XD if page.nx else 0)

    def new_leaf(self, pgd: int) -> tuple[int, int]:
        """(address, value) of a guest write pointing the entry that maps pgd's watched page
        (its PTE, or its PDE or PDPTE for a large page) at a fresh page."""
        return self._mapping(self.tables[pgd & _ADDR])

    def _mapping(self, t: Tables) -> tuple[int, int]:
        """(address, value) of the entry that maps the watched page under t, pointed at a fresh
        page: its PTE, or its PDE or PDPTE with PS=1 for a large page (a 4 MiB page's 32-bit
        PDE as the root frame's first 8 bytes, as format_root lays them out)."""
        if self.page.size == PAGE_4M:
            t.pde_4m = self.m4.alloc() | self.leaf_flags | PTE_PS
            return t.root, t.pde_4m << 32 * _PDE32_INDEX
        if self.page.size == PAGE_1G:
            return t.huge_leaf, self.huge.alloc() | self.leaf_flags | PTE_PS
        if self.page.size == PAGE_2M:
            return t.large_leaf, self.large.alloc() | self.leaf_flags | PTE_PS
        return t.leaf, self.data.alloc() | self.leaf_flags

    def other_table(self, pgd: int) -> int:
        """The frame of the other page's leaf table under the tables at pgd (built on first
        use)."""
        addr = pgd & _ADDR
        if addr not in self.other_leaf:
            self.other_leaf[addr] = self.alloc.alloc()
        return self.other_leaf[addr]

    def write_other(self, pgd: int) -> None:
        """The guest rewrites the other page's PTE in the tables at pgd (to a fresh page)."""
        self.mem.write(self.other_table(pgd), self.data.alloc() | LEAF_FLAGS)

    def add_ept(self, nested_pgd: int) -> None:
        addr = nested_pgd & _ADDR
        if addr not in self.ept:
            self.ept[addr] = [len(self.ept) * EPT_TABLE_STEP]
            self.ept_leaf[addr] = self.alloc.alloc()

    def write_ept(self, nested_pgd: int) -> None:
        """L1 rewrites the EPT/NPT entry of L2's data pages: they move by EPT_STEP."""
        offsets = self.ept[nested_pgd & _ADDR]
        offsets.append(offsets[-1] + EPT_STEP)


def leaf_perms(gpte: int) -> Perms:
    """The rights a translation through these tables has: every non-leaf entry is P|RW|US, so
    the leaf's R/W, U/S and XD decide (SDM §4.6.1: R/W and U/S ANDed, XD ORed)."""
    return Perms(writable=gpte & PTE_RW != 0, user=gpte & PTE_US != 0, xd=gpte & PTE_XD != 0)


@dataclass
class ShadowPage:
    """A leaf struct kvm_mmu_page: the guest entry its SPTE for the watched page was built from
    (None: not faulted in yet) and whether it is unsync."""

    gpte: int | None = None
    unsync: bool = False


@dataclass(frozen=True)
class Seen:
    """A translation the guest may get: its guest-physical address, rights (None without
    paging), where it comes from, whether the hardware holds it as a global entry (SDM
    Vol. 3A §4.10.2.4: usable under any PCID) and the size of the page it holds the entry as
    (an invalidation of any address in that page reaches it: formal.model.arch.page_hit)."""

    gpa: int
    perms: Perms | None
    via: str
    global_: bool = False
    size: int = PAGE_4K


@dataclass
class HwContext:
    """One hardware TLB context (VPID/ASID) of the guest: per PCID, every translation of the
    watched page it may hold (saturated: cached whenever the guest ran, kept until flushed)."""

    entries: dict[int, dict[tuple[int, Perms | None, bool, int], Seen]] = \
        field(default_factory=dict)

    def fill(self, pcid: int, seen: Seen) -> None:
        key = (seen.gpa, seen.perms, seen.global_, seen.size)
        self.entries.setdefault(pcid, {}).setdefault(key, seen)

    def held(self, pcid: int) -> list[Seen]:
        """What a lookup under pcid may use: its entries and the global ones of every PCID."""
        return [seen for p, held in self.entries.items() for seen in held.values()
                if p == pcid or seen.global_]


class ConcreteMmuMixin(Mechanism):
    """Mechanism primitives that also maintain the concrete shadow MMU and hardware TLBs.  Put
    before a policy class in the bases; every override calls super() first, so the ghost state
    stays exactly the abstract model's."""

    world: GuestWorld

    def __init__(self, cfg: Config, world: GuestWorld | None = None) -> None:
        super().__init__(cfg)
        self.world = world if world is not None else GuestWorld()
        self.pages: dict[tuple[int, int], ShadowPage] = {}
        # The roots (by pgd and role) whose unsync_children is set: a leaf below went unsync
        # while the root reached it (kvm_mmu_mark_parents_unsync).  Only a sync from that root
        # clears it (mmu_sync_children -> mmu_pages_clear_parents clears the walked path), so
        # a root keeps it when another root sharing the leaf syncs that leaf.
        self.unsync_children: set[tuple[int, int]] = set()
        # The PDPTEs each PAE root (by pgd and role) was built from (alloc_root).
        self.pdptrs: dict[tuple[int, int], tuple[int, ...]] = {}
        # The hardware TLB contexts, by hardware_context().
        self.hw: dict[tuple[int, str], HwContext] = {}

    # -- shadow pages --

    def _is_ept_root(self, v: Vcpu, root: Root) -> bool:
        """A guest_mmu root under nested EPT/NPT: it shadows L1's EPT/NPT tables."""
        return self.cfg.nested_tdp and any(root is r for r in _slots(v.guest_mmu))

    @staticmethod
    def _pae_guest(root: Root) -> bool:
        """An indirect root shadowing PAE paging: level 3 with 8-byte guest entries (a 32-bit
        guest's shadow root is level 3 too, with 4-byte ones: roles.shadow_root_role)."""
        return root.valid and not roles.is_direct(root.role) \
            and roles.level(root.role) == roles.PT32E_ROOT_LEVEL \
            and not root.role & roles.HAS_4_BYTE_GPTE

    def alloc_root(self, v: Vcpu, mmu: Mmu, pgd: int) -> None:
        """A PAE root also records the guest's PDPTEs: mmu.c mmu_alloc_shadow_roots builds
        pae_root[i] from mmu->get_pdptr(i) (kvm_pdptr_read), the PDPTE registers x86.c
        load_pdptrs read from the PDPT at CR3[31:5] (SDM §4.4.1), and leaves it empty for a
        PDPTE without P.  The replay's guest never rewrites a PDPT it runs on, so the memory at
        CR3[31:5] now holds what load_pdptrs loaded.  kvm_mmu_load syncs the new root
        (kvm_mmu_sync_roots), which clears its unsync_children."""
        super().alloc_root(v, mmu, pgd)
        self.unsync_children.discard((pgd & _ADDR, mmu.root.role))
        if self._pae_guest(mmu.root):
            self.pdptrs[(pgd, mmu.root.role)] = load_pdptes(self.world.mem, pgd)

    def _leaf_key(self, v: Vcpu, root: Root) -> tuple[int, int] | None:
        """(gfn, role) of the shadow page under root that shadows the guest table whose entry
        maps the watched page, None when the root maps nothing there: the leaf role is the
        root's with level 1 (mmu.c kvm_mmu_child_role), or with level 2 for a 2 MiB page's PD
        (a 4 MiB page's 32-bit PD, the root frame) and level 3 for a 1 GiB page's PDPT (whose
        SPTE leads to direct shadow pages down to 4 KiB SPTEs: Mechanism.hw_size)."""
        if self._is_ept_root(v, root):
            self.world.add_ept(root.pgd)
            return self.world.ept_leaf[root.pgd & _ADDR] >> 12, root.role & ~roles.LEVEL_MASK | 1
        level = _LEAF_LEVEL[self.world.page.size]
        role = root.role & ~roles.LEVEL_MASK | level
        t = self.world.add_pgd(root.pgd)
        if root.role & roles.HAS_4_BYTE_GPTE:
            return {1: t.pt, 2: t.root}[level] >> 12, role
        if not self._pae_guest(root):
            return {1: t.pt, 2: t.pd, 3: t.pdpt}[level] >> 12, role
        # Below the root's PDPTE, the guest's PD entry leads to the leaf table (paging_tmpl.h
        # FNAME(walk_addr_generic)); KVM write-protects the PD it shadows, the replay never
        # rewrites one.
        pdpte = self.pdptrs[(root.pgd, root.role)][_PDPTE_INDEX]
        if not pdpte & PTE_P:
            return None
        if level == 2:
            return (pdpte & _ADDR) >> 12, role
        pde = self.world.mem.read((pdpte & _ADDR) + 8 * _PD_INDEX)
        return ((pde & _ADDR) >> 12, role) if pde & PTE_P else None

    def _guest_entry(self, v: Vcpu, root: Root, key: tuple[int, int]) -> int:
        """The guest entry the SPTE is built from: the guest PTE (or a large page's PDE) in the
        table the shadow page key shadows (paging_tmpl.h FNAME(walk_addr) /
        FNAME(sync_spte)), or L1's EPT entry for a guest_mmu root."""
        if self._is_ept_root(v, root):
            return self.world.ept[root.pgd & _ADDR][-1]
        level = roles.level(key[1])
        if key[1] & roles.HAS_4_BYTE_GPTE:
            index = {1: _PTE32_INDEX, 2: _PDE32_INDEX}[level]
            return self.world.mem.read((key[0] << 12) + 4 * index, 4)
        index = {1: _PT_INDEX, 2: _PD_INDEX, 3: _PDPTE64_INDEX}[level]
        return self.world.mem.read((key[0] << 12) + 8 * index)

    def _faulted_in(self, v: Vcpu, root: Root) -> ShadowPage | None:
        """The leaf shadow page, with its SPTE installed from the current guest entry if missing
        (the shadow page fault, paging_tmpl.h FNAME(page_fault) -> FNAME(fetch)); None when the
        root maps nothing for the watched page (the guest gets the page fault)."""
        key = self._leaf_key(v, root)
        if key is None:
            return None
        sp = self.pages.setdefault(key, ShadowPage())
        if sp.gpte is None:
            sp.gpte = self._guest_entry(v, root, key)
        return sp

    def _other_key(self, root: Root) -> tuple[int, int] | None:
        """(gfn, role) of the other page's leaf shadow page under root, None before the guest
        first wrote that page's PTE in the root's tables."""
        frame = self.world.other_leaf.get(root.pgd & _ADDR)
        return None if frame is None else (frame >> 12, root.role & ~roles.LEVEL_MASK | 1)

    def sync_root(self, v: Vcpu, root: Root, when: object = True, children: bool = True) -> None:
        super().sync_root(v, root, when, children)
        if when and root.valid and not roles.is_direct(root.role):
            key = self._leaf_key(v, root)
            sp = None if key is None else self.pages.get(key)
            if sp is not None:
                # kvm_sync_page (or, for one address, FNAME(invlpg) / sync_spte): the SPTE
                # rebuilt from the guest's current entry; only mmu_sync_children leaves the
                # page synced.
                sp.gpte = self._guest_entry(v, root, key) if sp.gpte is not None else None
                sp.unsync = sp.unsync and not children
            other = self._other_key(root)
            if children and other in self.pages:
                self.pages[other].unsync = False
            if children:
                self.unsync_children.discard((root.pgd & _ADDR, root.role))

    def is_unsync_root(self, v: Vcpu, root: Root) -> object:
        """From the shadow pages themselves: the root's unsync_children is set, or the watched
        page's leaf or the other page's leaf under the root is unsync (the root's
        unsync_children, kvm_mmu_mark_parents_unsync).  The ghost's answer must be the same."""
        ghost = super().is_unsync_root(v, root)
        found = (root.pgd & _ADDR, root.role) in self.unsync_children
        if root.valid and not roles.is_direct(root.role):
            for key in (self._leaf_key(v, root), self._other_key(root)):
                sp = None if key is None else self.pages.get(key)
                found = found or (sp is not None and sp.unsync)
        if bool(ghost) != found:
            raise ModelError(f"the ghost says root pgd={root.pgd:#x} is "
                             f"{'' if ghost else 'not '}unsync, its shadow pages say otherwise")
        return found

    def guest_pte_write_other(self, v: Vcpu, pgd: int) -> None:
        """The store lands (GuestWorld.write_other, done by the replay); KVM's part is
        mmu_try_to_unsync_pages on that leaf table: its shadow page under every root of those
        tables (the guest touched the page under each) goes unsync."""
        super().guest_pte_write_other(v, pgd)
        for root in v.all_roots():
            if root.valid and not roles.is_direct(root.role) \
                    and root.pgd & _ADDR == pgd & _ADDR:
                self.world.other_table(pgd)
                key = self._other_key(root)
                self.pages.setdefault(key, ShadowPage()).unsync = True
                self.unsync_children.add((root.pgd & _ADDR, root.role))

    def guest_pte_write(self, v: Vcpu, pgd: int) -> None:
        """The guest's store itself lands in memory (the replay performs it); KVM's part is
        mmu_try_to_unsync_pages: every leaf shadow page of the written table goes unsync and
        keeps its SPTE."""
        super().guest_pte_write(v, pgd)
        if self.cfg.nested_tdp and pgd & _ADDR == v.nested_pgd & _ADDR:
            self.world.add_ept(pgd)
            gfn = self.world.ept_leaf[pgd & _ADDR] >> 12
        else:
            gfn = self.world.add_pgd(pgd).pt >> 12
        for (page_gfn, _), sp in self.pages.items():
            if page_gfn == gfn:
                sp.unsync = True
        for root in v.all_roots():
            key = self._leaf_key(v, root)
            if key is not None and key[0] == gfn and key in self.pages:
                self.unsync_children.add((root.pgd & _ADDR, root.role))

    # -- the hardware TLB --

    def hardware_context(self, v: Vcpu) -> tuple[int, str]:
        """The hardware context the guest runs in now, as the processor tags it: the VPID or
        ASID (1: L1's, vpid01 / vmcb01's; 2: L2's, vpid02 / vmcb02's) and, under EPT with
        nested VMX, whose EPT root ("l1": KVM's for L1, "l2": the shadow of L1's EPT).  An L2
        whose vmcs12 has no VPID runs on vpid01 (vmx/nested.c prepare_vmcs02_early_rare)."""
        l2 = bool(v.guest_mode)
        if self.cfg.nested != Nested.VMX:  # SVM (and a VM entry the flat configurations run)
            return (2 if l2 else 1, "")
        return (2 if l2 and v.vpid12 else 1, ("l2" if l2 else "l1") if self.tdp_enabled else "")

    @staticmethod
    def _ghost_ctx(key: tuple[int, str]) -> int:
        """The abstract model's context for a hardware context (Mechanism.hw_ctx1)."""
        return int(key[1] == "l2") if key[1] else int(key[0] == 2)

    def flush_hw_context(self, v: Vcpu, ctx: int) -> None:
        super().flush_hw_context(v, ctx)
        self.hw = {k: c for k, c in self.hw.items() if self._ghost_ctx(k) != ctx}

    def flush_vpid(self, v: Vcpu, vpid01: object) -> None:
        super().flush_vpid(v, vpid01)
        gone = 1 if vpid01 else 2
        self.hw = {k: c for k, c in self.hw.items() if k[0] != gone}

    def apply_invalidations(self, v: Vcpu, invals: tuple[Inval, ...], native: bool) -> None:
        """An instruction the hardware executes itself (not intercepted) invalidates the
        running VPID's or ASID's TLB as the architecture says; an intercepted one touches no
        hardware TLB."""
        super().apply_invalidations(v, invals, native)
        if native:
            # Under the current VPID or ASID, in every EPT context (SDM Vol. 3C §28.3.3.1).
            running = self.hardware_context(v)[0]
            for key, hw in self.hw.items():
                if key[0] != running:
                    continue
                for inval in invals:
                    kept = {pcid: {k: s for k, s in held.items()
                                   if not inval.covers(arch.vpid(v), pcid, s.global_,
                                                       *arch.page_attributes(s.size))}
                            for pcid, held in hw.entries.items()}
                    hw.entries = {pcid: held for pcid, held in kept.items() if held}

    def mark_active(self, v: Vcpu) -> None:
        """The guest runs: the hardware may cache what it translates now."""
        super().mark_active(v)
        if self.caches_no_linear(v, self.current_ctx(v)):
            return
        seen = self.translation(v)
        if seen is not None:
            self.hw.setdefault(self.hardware_context(v), HwContext()).fill(arch.pcid(v.regs),
                                                                           seen)

    # -- what the guest gets --

    def translation(self, v: Vcpu) -> Seen | None:
        """The watched page's translation through the active root now (None: the guest would
        page-fault)."""
        root = v.mmu.root
        where = f"root pgd={root.pgd:#x} role={roles.describe(root.role)}"
        if v.mmu_is_guest:
            walked = self._hardware_walk(v.regs)
            if walked is None:
                return None
            ept = self._faulted_in(v, root)
            assert ept is not None and ept.gpte is not None
            offset = ept.gpte
            return Seen(walked.gpa + offset, walked.perms,
                        f"L2 GPA {walked.gpa:#x} via shadow EPT/NPT {where}", walked.global_,
                        walked.size)
        if roles.is_direct(root.role):
            if not self.tdp_enabled:
                # Shadow paging of a guest without paging: the direct root maps linear =
                # physical (mmu.c nonpaging_init_context).
                return Seen(arch.WATCHED_VA, None, f"via {where}")
            walked = self._hardware_walk(v.regs)
            if walked is None:
                return None
            return Seen(walked.gpa, walked.perms,
                        f"via the hardware walk of the guest's tables ({where})", walked.global_,
                        walked.size)
        sp = self._faulted_in(v, root)
        if sp is None:
            return None
        gpte = sp.gpte
        assert gpte is not None
        if not gpte & PTE_P:
            return None
        # A large page's SPTEs map its frames in order (the direct shadow pages below the
        # guest's PDE or PDPTE, paging_tmpl.h FNAME(fetch)): WATCHED_VA's offset in the page
        # picks the frame.
        size = self.world.page.size
        offset = arch.WATCHED_VA & (size - 1)
        return Seen(gpte & _ADDR & ~(size - 1) | offset, leaf_perms(gpte),
                    f"via {where}")

    def _hardware_walk(self, regs: Regs) -> Seen | None:
        """The hardware's own walk of the guest's tables (TDP), or linear = physical without
        paging (SDM §4.1.1); global if the PTE has G=1 and CR4.PGE=1 (§4.10.2.4).  A walk of
        KVM's shadow tables (translation) never is: KVM's SPTEs do not set G (Mechanism
        .hw_global)."""
        if paging_mode(regs.cr0, regs.cr4, regs.efer) is Mode.NONE:
            return Seen(arch.WATCHED_VA, None, "paging disabled")
        found = translate(self.world.mem, regs.cr0, regs.cr3, regs.cr4, regs.efer,
                          arch.WATCHED_VA)
        if not isinstance(found, Translation):
            return None
        return Seen(found.paddr, found.perms, "walk",
                    found.global_ and regs.cr4 & bits.CR4_PGE != 0, found.page_size)

    def observable(self, v: Vcpu) -> list[Seen]:
        """Everything a read of the watched page may return now: the active root's
        translation, then whatever the running context's TLB holds under the current PCID and
        as global entries."""
        out = []
        now = self.translation(v)
        if now is not None:
            out.append(now)
        if self.caches_no_linear(v, self.current_ctx(v)):
            # The guest's paging is off and the hardware walks its tables (TDP): no linear
            # translation happens, linear addresses are physical (SDM Vol. 3A §4.1.1), and the
            # TLB serves only translations through paging structures (§4.10.2.3), so what it
            # holds is not used until paging is back on.  Under shadow paging the hardware
            # still pages, through KVM's nonpaging root (vmx.c KVM_VM_CR0_ALWAYS_ON without
            # unrestricted guest, svm.c svm_set_cr0 without NPT), and its TLB stays in use.
            return out
        for seen in self.hw.get(self.hardware_context(v), HwContext()).held(arch.pcid(v.regs)):
            if all((s.gpa, s.perms) != (seen.gpa, seen.perms) for s in out):
                out.append(Seen(seen.gpa, seen.perms, f"from the hardware TLB, cached {seen.via}",
                                seen.global_))
        return out


def _slots(mmu: Mmu) -> list[Root]:
    return [mmu.root, *mmu.prev_roots]


def concrete_policy(policy_cls: type[Mechanism]) -> Callable[..., ConcreteMmuMixin]:
    """The policy's class with the concrete mechanism underneath its unchanged handlers."""
    return type(f"Concrete{policy_cls.__name__}", (ConcreteMmuMixin, policy_cls), {})
