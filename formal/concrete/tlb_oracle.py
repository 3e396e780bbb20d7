"""The architectural oracle: a saturated TLB (docs/design.md §2, after Syeda & Klein).

The processor may hold, for a PCID and a page, any translation that was valid at some moment
since the last invalidation that covered it, and may drop any entry at any time.  `TlbOracle`
keeps every such translation: whenever the translation of a linear address could be cached
(`fill`, or automatically for `watch`ed addresses after every operation) it records the result
of a walk under the current registers, and each operation removes exactly the entries the rows of
the SDM Vol. 3A §4.10.4.1 table (docs/design.md §2) require it to invalidate.  An observed
translation
is allowed iff it equals a fresh walk or one of the retained entries the processor may use now.

Entries carry the PCID current when they were cached (SDM §4.10.1: 000H with CR4.PCIDE=0) and
whether they are global (§4.10.2.4: G=1 in the entry mapping the page and CR4.PGE=1); a global
entry may be used under any PCID.

The caller feeds only legal operations (formal.model.arch decides #GP and friends).  Not modelled:
paging-structure caches (§4.10.3: a stale PDE cache entry combined with a newer PTE can produce
a translation never valid at one moment), VPIDs (one oracle per VPID context), and the
invalidation a page fault makes for its address (§4.10.4.1, absent from docs/design.md §2).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from formal.concrete.paging import (
    Memory,
    Mode,
    NoTranslation,
    Perms,
    Translation,
    load_pdptes,
    paging_mode,
    translate,
)
from formal.model import arch, bits
from formal.model.state import Regs, Vendor

# SDM §4.4.1 (and KVM's load_pdptrs callers in x86.c kvm_set_cr0/kvm_set_cr4): with PAE paging
# afterwards, a MOV to CR0 changing PG, CD or NW, or a MOV to CR4 changing PAE, PGE, PSE or SMEP
# reloads the PDPTE registers.
_CR0_PDPTE_BITS = bits.CR0_PG | bits.CR0_CD | bits.CR0_NW
_CR4_PDPTE_BITS = bits.CR4_PAE | bits.CR4_PGE | bits.CR4_PSE | bits.CR4_SMEP


@dataclass(frozen=True)
class Entry:
    """One translation the TLB may hold."""

    pcid: int  # the PCID current when it was cached
    page: int  # linear address of the start of the page
    size: int
    frame: int  # physical address of the start of the page
    perms: Perms
    global_: bool

    def covers(self, va: int) -> bool:
        return va & ~(self.size - 1) == self.page

    def paddr(self, va: int) -> int:
        return self.frame | (va & (self.size - 1))

    def __str__(self) -> str:
        tag = "global" if self.global_ else "non-global"
        return f"PCID {self.pcid:#x} {tag} {self.size >> 10} KiB page {self.page:#x} -> " \
            f"{self.frame:#x} {self.perms}"


@dataclass
class TlbOracle:
    """Memory, registers and the saturated TLB of one logical processor (one VPID context)."""

    mem: Memory
    regs: Regs
    vendor: Vendor = Vendor.INTEL  # whose rows of docs/design.md §2 apply
    # every retained entry -> the operation after which it was first cached
    entries: dict[Entry, str] = field(default_factory=dict)
    watched: set[int] = field(default_factory=set)
    pdptes: tuple[int, ...] | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.regs = replace(self.regs)
        self._load_pdptes()

    @property
    def pcid(self) -> int:
        return arch.pcid(self.regs)

    @property
    def mode(self) -> Mode:
        return paging_mode(self.regs.cr0, self.regs.cr4, self.regs.efer)

    def _load_pdptes(self) -> None:
        self.pdptes = load_pdptes(self.mem, self.regs.cr3) if self.mode is Mode.PAE else None

    # What the processor may use.

    def fresh(self, va: int) -> Translation | None:
        """A walk of the current page tables now; None without paging or without a valid
        translation (SDM §4.10.2.3: TLBs cache only valid translations, so none for P=0 or a
        reserved bit)."""
        found = self._translate(va)
        return found if isinstance(found, Translation) else None

    def _translate(self, va: int) -> Translation | NoTranslation | None:
        if self.mode is Mode.NONE:
            return None
        r = self.regs
        return translate(self.mem, r.cr0, r.cr3, r.cr4, r.efer, va, pdptes=self.pdptes)

    def fill(self, va: int, why: str = "fill") -> Entry | None:
        """Record that the current translation of va may be cached under the current PCID."""
        t = self.fresh(va)
        if t is None:
            return None
        # SDM §4.10.2.4: an entry is global if G=1 in the entry mapping the page and CR4.PGE=1.
        entry = Entry(pcid=self.pcid, page=va & ~(t.page_size - 1), size=t.page_size,
                      frame=t.frame, perms=t.perms,
                      global_=t.global_ and self.regs.cr4 & bits.CR4_PGE != 0)
        self.entries.setdefault(entry, why)
        return entry

    def watch(self, *vas: int) -> None:
        """Fill these addresses now and after every later operation."""
        self.watched.update(vas)
        for va in vas:
            self.fill(va, "watch")

    def usable(self, va: int) -> list[Entry]:
        """Retained entries the processor may use for va now: those of the current PCID, and
        global ones of any PCID (SDM §4.10.2.4).  None with paging off: linear addresses are
        physical then (§4.1.1) and the TLBs serve only translations through paging structures
        (§4.10.2.3); entries nothing invalidated are kept for when paging is back on."""
        if self.mode is Mode.NONE:
            return []
        pcid = self.pcid
        return sorted((e for e in self.entries if e.covers(va) and (e.global_ or e.pcid == pcid)),
                      key=str)

    def explain(self, va: int) -> str:
        """What the architecture allows for va now, one line each, for error messages."""
        found = self._translate(va)
        if found is None:
            walk = "paging disabled"
        elif isinstance(found, NoTranslation):
            walk = f"no valid translation ({'a reserved bit' if found.rsvd else 'P=0'} in the " \
                f"{found.level})"
        else:
            walk = f"{found.paddr:#x} {found.perms}"
        lines = [f"fresh walk of {va:#x} under PCID {self.pcid:#x}: {walk}"]
        lines += [f"retained: {e} (cached after {self.entries[e]})" for e in self.usable(va)]
        if len(lines) == 1:
            lines.append("retained: none")
        return "\n".join(lines)

    # Operations (SDM §4.10.4.1; docs/design.md §2).

    def _invalidate(self, keep: Callable[[Entry], bool]) -> None:
        self.entries = {e: why for e, why in self.entries.items() if keep(e)}

    def _flush_all(self) -> None:
        self.entries = {}

    def _saturate(self, why: str) -> None:
        for va in self.watched:
            self.fill(va, why)

    def write(self, addr: int, value: int, size: int = 8) -> None:
        """A guest write to memory (e.g. a PTE): invalidates nothing (SDM §4.10.4.2)."""
        self.mem.write(addr, value, size)
        self._saturate(f"write {value:#x} to {addr:#x}")

    def mov_cr0(self, value: int) -> None:
        old = self.regs.cr0
        if old & bits.CR0_PG and not value & bits.CR0_PG:
            self._flush_all()  # PG 1->0: all entries, all PCIDs, globals too
        # WP, PG 0->1, CD, NW: nothing required (WP is applied at use time, §4.10.2.2).
        self.regs.cr0 = value
        self.regs.efer = arch.with_lma(value, self.regs.efer)
        if (old ^ value) & _CR0_PDPTE_BITS:
            self._load_pdptes()
        self._saturate(f"MOV CR0 {value:#x}")

    def mov_cr3(self, value: int) -> None:
        noflush = value & bits.CR3_NOFLUSH
        self.regs.cr3 = value & ~bits.CR3_NOFLUSH
        if not noflush:
            # PCIDE=0: PCID 000H; PCIDE=1: the PCID in the new CR3[11:0]; globals stay.
            pcid = self.pcid
            self._invalidate(lambda e: e.global_ or e.pcid != pcid)
        # PCIDE=1 with bit 63 set: nothing required.
        self._load_pdptes()
        self._saturate(f"MOV CR3 {value:#x}")

    def mov_cr4(self, value: int) -> None:
        old = self.regs.cr4
        changed = old ^ value
        if changed & bits.CR4_PGE or old & bits.CR4_PCIDE and not value & bits.CR4_PCIDE:
            self._flush_all()  # all entries, all PCIDs, globals too
        elif changed & bits.CR4_PAE or value & bits.CR4_SMEP and not old & bits.CR4_SMEP:
            if self.vendor is Vendor.AMD:
                self._flush_all()  # AMD APM §5.5.3: all TLB entries
            else:
                pcid = self.pcid  # all entries of the current PCID, global ones included
                self._invalidate(lambda e: e.pcid != pcid)
        elif self.vendor is Vendor.AMD and value & bits.CR4_PKE and not old & bits.CR4_PKE:
            self._flush_all()
        # PCIDE 0->1, SMAP, PKE (Intel), PSE, SMEP 1->0: nothing required.
        self.regs.cr4 = value
        if changed & _CR4_PDPTE_BITS:
            self._load_pdptes()
        self._saturate(f"MOV CR4 {value:#x}")

    def wrmsr_efer(self, value: int) -> None:
        """Nothing required: NXE is applied at use time (§4.10.2.2); LME changes only with
        CR0.PG=0, when nothing is cached."""
        self.regs.efer = arch.with_lma(self.regs.cr0, value)
        self._saturate(f"WRMSR EFER {value:#x}")

    def invlpg(self, va: int) -> None:
        """The page of va in the current PCID, and global entries for it in any PCID (INVLPG;
        §4.10.2.3: every entry for the page, whatever size it was cached with)."""
        pcid = self.pcid
        self._invalidate(lambda e: not (e.covers(va) and (e.global_ or e.pcid == pcid)))
        self._saturate(f"INVLPG {va:#x}")

    def invpcid(self, kind: int, pcid: int = 0, va: int = 0) -> None:
        """INVPCID type 0 (one address of one PCID), 1 (one PCID), 2 (everything, globals
        included) or 3 (everything but globals); types 0 and 1 spare globals."""
        if kind == 0:
            self._invalidate(lambda e: e.global_ or e.pcid != pcid or not e.covers(va))
        elif kind == 1:
            self._invalidate(lambda e: e.global_ or e.pcid != pcid)
        elif kind == 2:
            self._flush_all()
        elif kind == 3:
            self._invalidate(lambda e: e.global_)
        else:
            raise ValueError(f"INVPCID type {kind} is not 0-3 (#GP)")
        self._saturate(f"INVPCID {arch.INVPCID_NAMES[kind]}")

    def _switch_regs(self, regs: Regs, why: str) -> None:
        # SMI and RSM (docs/design.md §2): AMD flushes everything; Intel lists neither, and RSM's
        # register changes are what KVM replays through CR writes.
        if self.vendor is Vendor.AMD:
            self._flush_all()
        self.regs = replace(regs)
        self._load_pdptes()
        self._saturate(why)

    def smi(self, smm_regs: Regs) -> None:
        self._switch_regs(smm_regs, "SMI")

    def rsm(self, regs: Regs) -> None:
        self._switch_regs(regs, "RSM")

    def flush(self, why: str, keep_globals: bool = False) -> None:
        """Every entry of this context, globals included: a guest TLB flush KVM performs on the
        guest's behalf (the PV TLB flush, KVM_VCPU_FLUSH_TLB in steal time), a VM entry/exit
        without VPIDs for VPID 0 (SDM Vol. 3C §28.3.3.1), INVVPID single-context; with
        keep_globals, INVVPID single-context-retaining-globals (type 3, SDM Vol. 3C §30.3)."""
        if keep_globals:
            self._invalidate(lambda e: e.global_)
        else:
            self._flush_all()
        self._saturate(why)

    def invalidate_page(self, va: int, why: str) -> None:
        """Every entry for the page of va in every PCID, globals included: INVVPID
        individual-address (SDM Vol. 3C §30.3, INVVPID type 0) or INVLPGA (AMD APM Vol. 3)."""
        self._invalidate(lambda e: not e.covers(va))
        self._saturate(why)

    def load(self, regs: Regs, why: str, flush: bool) -> None:
        """All four registers replaced at once (KVM_SET_SREGS, or L2's state at a VM entry);
        with flush, every entry goes (docs/design.md §4: userspace replacing the registers stands
        for
        a new CPU state)."""
        if flush:
            self._flush_all()
        self.regs = replace(regs)
        self._load_pdptes()
        self._saturate(why)

    def refill(self, why: str) -> None:
        """The context runs again: the watched addresses may be cached under the current
        registers (e.g. L1 after a VM exit, when L2 wrote L1's tables meanwhile)."""
        self._saturate(why)

    def init(self) -> None:
        """INIT: everything (SDM Vol. 3A §10.1), and the registers of Table 10-1 (note 2:
        "The CD and NW flags are unchanged, bit 4 is set to 1, all other bits are cleared")."""
        self._flush_all()
        keep = self.regs.cr0 & (bits.CR0_CD | bits.CR0_NW)
        self.regs = Regs(cr0=bits.CR0_ET | keep, cr3=0, cr4=0, efer=0)
        self._load_pdptes()
        self._saturate("INIT")
