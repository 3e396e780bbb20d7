"""Cross-check of the two levels (docs/design.md §6): on random event sequences, for every policy
and configuration, the abstract model flags a violation of any of the four properties iff the
concrete replay (formal.concrete.replay) observes an access the architecture forbids (a user
read the saturated-TLB oracle does not allow, or an access KVM would emulate under a stale cpu
role with another outcome, formal.concrete.emulation), and at the same event.

The sequences mix perturbed corpus traces (TEMPLATES: the known violations need their events in
their order) with FOCUSED draws.  Fixed seed (derandomize): CI runs EXAMPLES sequences per
(policy, configuration) cell, 45 cells, and each shadow-paged cell must see MIN_VIOLATING
abstract violations.  A longer run:
FLUSHPROOF_CROSSCHECK_EXAMPLES=400 python -m pytest -q tests/test_crosscheck.py (docs/replay.md).
A disagreement fails with hypothesis's shrunk sequence as a trace.
"""

from __future__ import annotations

import os
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from formal.cli.policies import replay
from formal.model import arch, bits, trace
from formal.model import events as ev
from formal.model.bits import PAGE_4K
from formal.model.explore import VAS
from formal.model.machine import Machine
from formal.model.properties import PROPERTIES
from formal.model.scope import initial_not_modeled, not_modeled
from formal.model.state import CONFIGS, DEFAULT_PAGE, Page, Regs
from specs import POLICIES
from tests.conftest import LONG_MODE, SAMPLED_PAGES, TRACES, initial_for
from tests.test_random_sequences import CR0S, CR4S, EFERS, PGDS, events

EXAMPLES = int(os.environ.get("FLUSHPROOF_CROSSCHECK_EXAMPLES", "50"))
PROPS = PROPERTIES

# 5-level paging (CR4.LA57 with IA-32e mode) is not modelled by formal.concrete.paging.
FLAT_CR4S = [c for c in CR4S if not c & 0x1000]
EVENTS = events(FLAT_CR4S)
# The paths the historical bugs take (docs/design.md §4): PCID and NOFLUSH CR3 switches among a few
# address spaces, PTE writes, INVPCID/INVLPG, CR4.PCIDE/PGE toggles and guest flushes, in long
# mode; uniform draws from EVENTS almost always reset the MMU first and never reach them.
FEW_PGDS = st.builds(lambda a, p, f: a | p | f, st.sampled_from(PGDS[:2]), st.sampled_from([0, 1]),
                     st.sampled_from([0, 1 << 63]))
MOV_CR3 = st.builds(ev.MovCr3, FEW_PGDS)
PTE_WRITE = st.builds(ev.GuestPteWrite, st.sampled_from(PGDS[:2]))
# Hypothesis's first (derandomized) examples are its simplest: the branch order puts a PTE write
# and a guest flush first so that short sequences already reach the stale-root paths.
FOCUSED = st.one_of(
    PTE_WRITE, st.just(ev.PvTlbFlush()), MOV_CR3, PTE_WRITE, MOV_CR3,
    st.builds(ev.GuestPteWriteOther, st.sampled_from(PGDS[:2])),
    st.builds(ev.MovCr4, st.sampled_from([0x20020, 0x20, 0x200A0, 0xA0])),
    st.builds(ev.Invpcid, st.integers(0, 3), st.integers(0, 1), st.sampled_from(VAS)),
    st.builds(ev.Invlpg, st.sampled_from(VAS)),
)
NESTED = st.one_of(
    st.builds(lambda cr0, cr3, cr4, efer, vpid: ev.VmEntry(cr0, cr3 + 0x10000, cr4, efer, 0,
                                                           vpid),
              st.sampled_from(CR0S), st.sampled_from(PGDS), st.sampled_from(FLAT_CR4S),
              st.sampled_from(EFERS), st.integers(0, 2)),
    st.just(ev.VmExit()),
    st.builds(ev.Invvpid, st.integers(0, 3), st.integers(0, 2), st.sampled_from(VAS)),
    st.builds(ev.Invlpga, st.sampled_from(VAS), st.integers(1, 2)),
)


def modelled(policy: str, config: str, events: list[ev.Event],
             initial: Regs = LONG_MODE, page: Page = DEFAULT_PAGE) -> trace.Trace:
    """The events the model covers, in order (as tests/test_random_sequences.run picks them),
    as a trace with the watched page; VM entries get L1's EPTP/nCR3 0x9000 under nested
    TDP."""
    cfg = CONFIGS[config]
    m = Machine(POLICIES[policy](cfg), initial, PROPS, page)
    m.start()
    kept = []
    for e in events:
        if isinstance(e, ev.VmEntry) and cfg.nested_tdp:
            e = ev.VmEntry(e.cr0, e.cr3, e.cr4, e.efer, 0x9000, e.vpid)
        if not_modeled(cfg, m.v, e):
            continue
        m.step(len(kept), e)
        kept.append(e)
    return trace.Trace(policy, config, initial, tuple(kept), "", page)


def abstract_verdict(t: trace.Trace) -> int | None:
    """The event of the first violation (-1: the first entry), or None."""
    m = Machine(POLICIES[t.policy](CONFIGS[t.config]), t.initial, PROPS, t.page)
    if m.start().violations:
        return -1
    for i, e in enumerate(t.events):
        if m.step(i, e).violations:
            return i
    return None


def check(policy: str, config: str, events: list[ev.Event],
          initial: Regs = LONG_MODE, page: Page = DEFAULT_PAGE) -> int | None:
    """Assert that both levels give the same verdict; return it (abstract_verdict's).  A page
    under an initial paging mode that does not map it so (not modelled: a large one, or an
    execute-disable one) becomes a 4 KiB one with XD=0 and its other rights."""
    if initial_not_modeled(arch.watching(initial, page)):
        page = replace(page, size=PAGE_4K, nx=False)
    t = modelled(policy, config, events, initial, page)
    abstract = abstract_verdict(t)
    concrete = replay(t)
    said = "holds" if abstract is None else f"violation at event {abstract}"
    assert abstract == concrete.event, (
        f"levels disagree: abstract model {said}, concrete replay "
        f"{concrete.message or 'holds'}\n{trace.dumps(t)}")
    return abstract


CELLS = [(p, c) for p in POLICIES for c in CONFIGS]
CORPUS = sorted(p.name for p in TRACES.glob("*.json") if p.name != "expected.json")

# Templates: the corpus traces, whose violations need their events in this order (uniform or
# FOCUSED draws almost never line them up).  A templated sequence renames the trace's tables
# (injectively, among TABLES) and PCIDs, flips a MOV CR3's NOFLUSH bit once in four, runs up to
# two unbiased events first and inserts, drops or swaps up to two.  F1 (docs/findings.md: INVLPG
# under a shared PCID) violates on all 18 shadow-paged cells, the other traces on two to five
# cells each.
F1 = trace.load(TRACES / "invlpg-shared-pcid.json")
TEMPLATES = [trace.load(TRACES / name) for name in CORPUS]
TABLES = [0x1000, 0x2000, 0x3000, 0x6000]
RARELY = st.sampled_from([False, False, False, True])


def _tables(t: trace.Trace) -> list[int]:
    """The page-table addresses a trace names, in order of first appearance."""
    out = [t.initial.cr3]
    for e in t.events:
        match e:
            case ev.MovCr3(value=cr3) | ev.SetSregs(cr3=cr3):
                out.append(cr3)
            case ev.GuestPteWrite(pgd=pgd) | ev.GuestPteWriteOther(pgd=pgd):
                out.append(pgd)
    return list(dict.fromkeys(v & bits.CR3_ADDR_MASK for v in out))


@st.composite
def templated(draw: st.DrawFn, templates: list[trace.Trace],
              unbiased: st.SearchStrategy[ev.Event]) -> tuple[Regs, list[ev.Event]]:
    """The initial registers and events of one of templates, perturbed (see TEMPLATES);
    unbiased supplies the prefix and the inserted events."""
    t = draw(st.sampled_from(templates))
    names = _tables(t)
    table = dict(zip(names, draw(st.permutations(TABLES))[:len(names)], strict=True))
    pcids: dict[int, int] = {}

    def pcid(old: int) -> int:
        if old not in pcids:
            pcids[old] = draw(st.sampled_from([old, 0, 1, 2]))
        return pcids[old]

    def cr3(value: int) -> int:
        return (value & bits.CR3_NOFLUSH | table[value & bits.CR3_ADDR_MASK]
                | pcid(value & bits.CR3_PCID_MASK))

    initial = replace(t.initial, cr3=cr3(t.initial.cr3))
    out = draw(st.lists(unbiased, max_size=2))
    for e in t.events:
        match e:
            case ev.MovCr3(value=value):
                e = ev.MovCr3(cr3(value) ^ (bits.CR3_NOFLUSH if draw(RARELY) else 0))
            case ev.SetSregs(cr3=value):
                e = replace(e, cr3=cr3(value))
            case ev.GuestPteWrite(pgd=pgd) | ev.GuestPteWriteOther(pgd=pgd):
                e = type(e)(table[pgd])
            case ev.Invpcid():
                e = replace(e, pcid=pcid(e.pcid))
        out.append(e)
    for _ in range(draw(st.integers(0, 2))):
        at = draw(st.integers(0, len(out)))
        match draw(st.sampled_from(["insert", "drop", "swap"])):
            case "insert":
                out.insert(at, draw(unbiased))
            case "drop" if at < len(out):
                del out[at]
            case "swap" if at + 1 < len(out):
                out[at], out[at + 1] = out[at + 1], out[at]
    return initial, out


@pytest.mark.parametrize("name", CORPUS)
@pytest.mark.parametrize("policy,config", CELLS, ids=[f"{p}-{c}" for p, c in CELLS])
def test_corpus_traces_agree_on_every_cell(name, policy, config):
    """The hand-written bugs, which the random draws reach rarely, on every cell."""
    t = trace.load(TRACES / name)
    check(policy, config, list(t.events), t.initial, t.page)


# Disagreements resolved in formal/, each on the cells where it was found: both levels now hold.
# paging-off and sregs-paging-off flagged freshness at an entry with paging off under TDP
# (freshness no longer looks at the hardware context there); tlb-paging-off was the concrete
# level consulting the hardware TLB with paging off.  other-pcid and inactive-tables were the
# abstract hardware ghost's "old translation under any tag" after a guest PTE write under TDP:
# an invalidation covering any tag made it stale, though the guest never ran with that PCID
# (rfc-2022-02, whose kvm_mmu_reset_context keeps the root and flushes nothing) or had not run
# on the written tables (v5.12 and v5.13 on AMD, whose MOV CR4 setting PKE flushes nothing).
# The ghost now keeps a record per tag (formal.model.state.HwTlb).  refreshed and paging-off-entry
# (found by the longer run with 1,000 sequences a cell) were its last-entry record: it stayed
# stale through an entry that caches the same tables afresh, and an entry with paging off under
# TDP, which caches nothing, folded it into the old translations, though paging back on through
# the same tables walks the same translation.
RFC_TDP = [("rfc-2022-02", c) for c in CONFIGS if CONFIGS[c].tdp_enabled]
PCID1 = replace(LONG_MODE, cr3=0x1001, cr4=0x20020)
SMM_ROUND_TRIP = [ev.Smi(), ev.Rsm(), ev.Smi()]
RESOLVED = {
    "paging-off": (RFC_TDP, LONG_MODE, [ev.Smi(), ev.GuestPteWrite(0x1000), ev.MovCr4(0x20)]),
    "sregs-paging-off": (RFC_TDP, LONG_MODE, [ev.SetSregs(0x33, 0x1000, 0x20, 0x900)]),
    "tlb-paging-off": (RFC_TDP, LONG_MODE, SMM_ROUND_TRIP),
    "other-pcid": (RFC_TDP, PCID1, [ev.GuestPteWrite(0x1000),
                                    ev.SetSregs(0x8001_0033, 0x1002, 0x20020, 0xD00)]),
    "inactive-tables": ([("v5.12", "nested-npt"), ("v5.13", "nested-npt")], LONG_MODE,
                        [ev.GuestPteWrite(0x2000), ev.MovCr4(0x400020)]),
    # MOV CR4 clearing PGE with a role change (the rfc's lost flush), then a NOFLUSH
    # switch to other tables under the same PCID: the entry after the MOV CR4 cached the
    # invalidated translation again, so PCID 0 may keep it.
    "refreshed": ([("rfc-2022-02", "tdp")], replace(LONG_MODE, cr4=0x200A0),
                  [ev.MovCr4(0x220020), ev.MovCr3(0x8000_0000_0000_2000)]),
    # AMD's SMI flushes (the rfc keeps the root and flushes nothing); paging back on.
    "paging-off-entry": ([("rfc-2022-02", "nested-npt")], LONG_MODE,
                         SMM_ROUND_TRIP + [ev.MovCr0(0x8001_0033)]),
}


@pytest.mark.parametrize("name,policy,config",
                         [(n, p, c) for n, (cells, *_) in RESOLVED.items() for p, c in cells])
def test_resolved_gaps_hold_on_both_levels(name, policy, config):
    _, initial, events = RESOLVED[name]
    t = modelled(policy, config, events, initial)
    assert (abstract_verdict(t), replay(t).event) == (None, None)


def test_pte_write_with_paging_off_after_an_unflushed_invalidation_violates_on_both_levels():
    """paging-off-entry with a PTE write while paging is off: what the hardware kept was
    invalidated and now differs from the walk."""
    events = SMM_ROUND_TRIP + [ev.GuestPteWrite(0x1000), ev.MovCr0(0x8001_0033)]
    t = modelled("rfc-2022-02", "nested-npt", events, LONG_MODE)
    out = replay(t)
    assert (abstract_verdict(t), out.event, out.observed, out.allowed) \
        == (4, 4, 0x200_0000, (0x200_1000,))


# Found by a run of 2,000 sequences a cell (2026-12-07), on nested-shadow v5.17 .. v6.7: an L2
# without a VPID shares vpid01 with L1 and writes L1's tables; later it runs on those tables
# under L1's PCID through a root of its own, freshly shadowed, while vpid01 still holds L1's
# copy from before the write (KVM flushed vpid02 at the VM entry: F9).  The abstract model kept
# that copy only in L1's root, which never ran again; a PTE write under shadow paging now makes
# what every context cached through the written tables old, as under TDP.
SHARED_VPID01 = (Regs(0x8001_0001, 0x1007, 0x200A0, 0x500),
                 [ev.VmEntry(0x8001_0033, 0x11000, 0x20020, 0xD00, 0, 0),
                  ev.GuestPteWrite(0x1000), ev.MovCr3(0x8000_0000_0000_2017),
                  ev.Invlpg(0x400000), ev.MovCr3(0x8000_0000_0000_1007)])


@pytest.mark.parametrize("policy,verdict", [("v6.6", 4), ("v6.12", None), ("v5.13", None)])
def test_l1s_old_copy_in_a_shared_vpid01_is_seen_on_both_levels(policy, verdict):
    initial, events = SHARED_VPID01
    t = trace.Trace(policy, "nested-shadow", initial, tuple(events))
    assert (abstract_verdict(t), replay(t).event) == (verdict, verdict)


# A 4-level root and a PAE root over the same tables share their leaf shadow page (the root's
# role at level 1: mmu.c kvm_mmu_get_page).  rfc-2022-02 keeps the 4-level root as a prev root
# across KVM_SET_SREGS to PAE paging; after a PTE write both roots are unsync.  A sync from the
# PAE root brings the shared leaf up to date but clears only its own path's unsync_children, so
# the 4-level root stays an unsync root with a current translation.  Before (2026-12-07) the
# concrete level read is_unsync_root from the leaf alone (a model error at the PV flush's
# kvm_mmu_sync_prev_roots), and the abstract model kept the 4-level root's translation stale
# (a violation the replay did not see at the switch back).
FOUR_LEVEL = Regs(0x8001_0033, 0x2000, 0x20, 0xD00)
TO_PAE = ev.SetSregs(0x8001_0033, 0x2000, 0x20, 0x800)
TO_FOUR_LEVEL = ev.SetSregs(0x8001_0033, 0x2000, 0x20, 0xD00)


@pytest.mark.parametrize("name,later,verdict", [
    ("pv-flush", [ev.PvTlbFlush()], None),
    ("pae-sync-then-back", [ev.MovCr3(0x2000), TO_FOUR_LEVEL], None),
    ("back-unsynced", [TO_FOUR_LEVEL, TO_PAE, TO_FOUR_LEVEL], 2),
])
def test_a_leaf_shared_by_a_4_level_and_a_pae_root(name, later, verdict):
    events = (TO_PAE, ev.GuestPteWrite(0x2000), *later)
    t = trace.Trace("rfc-2022-02", "shadow", FOUR_LEVEL, events)
    assert (abstract_verdict(t), replay(t).event) == (verdict, verdict)


# bmc's freshness counterexample on v6.6 nested-ept, which the replay did not confirm: the
# abstract INIT invalidated L2's VPID too, the replay's only L1's, and KVM flushes only L1's
# context.  INIT cannot reach L1 in VMX operation (formal.model.arch._init); under SVM both levels
# invalidate every context and KVM flushes L2's at every VMRUN.
INIT_AFTER_L2 = (Regs(0x4000_0033, 0x80_4000, 0x20_00A8, 0x900),
                 [ev.VmEntry(0xC004_003B, 0x2_0000, 0x12_04B0, 0xD00, 0x1, 4), ev.VmExit(),
                  ev.Init(), ev.VmEntry(0xE000_0001, 0x2_4000, 0, 0, 0x1, 4)])


@pytest.mark.parametrize("config", ["nested-ept", "nested-npt"])
def test_init_after_l2_ran_holds_on_both_levels(config):
    initial, events = INIT_AFTER_L2
    t = trace.Trace("v6.6", config, initial, tuple(events))
    assert (abstract_verdict(t), replay(t).event) == (None, None)
    m = Machine(POLICIES["v6.6"](CONFIGS[config]), initial, PROPS)
    m.start()
    faults = [m.step(i, e).fault for i, e in enumerate(events)]
    blocked = "INIT is blocked: L1 is in VMX operation (SDM Vol. 3C §23.8)"
    assert faults == [None, None, blocked if config == "nested-ept" else None, None]


# F1 violates on every shadow-paged cell: perturbed, in about one sequence in seven.  The
# FOCUSED-only sample (46 a cell) had no violation on 17 of those 18 cells.
MIN_VIOLATING = EXAMPLES // 20


@pytest.mark.parametrize("policy,config", CELLS, ids=[f"{p}-{c}" for p, c in CELLS])
def test_abstract_violation_iff_concrete_forbidden_access(policy, config):
    """A third of the sequences perturb F1, a third any template (TEMPLATES), a third are
    FOCUSED draws from LONG_MODE (PSE32 for a 4 MiB page), each with a 4 KiB, a global, a
    2 MiB, a 1 GiB or a 4 MiB watched page (a template's initial state may turn the last three
    into a 4 KiB one, check); a shadow-paged cell must see MIN_VIOLATING violations."""
    nested = [NESTED] if CONFIGS[config].nested is not None else []
    unbiased = st.one_of(EVENTS, *nested)
    focused = st.lists(st.one_of(FOCUSED, FOCUSED, FOCUSED, FOCUSED, EVENTS, *nested),
                       min_size=2, max_size=12).map(lambda events: (None, events))
    violating = 0

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(sequence=st.one_of(templated([F1], unbiased), templated(TEMPLATES, unbiased),
                              focused), page=st.sampled_from(SAMPLED_PAGES))
    def run(sequence, page):
        nonlocal violating
        initial, events = sequence
        # A FOCUSED draw starts where its page is modelled: 64-bit paging, or 32-bit paging
        # with PSE for a 4 MiB page; a template keeps its trace's registers.
        initial = initial or initial_for(page)
        violating += check(policy, config, events, initial, page) is not None

    run()
    if not CONFIGS[config].tdp_enabled:
        assert violating >= MIN_VIOLATING, (
            f"{violating} of {EXAMPLES} sequences violate: the templated draws lost their bias")
