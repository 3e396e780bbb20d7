"""KVM's MMU mechanism: the primitives the policy specs call.

The policy (specs/) decides *which* roots to keep, free or switch to and which requests to raise;
this module carries those decisions out on the model state and keeps the ghost state (docs/design.md
§5) in step: which roots hold out-of-sync or architecturally invalidated translations of the
watched page, and what the hardware TLB contexts may still hold.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import fields

from formal.model import arch, roles
from formal.model.arch import Inval
from formal.model.bits import CR3_ADDR_MASK
from formal.model.state import Config, HwTlb, Mmu, Nested, Req, Root, Vcpu, invalid_root
from formal.model.values import SymbolicValue, iff, is_symbolic, ite, neg, truth

# kvm_host.h: KVM_MMU_ROOT_CURRENT, KVM_MMU_ROOT_PREVIOUS(i), KVM_MMU_ROOTS_ALL.
ROOT_CURRENT = 1


def ROOT_PREVIOUS(i: int) -> int:  # noqa: N802 - the kernel's macro name
    return 1 << (i + 1)


ROOTS_ALL = 0xF

# The work Mechanism.work counts: roots allocated (mmu_alloc_roots) and freed
# (mmu_free_root_page), syncs of an indirect root (mmu_sync_children from kvm_mmu_sync_roots,
# and the model's FNAME(invlpg) resync of the watched page), hardware TLB flushes of one
# context (vpid_sync_context / an ASID flush), and KVM_REQ_* requests made, by kind (REQUEST
# and the Req name; a request made while pending counts again).
ROOTS_BUILT = "roots_built"
ROOTS_FREED = "roots_freed"
SYNCS = "syncs"
CONTEXT_FLUSHES = "context_flushes"
REQUEST = "request."


def root_in_l2(root: Root) -> bool:
    """Whether a shadow root was built for L2 (its role has guest_mode)."""
    return root.role & roles.GUEST_MODE != 0


def select_root(cond: object, a: Root, b: Root) -> Root:
    """a if cond else b, field by field when cond is symbolic."""
    if not isinstance(cond, SymbolicValue):
        return a if cond else b
    return Root(**{f.name: ite(cond, getattr(a, f.name), getattr(b, f.name))
                   for f in fields(Root)})


class Mechanism:
    """Primitives shared by every policy version; subclasses are the versions' policies.

    The primitives are written without branches on state (`ite`, `&`, `|`, `neg`): under
    symbolic execution a loop over the root slots then gives one term per field instead of a
    path per slot.  The human-readable notes, and the counts of the work done (`work`), are
    only taken on concrete runs."""

    name = ""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.log: list[str] = []
        # What KVM did since the caller last cleared it (formal.model.machine: per step), by
        # work key (ROOTS_BUILT ...): the cost a patch changes (`flushproof diff`).
        self.work: Counter[str] = Counter()

    @property
    def concrete(self) -> bool:
        return not is_symbolic()

    def note(self, text: str) -> None:
        if self.concrete:
            self.log.append(text)

    def count(self, what: str) -> None:
        """One more of what (a WORK key) done, on a concrete run."""
        if self.concrete:
            self.work[what] += 1

    # -- requests (kvm_host.h kvm_make_request / kvm_check_request) --

    def kvm_make_request(self, v: Vcpu, req: Req) -> None:
        if self.concrete and not v.requests & req:
            self.note(f"request {req.name}")
        self.count(REQUEST + req.name)
        v.requests |= req

    def kvm_check_request(self, v: Vcpu, req: Req) -> bool:
        if v.requests & req:
            v.requests &= ~req
            self.note(f"service {req.name}")
            return True
        return False

    def kvm_clear_request(self, v: Vcpu, req: Req) -> None:
        v.requests &= ~req

    # -- roots --

    @property
    def tdp_enabled(self) -> bool:
        return self.cfg.tdp_enabled

    def free_root(self, v: Vcpu, mmu: Mmu, slot: int, when: object = True) -> None:
        """mmu_free_root_page if when holds: slot -1 is the current root, 0..2 the previous
        ones."""
        root = mmu.root if slot < 0 else mmu.prev_roots[slot]
        if self.concrete:
            if not (when and root.valid):
                return
            where = "current root" if slot < 0 else f"prev_roots[{slot}]"
            self.note(f"free {where} pgd={root.pgd:#x}")
            self.count(ROOTS_FREED)
        # Freeing a root does not flush the hardware TLB; what it cached stays there.
        kept = when & root.valid & root.hw_old
        in_ctx1 = self.root_ctx1(root)
        self.hw_keeps(v, 0, kept & neg(in_ctx1), root.tag, root.stale)
        self.hw_keeps(v, 1, kept & in_ctx1, root.tag, root.stale)
        freed = select_root(when, invalid_root(), root)
        if slot < 0:
            mmu.root = freed
        else:
            mmu.prev_roots[slot] = freed

    def alloc_root(self, v: Vcpu, mmu: Mmu, pgd: int) -> None:
        """mmu_alloc_roots: a new root for pgd with the MMU's root role.  Shadow pages are found
        again by (gfn, role), but kvm_mmu_load syncs the new root before use, so it starts
        fresh; its translations were never in the TLB."""
        mmu.root = Root(valid=True, pgd=pgd, role=mmu.root_role, tag=arch.tag(v))
        self.count(ROOTS_BUILT)
        if self.concrete:
            self.note(f"load new root pgd={pgd:#x} role={roles.describe(mmu.root_role)}")

    def sync_root(self, v: Vcpu, root: Root, when: object = True, children: bool = True) -> None:
        """mmu_sync_children on a root, if when holds: every unsync leaf below it is brought up
        to date with the guest's PTEs and the root is no longer unsync (mmu.c is_unsync_root).
        With children=False only the watched page's SPTE is resynced (paging_tmpl.h
        FNAME(invlpg) <= v6.4, mmu.c __kvm_mmu_invalidate_addr -> sync_spte >= v6.5): its leaf
        shadow page stays unsync, so the root does too.  Shadow pages are shared by (gfn, role):
        every cached root with the same page-table address and role sees the sync.  A root of
        another level over the same tables (4-level and PAE paging) shares the leaf shadow page
        only (kvm_mmu_get_page / kvm_mmu_child_role: the root's role at level 1): its
        translation is brought up to date, but its unsync_children keeps the bit of that leaf,
        which only a sync from the root itself clears (mmu_pages_clear_parents clears the
        walked path), so it stays an unsync root."""
        indirect = when & root.valid & neg(roles.is_direct(root.role))
        if self.concrete and indirect:
            self.count(SYNCS)
        for other in v.all_roots():
            leaf = indirect & other.valid \
                & ((other.pgd ^ root.pgd) & CR3_ADDR_MASK == 0) \
                & ((other.role ^ root.role) & ~roles.LEVEL_MASK == 0)
            same = leaf & (other.role == root.role)
            if self.concrete and leaf and other.unsync:
                self.note(f"sync root pgd={other.pgd:#x}")
            other.stale = ite(leaf, other.stale & other.hw_old, other.stale)
            if children:
                other.unsync_elsewhere = other.unsync_elsewhere & neg(same) \
                    | (leaf & neg(same) & other.unsync)
            else:
                other.unsync_elsewhere = other.unsync_elsewhere | (leaf & other.unsync)
            other.unsync = other.unsync & neg(leaf)

    def is_unsync_root(self, v: Vcpu, root: Root) -> object:
        """mmu.c is_unsync_root (v5.16+): "sp->unsync || sp->unsync_children" of the root's
        shadow page -- an unsync shadow page anywhere under the root, the watched page's or
        another's."""
        return root.valid & (root.unsync | root.unsync_elsewhere)

    def flush_hw_context(self, v: Vcpu, ctx: int) -> None:
        """A hardware TLB flush of one ghost context, whole (an ASID flush, an EPT context
        flush, a flush of everything): whatever the hardware cached of shadow roots or, with
        TDP, of the guest's page tables, is gone."""
        self.count(CONTEXT_FLUSHES)
        for record in v.hw[ctx]:
            record.flush()
        for root in v.all_roots():
            in_ctx1 = self.root_ctx1(root)
            self._flush_root(root, in_ctx1 if ctx else neg(in_ctx1))

    def flush_vpid(self, v: Vcpu, vpid01: object) -> None:
        """vpid_sync_context on nested VMX: vpid01 (L1's VPID) if vpid01 holds, else vpid02
        (the one KVM gives L2s with a VPID), whatever EPT root the entries were made under."""
        self.count(CONTEXT_FLUSHES)
        for ctx in (0, 1):
            for record in v.hw[ctx]:
                record.flush_if(self._on_vpid01(ctx, record.tag, vpid01))
        for root in v.all_roots():
            in_ctx1 = self.root_ctx1(root)
            self._flush_root(root, ite(in_ctx1, self._on_vpid01(1, root.tag, vpid01),
                                       self._on_vpid01(0, root.tag, vpid01)))

    def _on_vpid01(self, ctx: int, tag: int, vpid01: object) -> object:
        """Whether a VPID flush of vpid01 (if vpid01 holds) or of vpid02 reaches ghost context
        ctx's entries under tag: L1's context runs on vpid01; L2's entries under vmcs12 VPID 0
        were made on vpid01 too (hw_ctx1), the others on vpid02."""
        if ctx == 0:
            return vpid01
        return iff(vpid01, arch.tag_vpid(tag) == 0)

    @staticmethod
    def _flush_root(root: Root, here: object) -> None:
        here = root.valid & here
        root.hw_old = root.hw_old & neg(here)
        root.stale = ite(here, root.stale & root.unsync, root.stale)

    @staticmethod
    def runs_on_vpid01(v: Vcpu) -> object:
        """Whether the running guest is on vpid01 on nested VMX: L1, or an L2 whose vmcs12 has
        no VPID (vmx/nested.c prepare_vmcs02_early_rare gives vpid02 only when vmcs12 enables
        VPID)."""
        return neg(truth(v.guest_mode)) | (v.vpid12 == 0)

    def hw_ctx1(self, in_l2: object, tag: int) -> object:
        """Whether what the guest caches on level in_l2 (L2 if true) under tag goes to ghost
        context 1 rather than 0.  Ghost context 0 is the hardware context L1 runs in, 1 the
        one L2 runs in when it is another: on SVM vmcb02's ASID; on VMX vpid02, or with nested
        EPT any of L2's entries (tagged with L2's EPT root, never L1's: SDM Vol. 3C §28.3.1,
        combined mappings are tagged by EP4TA).  prepare_vmcs02_early_rare runs an L2 whose
        vmcs12 has no VPID on vpid01, L1's own, so without EPT (nested-shadow) that L2
        shares L1's context: the same VPID and PCIDs, and no EPT tag."""
        if self.cfg.nested == Nested.VMX and not self.cfg.nested_tdp:
            return in_l2 & (arch.tag_vpid(tag) != 0)
        return in_l2

    def root_ctx1(self, root: Root) -> object:
        """Whether a shadow root's translations live in ghost context 1 (hw_ctx1), by the role
        it was built for and the tag it last ran under."""
        return self.hw_ctx1(root_in_l2(root), root.tag)

    def running_ctx1(self, v: Vcpu) -> object:
        """Whether the running guest caches into ghost context 1 (hw_ctx1)."""
        return self.hw_ctx1(truth(v.guest_mode), arch.tag(v))

    def hw_keeps(self, v: Vcpu, ctx: int, when: object, tag: int, stale: object) -> None:
        """If when: record that hardware context ctx may hold an old translation under tag."""
        for record in self.hw_records(v, ctx, tag):
            here = when & (record.tag == tag)
            record.local.old = record.local.old | here
            record.local.stale = record.local.stale | (here & stale)

    def hw_records(self, v: Vcpu, ctx: int, tag: int) -> list[HwTlb]:
        """Context ctx's per-tag records, with one for tag: the concrete simulator starts a
        record at the first use of a tag (a new one holds nothing, as every record under a tag
        never used does); symbolic execution has its one watched record (HwTlb)."""
        records = v.hw[ctx]
        if self.concrete and all(r.tag != tag for r in records):
            records.append(HwTlb(tag=tag))
        return records

    def current_ctx(self, v: Vcpu) -> int:
        """The level running: 1 for L2, 0 for L1 (with TDP, also the ghost context it caches
        into, hw_ctx1)."""
        return 1 if v.guest_mode else 0

    # -- guest page-table writes (mmu.c mmu_try_to_unsync_pages) --

    def guest_pte_write(self, v: Vcpu, pgd: int) -> None:
        """The guest writes the watched page's leaf PTE in the tables at pgd.  With shadow paging
        the leaf shadow page is write-protected; KVM lets it go unsync and the guest's write
        lands, so every root shadowing those tables keeps the old translation until synced."""
        addr = pgd & CR3_ADDR_MASK
        for root in v.all_roots():
            hit = root.valid & neg(roles.is_direct(root.role)) \
                & (root.pgd & CR3_ADDR_MASK == addr) & neg(root.unsync)
            if self.concrete and hit:
                self.note(f"root pgd={root.pgd:#x} goes unsync")
            # Not cached since its tag's last flush: the old translation was never allowed.
            root.stale = root.stale | (hit & neg(root.live))
            root.unsync = root.unsync | hit
        if self.cfg.tdp_enabled:
            # The hardware walks the guest's tables itself: what it cached through them under a
            # tag since its last entry there is now an old translation.  What it cached through
            # them at an earlier entry is old already (mark_active).  L1's EPT/NPT tables are
            # walked by KVM (guest_mmu), not cached as guest tables.
            walked = neg(addr == v.nested_pgd & CR3_ADDR_MASK) if self.cfg.nested_tdp else True
            contexts = [v.hw[self.current_ctx(v)]]
        else:
            # The hardware cached KVM's shadow of these tables, the translation before the
            # write, in whichever context ran on them: with nested VMX an L2 without a VPID
            # shares vpid01 with L1 (hw_ctx1), so a root of the other level may meet that copy
            # under the same tag though its own shadow is fresh.  The root that cached it keeps
            # it as well (unsync, hw_old).
            walked = True
            contexts = v.hw
        for records in contexts:
            for record in records:
                for part in (record.local, record.glob):
                    part.fold(walked & part.ran & (part.ran_tables == addr))

    def guest_pte_write_other(self, v: Vcpu, pgd: int) -> None:
        """The guest writes the PTE of another page (not the watched one) in the tables at pgd.
        With shadow paging KVM lets that leaf shadow page go unsync too (mmu.c
        mmu_try_to_unsync_pages -> kvm_unsync_page) and marks its parents up to the root
        (kvm_mmu_mark_parents_unsync): every root shadowing those tables is then an unsync root
        (is_unsync_root), while the watched translation is unchanged.  Which roots shadow a
        written table is the trace's (or the solver's) choice: one event per table address,
        and a table shared by several pgds is written through each."""
        addr = pgd & CR3_ADDR_MASK
        for root in v.all_roots():
            hit = root.valid & neg(roles.is_direct(root.role)) \
                & (root.pgd & CR3_ADDR_MASK == addr) & neg(root.unsync_elsewhere)
            if self.concrete and hit:
                self.note(f"root pgd={root.pgd:#x} has an unsync page elsewhere")
            root.unsync_elsewhere = root.unsync_elsewhere | hit

    # -- the architecture's invalidations applied to the ghost state --

    def apply_invalidations(self, v: Vcpu, invals: tuple[Inval, ...], native: bool) -> None:
        """Mark what the architecture's invalidations make stale.  A natively executed
        instruction (native) invalidated the hardware TLB itself: only KVM's shadow roots can
        still hold what it covered."""
        linear_roots = [v.root_mmu.root] + v.root_mmu.prev_roots
        if not self.cfg.nested_tdp:
            linear_roots += [v.guest_mmu.root] + v.guest_mmu.prev_roots
        # Whether the guest's translation is global (CR4.PGE read now: docs/model.md "Global
        # pages"), for what KVM's roots serve and the hardware cached through them.  Where the
        # hardware walks the guest's tables its copies carry the guest's G themselves: the
        # record's global part is global, its non-global part is not.
        glob = arch.global_translation(v)
        # The architecture's page is the guest's: 2 MiB, 4 MiB or 1 GiB for a large watched
        # page, however the hardware holds it (_hardware_invalidates).
        size = arch.page_bits(v)
        for inval in invals:
            for root in linear_roots:
                hit = root.valid & inval.covers(arch.tag_vpid(root.tag),
                                                arch.tag_pcid(root.tag), glob, *size)
                root.live = root.live & neg(hit)
                root.stale = root.stale | (hit & (root.unsync | root.hw_old))
            for ctx, record in ((c, r) for c in (0, 1) for r in v.hw[c]):
                vpid, pcid = arch.tag_vpid(record.tag), arch.tag_pcid(record.tag)
                local = inval.covers(vpid, pcid, False if self.walks_guest_tables(ctx) else glob,
                                     *size)
                if native:
                    # No copy becomes stale (the processor drops what it covers itself), but
                    # the non-global copy an excuse rests on is no longer allowed.
                    record.excused = record.excused & neg(local)
                else:
                    record.required(local, inval.covers(vpid, pcid, True, *size))
            if native:
                self._hardware_invalidates(v, inval)

    def _hardware_invalidates(self, v: Vcpu, inval: Inval) -> None:
        """An instruction the processor executed itself (INVLPG, MOV CR3, INVPCID) invalidated
        what it covers under the current VPID or ASID, in every EPT context (SDM Vol. 3C
        §28.3.3.1: "only for the current VPID (but, for combined mappings, all EP4TAs)")."""
        vmx = self.cfg.nested == Nested.VMX
        l2 = truth(v.guest_mode)
        on01 = self.runs_on_vpid01(v)
        for ctx in (0, 1):
            size = self.hw_size(v, ctx)
            for record in v.hw[ctx]:
                same = self._on_vpid01(ctx, record.tag, on01) if vmx else (l2 if ctx else neg(l2))
                pcid = arch.tag_pcid(record.tag)
                record.invalidate(same & inval.covers(arch.vpid(v), pcid, False, *size),
                                  same & inval.covers(arch.vpid(v), pcid, True, *size))

    def mark_active(self, v: Vcpu) -> None:
        """The guest runs on the active root: the hardware may now cache its translations, and
        keeps what it cached through other tables under the same tag as old ones."""
        root = v.mmu.root
        active = root.valid & neg(roles.is_direct(root.role))
        in_ctx1 = truth(self.running_ctx1(v))
        if self.cfg.nested == Nested.VMX and not self.cfg.nested_tdp:
            # A root last run in the other hardware context (an L2 root run with and then
            # without a VPID, hw_ctx1) left its hardware copy there, out of this context's
            # reach: it stays in that context's record, as a freed root's does.  Elsewhere a
            # root runs in one context only (the level its role is for).
            was_ctx1 = self.root_ctx1(root)
            moved = active & root.hw_old & neg(iff(was_ctx1, in_ctx1))
            self.hw_keeps(v, 0, moved & neg(was_ctx1), root.tag, root.stale)
            self.hw_keeps(v, 1, moved & was_ctx1, root.tag, root.stale)
            self._flush_root(root, moved)
        root.tag = ite(active, arch.tag(v), root.tag)
        root.live = root.live | active
        self._share_global(v, active)
        root.hw_old = root.hw_old | (active & root.unsync)
        now, tag = arch.tables(v.regs), arch.tag(v)
        # With paging off the architecture caches nothing (SDM §4.10.2.3: TLB entries exist only
        # for linear addresses translated through paging-structure entries with P=1).  Where
        # the hardware walks the guest's tables itself (TDP) it then caches no linear
        # translation at all (only guest-physical ones, SDM Vol. 3C §28.3.1); under shadow
        # paging it runs on KVM's nonpaging root, and none of what it cached from that may be
        # used once the guest walks tables.  An entry that caches nothing leaves the record of
        # the last entry that did as it is.
        for ctx in (0, 1):
            into = neg(self.caches_no_linear(v, ctx)) & (in_ctx1 if ctx else neg(in_ctx1))
            if self.concrete and not into:
                continue
            self._cache_entry(v, ctx, into, tag, now)

    @staticmethod
    def _share_global(v: Vcpu, active: object) -> None:
        """A global translation the guest may cache now through the active root's tables is
        usable under every PCID of the VPID (SDM Vol. 3A §4.10.2.4): the TLB may then hold,
        for each root of the MMU shadowing the same tables under that VPID, the translation it
        serves, whatever PCID it last ran under.  A guest_mmu root shadows L1's EPT/NPT tables,
        whose translations are never global."""
        root = v.mmu.root
        shared = active & neg(truth(v.mmu_is_guest)) & arch.global_translation(v)
        vpid, tables = arch.tag_vpid(root.tag), root.pgd & CR3_ADDR_MASK
        for other in v.mmu.prev_roots:
            other.live = other.live | (shared & other.valid & neg(roles.is_direct(other.role))
                                       & (arch.tag_vpid(other.tag) == vpid)
                                       & (other.pgd & CR3_ADDR_MASK == tables))

    def _cache_entry(self, v: Vcpu, ctx: int, into: object, tag: int, now: int) -> None:
        """mark_active's entry, if into holds, in ghost context ctx: into the record's global
        part where the copies are global (hw_global), else into its non-global part."""
        glob = self.hw_global(v, ctx)
        for record in self.hw_records(v, ctx, tag):
            here = into & (record.tag == tag)
            record.local.cache(here & neg(glob), now, now == arch.NO_TABLES)
            record.glob.cache(here & glob, now, now == arch.NO_TABLES)
            # A stale global copy of the translation the walk gives now is the one this entry
            # allows under the tag again (HwTlb.excused); global copies of older ones are not.
            g = record.glob
            record.excused = record.excused | (
                here & g.ran & g.ran_stale & (g.ran_tables == now) & neg(g.old & g.stale))

    def walks_guest_tables(self, ctx: int) -> bool:
        """The hardware walks the guest's own tables in ghost context ctx: TDP for L1, nested
        TDP for L2 (an L2 that runs in context 0, hw_ctx1, does so only without either).
        Elsewhere it walks KVM's shadow tables."""
        return self.cfg.nested_tdp if ctx else self.cfg.tdp_enabled

    def hw_size(self, v: Vcpu, ctx: int) -> tuple[object, object, object]:
        """(large, huge, m4) of the entries the hardware holds the watched page as in ghost context
        ctx, which decide the addresses whose invalidation reaches them (arch.page_hit): the
        guest's page where it walks the guest's tables, whose PDE or PDPTE maps the large
        page (arch.page_size).  Through KVM's shadow tables it holds 4 KiB entries: KVM maps a
        guest large page with 4 KiB SPTEs in a direct shadow page whenever the host does not
        back it with a huge page (mmu.c kvm_mmu_hugepage_adjust; for example while dirty
        logging disallows huge pages), and the model takes that case."""
        walks = self.walks_guest_tables(ctx)
        return v.page_large & walks, v.page_1g & walks, v.page_4m & walks

    def hw_page_hit(self, v: Vcpu, gva: int) -> object:
        """Whether a hardware per-address flush of gva KVM makes (INVVPID individual-address,
        INVLPGA) reaches the watched page's entries: every configuration with an L2 has TDP
        and nested TDP, or neither (state.CONFIGS), so hw_size of context 0 answers for
        both contexts."""
        return arch.page_hit(gva, *self.hw_size(v, 0))

    def caches_no_linear(self, v: Vcpu, ctx: int) -> object:
        """The guest's paging is off in ghost context ctx and the hardware walks the guest's
        own tables there, so this entry caches no linear translation (mark_active)."""
        if not self.walks_guest_tables(ctx):
            return False
        return arch.tables(v.regs) == arch.NO_TABLES

    def hw_global(self, v: Vcpu, ctx: int) -> object:
        """Whether the copies the hardware caches now in ghost context ctx of the watched
        page's translation are global entries (HwTlb's global part): only where it
        walks the guest's tables, whose PTE
        carries G (arch.global_translation).  KVM's shadow PTEs never set G (mmu/spte.c
        make_spte), so what the hardware caches through a shadow root is tagged by PCID
        alone."""
        return arch.global_translation(v) if self.walks_guest_tables(ctx) else False
