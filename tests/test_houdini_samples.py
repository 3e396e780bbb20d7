"""Houdini's first stage without a solver (formal.engines.search.inductive_lemmas): the
candidates a reachable state of the simulator falsifies are dropped before any query.  The
result must be the one houdini reaches without it, since every lemma of the strongest
inductive conjunction holds in every reachable state; a state the relation cannot reach would
drop one of those, and the first test would see it."""

from __future__ import annotations

from dataclasses import replace

import pytest

from formal.engines import evaluate
from formal.engines import search as engines
from formal.engines.checker import Checker
from formal.model import events as ev
from formal.model import explore
from formal.model.state import CONFIGS
from formal.symbolic.transition import build, sample_states
from specs import POLICIES

EVENTS = [ev.MovCr0, ev.MovCr3, ev.MovCr4, ev.Invpcid, ev.GuestPteWrite, ev.SetSregs]


SAMPLES = 339  # distinct pre-states: a state with two hardware records has two


@pytest.fixture(scope="module")
def cell():
    rel = build(POLICIES["v6.6"], CONFIGS["tdp"], EVENTS)
    states = explore.reachable(POLICIES["v6.6"], CONFIGS["tdp"],
                               {k.op for k in EVENTS}, 2, 120, 300)
    return rel, states, sample_states(rel, CONFIGS["tdp"], states)


def test_samples_drop_candidates_but_not_the_result(cell):
    rel, states, samples = cell
    assert (len(states), len(samples)) == (300, SAMPLES)
    cands = list(engines.candidates(rel))
    survivors = cands
    for s in samples:
        false = evaluate.falsified(survivors, s)
        survivors = [c for c in survivors if c not in false]
    assert (len(cands), len(survivors)) == (1394, 712)
    rel.inductive = None
    without = engines.inductive_lemmas(rel, Checker())
    rel.inductive = None
    with_samples = engines.inductive_lemmas(rel, Checker(), samples=samples)
    assert set(with_samples) == set(without)
    assert set(without) <= set(survivors)


def test_an_unreachable_state_would_change_the_result(cell):
    """The check above can fail: a state no run reaches (here the first reachable one with
    its active root's pgd changed) falsifies a lemma of the inductive conjunction."""
    rel, states, _ = cell
    rel.inductive = None
    result = engines.inductive_lemmas(rel, Checker())
    bad = states[0]
    bad.root_mmu.root = replace(bad.root_mmu.root, pgd=bad.root_mmu.root.pgd ^ 0x5000)
    unreachable = sample_states(rel, CONFIGS["tdp"], [bad])
    assert any(evaluate.falsified(result, s) for s in unreachable)


def test_the_evaluator_agrees_with_pysmt_on_every_candidate(cell):
    rel, _, samples = cell
    cands = list(engines.candidates(rel))
    for s in samples[::40]:
        want = {c for c in cands if c.substitute(s).simplify().is_false()}
        assert evaluate.falsified(cands, s) == want
