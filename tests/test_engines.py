"""The engines on small obligations whose answers are known (issue #3): a hand-built counter
system, and KVM obligations restricted to the events that matter."""

from __future__ import annotations

from dataclasses import replace

import pytest
from pysmt.shortcuts import (
    BV,
    BVULT,
    FALSE,
    TRUE,
    And,
    BVAdd,
    BVAnd,
    BVExtract,
    EqualsOrIff,
    Iff,
    Ite,
    Not,
    Or,
)

from formal.cli import prove
from formal.engines import search as engines
from formal.engines.checker import CHECKERS
from formal.engines.system import EventRelation, Relation
from formal.model import events as ev
from formal.model.bits import PAGE_1G, PAGE_2M
from formal.model.properties import PROPERTIES
from formal.model.state import CONFIGS, Page
from formal.symbolic.execution import fresh
from formal.symbolic.transition import build, record_lemmas, symbolic_state
from specs import POLICIES

PROP = ("freshness",)


def counter(step: int, bad_at: int) -> Relation:
    """x := 0; each event adds `step`; the property is violated by an event taken when
    x == bad_at.  With step 2 and an odd bad_at it holds, but not k-inductively: the chain of
    odd values below bad_at is unreachable and as long as the bit-vector allows."""
    regs = {f"regs.{r}": fresh(f"s.regs.{r}", "bv") for r in ("cr0", "cr3", "cr4", "efer")}
    x = regs["regs.cr0"]
    post = {n: v.node for n, v in regs.items()} | {"regs.cr0": BVAdd(x.node, BV(step, 64))}
    er = EventRelation(name="mov_cr3", ops={"value": fresh("e.mov_cr3.value", "bv").node}, paths=1,
                       steps=TRUE(), not_modeled=FALSE(), model_error=FALSE(), post=post,
                       violated={"freshness": EqualsOrIff(x.node, BV(bad_at % 2**64, 64))})
    init = And([EqualsOrIff(v.node, BV(0, 64)) for v in regs.values()])
    return Relation("toy", "toy", list(regs), {n: v.node for n, v in regs.items()}, 1, init,
                    {"freshness": FALSE()}, FALSE(), [er])


def test_bmc_finds_the_shortest_counterexample_of_an_unsafe_counter():
    r = engines.bmc(counter(2, 6), PROP, 8)
    assert (r.verdict, r.bound) == ("refuted", 4)  # x = 0, 2, 4, 6: the 4th event is bad


def test_bmc_reports_bounded_never_proved_on_a_safe_counter():
    r = engines.bmc(counter(2, -1), PROP, 5)
    assert (r.verdict, r.label) == ("bounded", "bounded(5)")


def test_kind_proves_a_one_inductive_property_with_a_yices_checked_certificate():
    r = engines.kind(counter(0, 1), PROP, 2)
    assert (r.verdict, r.bound, r.checker, r.checked) == ("proved", 1, "yices", 3)
    assert r.certificate == ("1-induction: base (depths 0..1) and step re-checked by yices in 3 "
                             "one-shot queries")


def test_kind_fails_without_strengthening_where_houdini_proves():
    toy = counter(2, -1)
    assert engines.kind(toy, PROP, 3).verdict == "unknown"
    r = engines.houdini(toy, PROP, bit_fields=("cr0",))
    assert r.verdict == "proved"
    assert "((s0.regs.cr0 & 1_64) = 0_64)" in r.certificate  # x stays even


def test_kind_and_houdini_refute_nothing_and_prove_nothing_on_an_unsafe_counter():
    r = engines.kind(counter(2, 6), PROP, 4)
    assert (r.verdict, r.bound) == ("refuted", 4)
    assert engines.houdini(counter(2, 6), PROP, bit_fields=("cr0",)).verdict == "unknown"


@pytest.mark.parametrize("jobs", [1, 2])
@pytest.mark.parametrize("checker", CHECKERS)
@pytest.mark.parametrize("bit,verdict", [(0, "proved"), (1, "unknown")])
def test_a_corrupted_invariant_fails_the_recheck_of_every_checker(bit, verdict, checker, jobs):
    """Each re-checker, in one process and on two: bit 0 of x stays clear (x += 2 from 0), bit
    1 does not."""
    toy = counter(2, -1)
    s0 = engines.Unroller(toy).state(0)["regs.cr0"]
    inv = EqualsOrIff(BVAnd(s0, BV(1 << bit, 64)), BV(0, 64))  # bit 1 is not preserved
    ck = engines.Checker(checker=checker, jobs=jobs)
    r = engines.recheck_invariant(toy, PROP, inv, ck, {}, "test")
    assert r.verdict == verdict
    if verdict == "proved":  # initiation twice, consecution of the one path, safety
        assert (r.checker, r.checked) == (checker, 4)
        assert r.certificate.startswith(f"inductive invariant re-checked by {checker} in 4 "
                                        "one-shot queries")
    else:
        chain = ", ".join([checker] + [c for c in CHECKERS if c != checker])
        assert r.reason == (f"the re-check ({chain}) rejects the invariant's certificate: the "
                            "consecution-mov_cr3-path0 query is satisfiable")
    # Only an accepted invariant skips initiation and consecution for the next property.
    assert (inv in toy.rechecked) == (verdict == "proved")
    if verdict == "unknown":
        assert "consecution" in r.reason


def test_the_recheck_asks_consecution_per_path_and_names_the_path_that_breaks_it():
    """Two paths, x += 2 where x < 100 and x += 1 elsewhere: "x is even" survives the first
    and not the second, and the recheck names the second (path1)."""
    toy = counter(2, -1)
    (er,) = toy.events
    x = toy.pre["regs.cr0"]
    low = BVULT(x, BV(100, 64))
    odd = er.post | {"regs.cr0": BVAdd(x, BV(1, 64))}
    er.cases = [(low, er.post), (Not(low), odd)]
    er.post = {n: Ite(low, t, odd[n]) for n, t in er.post.items()}
    s0 = engines.Unroller(toy).state(0)["regs.cr0"]
    even = EqualsOrIff(BVAnd(s0, BV(1, 64)), BV(0, 64))
    r = engines.recheck_invariant(toy, PROP, even, engines.Checker(), {}, "test")
    assert (r.verdict, r.reason) == (
        "unknown", "the re-check (yices, bitwuzla, cvc5) rejects the invariant's certificate: "
        "the consecution-mov_cr3-path1 query is satisfiable")


def test_an_event_relation_is_the_disjunction_of_its_cases():
    """What the per-path recheck relies on (formal.engines.search.recheck_invariant): `steps` is the
    disjunction of the path conditions, and on each path `post` is that path's successor."""
    rel = build(POLICIES["v6.6"], CONFIGS["shadow"], [ev.MovCr3, ev.Invpcid], PROP)
    ck = engines.Checker()
    for er in rel.events:
        assert len(er.cases) > 1
        assert not ck.sat("steps", Not(Iff(er.steps, Or([c for c, _ in er.cases]))))
        for cond, post in er.cases:
            same = And([EqualsOrIff(er.post[n], t) for n, t in post.items()])
            assert post.keys() == er.post.keys()
            assert not ck.sat("case", And(cond, Not(same)))


def preserved(rel: Relation, er: EventRelation, assumed: list, goal) -> bool:
    """Does every step of er from a state satisfying assumed satisfy goal after it?"""
    pre = rel.pre
    post = {pre[n]: t for n, t in er.post.items()}
    return not engines.Checker().sat(
        "step", And(*assumed, er.steps, Not(goal.substitute(post))))


def record_lemmas_of(rel: Relation) -> dict:
    """rel's record lemmas by name (formal.symbolic.transition.record_lemmas), each one of
    rel.lemmas: the same terms over the same state variables."""
    cfg = CONFIGS[rel.config]
    named = record_lemmas(cfg, symbolic_state(cfg, "s.")[0])
    assert all(lemma in rel.lemmas for lemma in named.values())
    return named


def test_the_l1_vpid_lemmas_are_what_invvpid_and_vm_entry_need():
    """houdini's counterexamples to induction on v6.6 nested-ept (formal.symbolic.transition.
    record_lemmas): L1's INVVPID naming the watched tag's VPID made an L1 record under it
    stale unless L1 holds nothing under a nonzero VPID; a VM entry that freed an L1 root
    tagged with a nonzero VPID broke that, unless such roots are last used under VPID 0."""
    rel = build(POLICIES["v6.6"], CONFIGS["nested-ept"], [ev.Invvpid, ev.VmEntry], PROP)
    lemma = record_lemmas_of(rel)
    old0, last0 = lemma["old-vpid0"], lemma["last-vpid0"]
    l1_records, l1_roots = lemma["l1-records"], lemma["l1-roots"]
    invvpid, vmentry = rel.events
    records = And(old0, last0)
    assert not preserved(rel, invvpid, [records], records)
    assert preserved(rel, invvpid, [records, l1_records], records)
    assert not preserved(rel, vmentry, [l1_records], l1_records)
    assert preserved(rel, vmentry, [l1_records, l1_roots], And(l1_records, l1_roots))


def test_on_svm_l1s_invlpga_needs_l2s_context_excused_while_l1_runs():
    """houdini's counterexample to induction on v6.6 nested-npt: L1's INVLPGA makes L2's record
    under the ASID it names stale, and KVM flushes L2's context only at the next VMRUN; the
    record lemmas with VPID 0's exception do not allow that, the SVM variant does."""
    rel = build(POLICIES["v6.6"], CONFIGS["nested-npt"], [ev.Invlpga], PROP)
    lemma = record_lemmas_of(rel)
    old0, last0, l1_records = lemma["old-vpid0"], lemma["last-vpid0"], lemma["l1-records"]
    old_idle, last_idle = lemma["old-l2-idle"], lemma["last-l2-idle"]
    (invlpga,) = rel.events
    vpid0, idle = And(old0, last0), And(old_idle, last_idle)
    assert not preserved(rel, invlpga, [vpid0, l1_records], vpid0)
    assert preserved(rel, invlpga, [idle, l1_records], idle)


def test_kind_fails_without_strengthening_where_pdr_proves():
    toy = counter(2, -1)
    assert engines.kind(toy, PROP, 3).verdict == "unknown"
    r = engines.pdr(toy, PROP, engines.Checker(timeout=60))
    assert r.verdict == "proved", r.reason
    assert "re-checked by yices" in r.certificate
    # The invariant IC3 found (the certificate yices accepted) says that x stays even.
    inv = next(iter(toy.rechecked))
    x = engines.Unroller(toy).state(0)["regs.cr0"]
    assert not engines.Checker().sat("odd", And(inv, EqualsOrIff(BVExtract(x, 0, 0), BV(1, 1))))


def test_pdr_finds_the_violation_of_an_unsafe_counter_and_leaves_it_to_bmc():
    r = engines.pdr(counter(2, 6), PROP, engines.Checker(timeout=60))
    assert r.verdict == "unknown"
    assert r.reason == ("pdr found the property violated on a path of 4 events; run bmc for a "
                        "shortest counterexample")


def test_pdr_never_claims_a_proof_it_could_not_finish():
    """x += 3 reaches x == -1 only after about 6e18 events: IC3 neither proves the property
    nor finds the path within its time."""
    r = engines.pdr(counter(3, -1), PROP, engines.Checker(timeout=2))
    assert (r.verdict, r.reason) == ("unknown", "timeout")


LAI_EVENTS = [ev.MovCr3, ev.Invlpg, ev.Invpcid, ev.GuestPteWrite, ev.MovCr4]


@pytest.fixture(scope="module")
def no_pcide_free():
    return build(POLICIES["509bfe3-no-pcide-free"], CONFIGS["shadow"], LAI_EVENTS, PROP)


def test_bmc_refutes_the_hypothetical_patch_with_a_replayed_shortest_counterexample(
        no_pcide_free):
    """The shortest is F10's (a large watched page, which every shadow cell has), one event
    shorter than Lai's sequence, which the corpus keeps (traces/lai-jiangshan.json): the last
    event invalidates another 4 KiB page of the large page, 2 MiB or 1 GiB (INVLPG, or INVPCID's
    individual-address type, whichever the solver's model names)."""
    r = engines.bmc(no_pcide_free, PROP, 5, prefer=prove.preferences)
    assert (r.verdict, r.bound) == ("refuted", 3)
    cex = prove.counterexample(no_pcide_free, r, PROP)
    assert r.verdict == "refuted", r.reason
    index, prop, message = cex.violation
    assert (index, prop) == (2, "freshness")
    size = cex.trace.page.size
    # A plain page, preferred (prove.preferences): the rights change no step.
    assert replace(cex.trace.page, size=PAGE_2M, global_=False) == Page(size=PAGE_2M)
    assert len(cex.trace.events) == 3 and size in (PAGE_2M, PAGE_1G)
    last = cex.trace.events[-1]
    assert isinstance(last, ev.Invlpg) or isinstance(last, ev.Invpcid) and last.type == 0
    assert last.va & ~(size - 1) == 0x40_0000 & ~(size - 1) and last.va & ~0xFFF != 0x40_0000
    assert f"since {'INVLPG' if isinstance(last, ev.Invlpg) else 'INVPCID'}" in message
    assert cex.replay is not None and cex.replay.status is prove.ReplayStatus.CONFIRMED


def test_houdini_proves_nothing_on_the_refuted_hypothetical_patch(no_pcide_free):
    r = engines.houdini(no_pcide_free, PROP)
    assert r.verdict == "unknown"
    assert "does not exclude every violation" in r.reason


TDP_EVENTS = [ev.MovCr0, ev.MovCr3, ev.MovCr4, ev.WrmsrEfer, ev.Invpcid, ev.GuestPteWrite,
              ev.SetSregs]


def test_houdini_proves_v6_6_tdp_with_a_yices_checked_invariant():
    """A KVM cell with an unbounded proof: v6.6 under TDP, on the register, INVPCID, PTE-write
    and KVM_SET_SREGS events (the full cell is in proofs/suite.json)."""
    from formal.cli.prove import vacuity
    rel = build(POLICIES["v6.6"], CONFIGS["tdp"], TDP_EVENTS)
    assert vacuity(rel, PROPERTIES, 2, engines.Checker()) == []
    r = engines.houdini(rel, PROPERTIES)
    assert r.verdict == "proved", r.reason
    # 2 initiation queries, consecution on each of the 128 paths, safety per event kind
    assert "re-checked by yices in 137 one-shot queries (initiation; consecution per path and " \
        "safety for each of 7 event kinds)" in r.certificate
    assert (r.checker, r.checked) == ("yices", 137)


def test_pdr_proves_a_v6_6_tdp_cell_with_a_cvc5_checked_invariant():
    """IC3 on a KVM relation: v6.6 under TDP, CR3 and CR4 writes and INVPCID, freshness
    (about 20 s of search on the reference machine)."""
    rel = build(POLICIES["v6.6"], CONFIGS["tdp"], [ev.MovCr3, ev.Invpcid, ev.MovCr4], PROP)
    r = engines.pdr(rel, PROP, engines.Checker(timeout=300, checker="cvc5"))
    assert r.verdict == "proved", r.reason
    # 2 initiation queries, consecution on each of the 91 paths, safety per event kind
    assert "re-checked by cvc5 in 96 one-shot queries (initiation; consecution per path and " \
        "safety for each of 3 event kinds)" in r.certificate
    # The invariant cvc5 accepted says the guest's hardware TLB context holds nothing stale.
    (inv,) = rel.rechecked
    stale = engines.Unroller(rel).state(0)["hw.0.0.local.stale"]
    assert not engines.Checker().sat("stale", And(inv, stale))


def test_vacuity_checks_fail_on_empty_initial_states_dead_events_and_unviolable_properties():
    from dataclasses import replace

    from formal.cli.prove import vacuity
    toy = counter(2, 6)
    assert vacuity(toy, PROP, 2, engines.Checker()) == []
    no_init = replace(toy, init=FALSE())
    assert vacuity(no_init, PROP, 2, engines.Checker()) == [
        "no initial state: the initial-state constraint is unsatisfiable"]
    dead = replace(toy, events=[replace(toy.events[0], steps=FALSE(),
                                        violated={"freshness": FALSE()})])
    assert vacuity(dead, PROP, 2, engines.Checker()) == [
        "property freshness cannot be violated in any state: it checks nothing",
        "event mov_cr3 is never enabled within 2 events"]
