"""The explicit-state first stage of refutations (formal.model.explore, prove's
_explicit_first): a violation found by breadth-first search is a counterexample only once bmc
shows none shorter."""

from __future__ import annotations

from dataclasses import replace

from formal.cli import prove
from formal.model import events as ev
from formal.model import explore
from formal.model.state import CONFIGS
from specs import POLICIES

F2_KINDS = {"guest_pte_write", "pv_tlb_flush", "mov_cr3"}


def test_breadth_first_search_finds_f2_in_two_events():
    t = explore.search(POLICIES["v5.12"], CONFIGS["shadow"], ("freshness",), F2_KINDS, 3, 60)
    assert t is not None
    assert t.events == (ev.GuestPteWrite(0x1000), ev.PvTlbFlush())
    assert t.initial == explore.INITIAL[0]


def test_nothing_within_the_depth_is_none():
    assert explore.search(POLICIES["v6.6"], CONFIGS["shadow"], ("freshness",), F2_KINDS, 2,
                          60) is None


def test_prove_takes_the_search_s_trace_once_bmc_finds_none_shorter():
    ob = prove.Obligation("v5.12", "shadow", ("freshness",), "bmc", 3,
                          events=tuple(sorted(F2_KINDS)))
    proof = prove.run(ob)
    r, cex = proof.result, proof.counterexample
    assert (r.verdict, r.engine, r.bound) == ("refuted", "explicit+bmc", 2)
    assert cex.trace.events == (ev.GuestPteWrite(0x1000), ev.PvTlbFlush())
    assert cex.replay.status is prove.ReplayStatus.CONFIRMED
    assert {"explicit", "bmc"} <= set(proof.times)


def test_a_longer_trace_from_the_search_gives_way_to_bmc_s_shorter_one(monkeypatch):
    """If the search's trace were not shortest, bmc to one event less finds a shorter one and
    that is the verdict (the search never decides the length)."""
    longer = replace(explore.search(POLICIES["v5.12"], CONFIGS["shadow"], ("freshness",),
                                    F2_KINDS, 3, 60),
                     events=(ev.MovCr3(0x1000), ev.GuestPteWrite(0x1000), ev.PvTlbFlush()))
    monkeypatch.setattr(explore, "search", lambda *args: longer)
    ob = prove.Obligation("v5.12", "shadow", ("freshness",), "bmc", 3,
                          events=tuple(sorted(F2_KINDS)))
    r = prove.run(ob).result
    assert (r.verdict, r.engine, r.bound) == ("refuted", "bmc", 2)


# 509bfe3d9796's bug over v5.18 (docs/policies.md): MOV CR3 with PCIDE=0, a PTE write, MOV CR4
# setting PCIDE, a NOFLUSH MOV CR3 back to the prev root cached under PCID 0.
PCIDE_KINDS = {"mov_cr3", "mov_cr4", "guest_pte_write"}
PCIDE_FREE = (ev.MovCr3(0x2000), ev.GuestPteWrite(0x1000), ev.MovCr4(0x20020),
              ev.MovCr3(0x8000_0000_0000_1000))


def test_in_lockstep_the_search_finds_what_the_patch_adds_over_its_base():
    t = explore.search(POLICIES["509bfe3-no-pcide-free"], CONFIGS["shadow"], ("freshness",),
                       PCIDE_KINDS, 4, 120, POLICIES["v5.18"])
    assert t is not None and (t.policy, t.events) == ("509bfe3-no-pcide-free", PCIDE_FREE)


def test_in_lockstep_a_violation_the_base_has_too_is_not_found():
    """F2 is v5.12's own: v5.12 against itself adds nothing within the depth."""
    assert explore.search(POLICIES["v5.12"], CONFIGS["shadow"], ("freshness",), F2_KINDS, 3,
                          60, POLICIES["v5.12"]) is None


def test_a_differential_prove_takes_the_search_s_trace_once_bmc_finds_none_shorter():
    ob = prove.Obligation("509bfe3-no-pcide-free", "shadow", ("freshness",), "bmc", 4,
                          events=tuple(sorted(PCIDE_KINDS)), base="v5.18")
    proof = prove.run(ob)
    r, cex = proof.result, proof.counterexample
    assert (r.verdict, r.engine, r.bound) == ("refuted", "explicit+bmc", 4)
    assert cex.trace.events == PCIDE_FREE and "against base v5.18" in cex.trace.description
    assert cex.violation[:2] == (3, "freshness")
    assert cex.replay.status is prove.ReplayStatus.CONFIRMED
