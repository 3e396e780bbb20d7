"""The state vocabulary of the abstract model (docs/design.md §6).

Architectural registers are kept at full width; KVM's state mirrors struct kvm_mmu and
struct kvm_mmu_root_info (arch/x86/include/asm/kvm_host.h); ghost fields carry what the
properties of docs/design.md §5 need and are marked as such.  Everything is a plain dataclass of
ints and bools so the same policy code runs on concrete values now and symbolic ones later.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from enum import Enum, StrEnum

from formal.model import bits
from formal.model.values import ite, neg

# kvm_host.h: KVM_MMU_NUM_PREV_ROOTS (v4.19, commit b94742c9 "KVM: x86: Add multi-entry LRU cache
# for previous CR3s").
KVM_MMU_NUM_PREV_ROOTS = 3


class Req(int, Enum):
    """KVM_REQ_* bits the MMU uses (kvm_host.h); the values are this model's, not the kernel's."""

    MMU_RELOAD = 1 << 0
    FREE_OBSOLETE_ROOTS = 1 << 1
    MMU_SYNC = 1 << 2
    LOAD_MMU_PGD = 1 << 3
    TLB_FLUSH = 1 << 4
    TLB_FLUSH_CURRENT = 1 << 5
    TLB_FLUSH_GUEST = 1 << 6


@dataclass(slots=True)
class Regs:
    """CR0, CR3 (64-bit, PCID in 11:0), CR4 and IA32_EFER as the guest sees them."""

    cr0: int
    cr3: int
    cr4: int
    efer: int

    def same(self, other: Regs) -> bool:
        """All four registers equal: one condition (a term under symbolic execution), where
        `==` would test them one by one."""
        return (self.cr0 == other.cr0) & (self.cr3 == other.cr3) & (self.cr4 == other.cr4) \
            & (self.efer == other.efer)


@dataclass(slots=True)
class Root:
    """One struct kvm_mmu_root_info, plus the ghost state of its shadow pages.

    The ghost fields describe the one guest virtual page the abstract model watches
    (formal.model.arch.WATCHED_VA): its leaf shadow PTE under this root.
    """

    valid: bool = False
    pgd: int = 0
    role: int = 0
    # ghost: the leaf shadow page went unsync and still holds the pre-write translation.
    unsync: bool = False
    # ghost: a shadow page under the root is unsync beyond that (mmu.c is_unsync_root may hold
    # while `unsync` does not): the guest rewrote another page's PTE in the tables
    # (guest_pte_write_other), or INVLPG resynced only the watched SPTE of an unsync leaf page.
    unsync_elsewhere: bool = False
    # ghost: the hardware TLB may hold that pre-write translation (cached while the root was
    # active and unsync, not flushed since).
    hw_old: bool = False
    # ghost: the pre-write translation (in the shadow page or the hardware TLB) is one the
    # architecture required to be invalidated.
    stale: bool = False
    # ghost: architectural TLB tag (VPID << 12 | PCID) the root was last active under.
    tag: int = 0
    # ghost: the TLB may hold this root's translations under `tag` (active since its last flush).
    live: bool = False


def invalid_root() -> Root:
    """KVM_MMU_ROOT_INFO_INVALID (mmu.c)."""
    return Root()


@dataclass(slots=True)
class Mmu:
    """struct kvm_mmu: the current root, the LRU of previous roots, and the roles."""

    root: Root = field(default_factory=invalid_root)
    prev_roots: list[Root] = field(
        default_factory=lambda: [invalid_root() for _ in range(KVM_MMU_NUM_PREV_ROOTS)])
    # kvm_mmu_role as_u64 (v5.17/v5.18 mmu_role) or cpu_role (v5.19+): base | ext << 32.
    cpu_role: int = 0
    # The page role of the roots KVM builds for this MMU (mmu_role.base / root_role).
    root_role: int = 0


@dataclass(slots=True)
class Copies:
    """One part of a hardware record (HwTlb): the copies of the watched page's translation the
    hardware may hold under the record's tag.  `ran` is the last entry under the tag, through
    the tables at ran_tables (arch.tables), folded into `old` when the tables under the tag
    change."""

    # may hold an old translation of the watched page...
    old: bool = False
    # ...that the architecture required to be invalidated
    stale: bool = False
    # may hold the translations the guest made at its last entry under the tag...
    ran: bool = False
    ran_tables: int = 0
    # ...which the architecture has since required to be invalidated
    ran_stale: bool = False

    def cache(self, when: object, now: int, paging_off: object) -> None:
        """If when holds, an entry caches through the tables at now: what the last entry cached
        through other tables is old, and what an invalidation covered here is cached again as
        the walk gives it now (the saturated TLB of docs/design.md §2: any translation valid at
        some moment since the last invalidation)."""
        self.fold(when & self.ran & (self.ran_tables != now))
        self.ran = self.ran | when
        self.ran_tables = ite(when, now, self.ran_tables)
        self.ran_stale = ite(when, paging_off, self.ran_stale)

    def fold(self, when: object) -> None:
        """If when holds, what the last entry cached is an old translation now (stale if an
        invalidation covered it and no entry has cached since)."""
        self.old = self.old | when
        self.stale = self.stale | (when & self.ran_stale)

    def drop(self, when: object) -> None:
        """If when holds, the hardware dropped these copies."""
        keep = neg(when)
        self.old, self.stale = self.old & keep, self.stale & keep
        self.ran, self.ran_stale = self.ran & keep, self.ran_stale & keep
        self.ran_tables = ite(when, 0, self.ran_tables)

    def require(self, when: object) -> None:
        """If when holds, the architecture required these copies invalidated: what the hardware
        may still hold of them is stale."""
        self.stale = self.stale | (self.old & when)
        self.ran_stale = self.ran_stale | (self.ran & when)

    def fresh(self) -> object:
        """Holds a copy no invalidation has covered."""
        return (self.old & neg(self.stale)) | (self.ran & neg(self.ran_stale))

    def stale_at(self, now: int) -> object:
        """Holds a stale copy the guest may be served through the tables at now: an old one, or
        one from the last entry, cached through other tables (an entry through the same
        tables caches the translation as the walk gives it now, so that one is not old)."""
        return self.stale | (self.ran & self.ran_stale & (self.ran_tables != now))

    def any_stale(self) -> object:
        """Holds a stale copy, whatever tables the guest uses next."""
        return self.stale | self.ran_stale

    def holds(self) -> object:
        """Records anything at all."""
        return self.old | self.stale | self.ran | self.ran_stale


@dataclass(slots=True)
class HwTlb:
    """Ghost: what one hardware TLB context of the guest (a VPID/ASID) may hold for the watched
    page under one tag, beyond the roots KVM still has.  With TDP the hardware walks the guest's
    tables and caches their old translations; with shadow paging it keeps translations of freed
    roots.  Either way it keeps what the guest used through other tables (another CR3, or
    paging off) until flushed.

    Two parts (Copies): `local`, the non-global copies, used only under the tag; `glob`, the
    global copies the hardware cached (Mechanism.hw_global), which an invalidation that spares
    global translations leaves and any PCID of the VPID may use (SDM Vol. 3A §4.10.2.4,
    §4.10.4.1).  An entry that caches the page non-global (CR4.PGE=0 now) does not refresh the
    global part, so a copy cached with CR4.PGE=1 stays stale past a PGE toggle whose flush KVM
    did not make, after the guest cached the translation again non-global.

    The concrete simulator keeps one record per tag the context has run under
    (Vcpu.hw); symbolic execution keeps one, whose tag is a free variable fixed
    from the initial state on: a property that holds for every value of that tag holds for
    every tag (formal.symbolic.transition.state_template)."""

    # the tag (VPID << 12 | PCID) this record is about
    tag: int = 0
    local: Copies = field(default_factory=Copies)
    glob: Copies = field(default_factory=Copies)
    # Every stale global copy holds a translation the architecture still lets the guest use
    # under this record's own tag: it cached the same one non-global there since (an entry
    # through the tables the global copy came from), and no invalidation has covered that.
    # Used under the tag, such a copy shows nothing the architecture forbids.
    excused: bool = False

    def flush(self) -> None:
        """The context was flushed: nothing is held under the tag any more."""
        self.flush_if(True)

    def flush_if(self, when: object) -> None:
        """flush, if when holds (a bool, or a term under symbolic execution)."""
        self.invalidate(when, when)

    def invalidate(self, local: object, glob: object) -> None:
        """The hardware dropped the non-global copies if local holds, the global ones if glob
        holds."""
        self.local.drop(local)
        self.glob.drop(glob)
        self.excused = self.excused & neg(glob) & neg(local)

    def required(self, local: object, glob: object) -> None:
        """The architecture required the copies invalidated: the non-global ones if local holds,
        the global ones if glob holds.  An excuse ends once the non-global copy it rests on is
        covered or a global copy not stale yet becomes so."""
        self.excused = self.excused & neg(local) & neg(glob & self.glob.fresh())
        self.local.require(local)
        self.glob.require(glob)


@dataclass(frozen=True)
class Page:
    """The watched page's attributes, fixed for a whole trace (a trace's "page" field): the G,
    U/S, R/W and XD bits of the entry that maps it, and its size in bytes (one of
    formal.model.arch.PAGE_SIZES).  The table entries above it allow everything."""

    global_: bool = False
    size: int = bits.PAGE_4K
    user: bool = True
    writable: bool = True
    nx: bool = False


# A trace's page when it names none: user, writable, executable, non-global, 4 KiB.
DEFAULT_PAGE = Page()


@dataclass(slots=True)
class Vcpu:
    """The whole state: architecture, KVM, ghost."""

    regs: Regs
    # The watched page's PTE has G=1 in every table that maps it (formal.model.arch
    # .global_translation): an attribute of the page, fixed for a whole trace.
    page_global: bool = False
    # The watched page is a large page: a PDE with PS=1 maps it in every table set, in PAE and
    # 4-level paging a 2 MiB page; with page_1g a PDPTE with PS=1, a 1 GiB page (4-level and
    # 5-level paging only); with page_4m a 32-bit PDE with PS=1, a 4 MiB page (32-bit paging
    # with CR4.PSE=1 only).  An invalidation of any address in it reaches it
    # (formal.model.arch.page_hit).  All fixed for a whole trace, which never runs a paging mode
    # that would map the page at another size or not at all (formal.model.scope).
    page_large: bool = False
    page_1g: bool = False
    page_4m: bool = False
    # The watched page's U/S, R/W and XD bits (Page.user, .writable, .nx).  SDM Vol. 3A
    # §4.10.2.2: a TLB entry caches them, and CR0.WP, CR4.SMEP/SMAP and EFER.NXE apply when the
    # entry is used, so no invalidation rule of the architecture, and no flush or reuse decision
    # of KVM, reads them.  The one rule that does is the scope's: XD is reserved unless
    # EFER.NXE=1 under PAE or 4-level paging (formal.model.scope).  They are state so that a
    # proof covers every kind of page, and a counterexample names the page it ran on.
    page_user: bool = True
    page_writable: bool = True
    page_nx: bool = False
    smm: bool = False
    # SMRAM state-save area: the registers RSM restores (SDM §34.4.1).
    smram: Regs = field(default_factory=lambda: Regs(0, 0, 0, 0))
    guest_mode: bool = False
    # L1's registers while L2 runs (vmcs12 host-state area / SVM host save area).
    l1: Regs = field(default_factory=lambda: Regs(0, 0, 0, 0))
    # L1's EPTP (VMX) or nCR3 (SVM) for L2; 0 when L1 does not use nested paging.
    nested_pgd: int = 0
    # vmcs12 virtual_processor_id (VMX) or L2's ASID (SVM); 0 = no tag for L2.
    vpid12: int = 0
    # struct nested_vmx last_vpid: the VPID12 of the previous VM-entry.
    last_vpid: int = 0
    root_mmu: Mmu = field(default_factory=Mmu)
    guest_mmu: Mmu = field(default_factory=Mmu)
    # vcpu->arch.mmu == &vcpu->arch.guest_mmu (L2 with nested EPT/NPT).
    mmu_is_guest: bool = False
    # vcpu->arch.nested_mmu.cpu_role: how KVM walks L2's tables in L2 with nested EPT/NPT.
    nested_cpu_role: int = 0
    requests: int = 0
    # ghost: the hardware TLB contexts of L1 and L2, each a list of per-tag records (HwTlb).
    hw: list[list[HwTlb]] = field(default_factory=lambda: [[], []])

    @property
    def mmu(self) -> Mmu:
        """vcpu->arch.mmu."""
        return self.guest_mmu if self.mmu_is_guest else self.root_mmu

    @property
    def walk_cpu_role(self) -> int:
        """vcpu->arch.walk_mmu->cpu_role: what KVM uses to walk guest tables in software."""
        return self.nested_cpu_role if self.mmu_is_guest else self.mmu.cpu_role

    def clone(self) -> Vcpu:
        return copy.deepcopy(self)

    def all_roots(self) -> list[Root]:
        """Every root slot of both MMUs, current first."""
        return [m.root for m in (self.root_mmu, self.guest_mmu)] + \
            self.root_mmu.prev_roots + self.guest_mmu.prev_roots


class Vendor(StrEnum):
    """Whose TLB rules apply (docs/design.md §2): Intel's SDM or AMD's APM."""

    INTEL = "intel"
    AMD = "amd"


class Nested(StrEnum):
    """The nested virtualization flavour L1 uses for L2."""

    VMX = "vmx"
    SVM = "svm"


@dataclass(frozen=True)
class Config:
    """A KVM host configuration under which a policy is verified."""

    name: str
    tdp_enabled: bool
    nested: Nested | None  # None: no nested virtualization
    # L1 uses EPT/NPT for L2 (nested TDP); false means L2 is shadowed too.
    nested_tdp: bool
    vendor: Vendor


CONFIGS: dict[str, Config] = {
    c.name: c for c in (
        Config("shadow", tdp_enabled=False, nested=None, nested_tdp=False,
               vendor=Vendor.INTEL),
        Config("tdp", tdp_enabled=True, nested=None, nested_tdp=False, vendor=Vendor.INTEL),
        Config("nested-ept", tdp_enabled=True, nested=Nested.VMX, nested_tdp=True,
               vendor=Vendor.INTEL),
        Config("nested-npt", tdp_enabled=True, nested=Nested.SVM, nested_tdp=True,
               vendor=Vendor.AMD),
        Config("nested-shadow", tdp_enabled=False, nested=Nested.VMX, nested_tdp=False,
               vendor=Vendor.INTEL),
    )
}
