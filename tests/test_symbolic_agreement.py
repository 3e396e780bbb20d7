"""The symbolic transition relation and the concrete simulator agree (issue #3): on random
reachable states (with a global watched page or not) and random next events, evaluating the
relation's terms at the concrete state gives the simulator's successor state, fault or not, and
the same violated properties.  Both
execute the same policy code; this pins the symbolic machinery (path exploration, merging, the
fixed fields) against plain Python execution."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from formal.model import events as ev
from formal.model.machine import Machine
from formal.model.properties import PROPERTIES
from formal.model.scope import not_modeled
from formal.model.state import CONFIGS, DEFAULT_PAGE, Page
from formal.symbolic.execution import get_leaf, leaves
from formal.symbolic.transition import build
from specs import POLICIES
from tests.conftest import SAMPLED_PAGES, initial_for
from tests.support.relation import evaluate, watching
from tests.test_random_sequences import EVENTS, NESTED

# (policy, config, sequences): the nested relation is the largest, so it gets fewer in CI;
# FLUSHPROOF_AGREEMENT_SCALE=10 multiplies them for a longer run.
SCALE = int(os.environ.get("FLUSHPROOF_AGREEMENT_SCALE", "1"))
CELLS = [("v5.12", "shadow", 30), ("509bfe3-no-pcide-free", "shadow", 30), ("v6.6", "tdp", 30),
         ("v5.17", "nested-ept", 6)]
# A tag no sequence uses (VPID 0xFFFF, PCID 0xFFF): its record stays clean.
UNUSED_TAG = 0xFFFF_FFF
_RELATIONS: dict[tuple[str, str], object] = {}


def relation(policy: str, config: str):
    key = (policy, config)
    if key not in _RELATIONS:
        _RELATIONS[key] = build(POLICIES[policy], CONFIGS[config])
    return _RELATIONS[key]


@pytest.mark.parametrize("policy,config,examples", CELLS)
def test_relation_agrees_with_the_simulator(policy, config, examples):
    settings(max_examples=examples * SCALE, deadline=None, derandomize=True,
             suppress_health_check=[HealthCheck.too_slow])(given(data=st.data())(
                 lambda data: agree(policy, config, data)))()


def agree(policy: str, config: str, data) -> None:
    pool = st.one_of(EVENTS, NESTED) if CONFIGS[config].nested else EVENTS
    agree_on(policy, config, data.draw(st.lists(pool, max_size=6)),
             data.draw(st.sampled_from(SAMPLED_PAGES)))


def agree_on(policy: str, config: str, events: list[ev.Event],
             page: Page = DEFAULT_PAGE) -> None:
    """The relation and the simulator agree step by step on events, with the watched page."""
    cfg = CONFIGS[config]
    rel = relation(policy, config)
    m = Machine(POLICIES[policy](cfg), initial_for(page), PROPERTIES, page)
    m.start()
    kinds = {er.name for er in rel.events}
    for i, e in enumerate(events):
        if not_modeled(cfg, m.v, e) or e.op not in kinds:
            continue
        pre = m.v.clone()
        rec = m.step(i, e)
        concrete = {x.prop for x in rec.violations}
        # The relation watches one tag per run: for every tag the concrete state has a record
        # under, and one it has none under, it must give that record's successor; freshness
        # is violated for some watched tag iff it is on the concrete state.
        tags = {r.tag for records in m.v.hw for r in records} | {UNUSED_TAG}
        fresh = False
        for tag in sorted(tags):
            steps, post, violated = evaluate(rel, pre, e, tag)
            assert steps == (rec.fault is None), (e, rec.fault)
            assert {p for p in PROPERTIES if violated[p]} - {"freshness"} \
                == concrete - {"freshness"}, e
            fresh |= violated["freshness"]
            if steps:
                after = {n: get_leaf(o, k) for n, o, k in leaves(watching(m.v, tag))}
                assert {n: post[n] for n in post} == {n: after[n] for n in post}, (e, tag)
        assert fresh == ("freshness" in concrete), e
        if rec.violations:
            break


def test_relation_reports_paths_per_handler():
    rel = relation("v5.12", "shadow")
    paths = {er.name: er.paths for er in rel.events}
    assert set(paths) == {k.op for k in ev.EVENT_TYPES.values()} - ev.NESTED_OPS
    assert all(n >= 1 for n in paths.values())
    # branch-free: one path, and one not modelled (a large page's PDE under shadow paging)
    assert paths["guest_pte_write"] == 2
    assert paths["guest_pte_write_other"] == 1


# tests/test_unsync_roots.py's sequences: a prev root unsync through a write elsewhere, or
# through INVLPG resyncing only the watched SPTE, freed by the guest flush (v5.16+), and kept
# after a full sync.  509bfe3-no-pcide-free has v5.17's kvm_mmu_sync_prev_roots.
UNSYNC_SEQUENCES = [
    [ev.MovCr3(0x2000), ev.GuestPteWriteOther(0x1000), ev.PvTlbFlush(), ev.MovCr3(0x1000)],
    [ev.MovCr3(0x2000), ev.GuestPteWrite(0x1000), ev.Invlpg(0x400000), ev.PvTlbFlush(),
     ev.MovCr3(0x1000)],
    [ev.MovCr3(0x2000), ev.GuestPteWriteOther(0x1000), ev.MovCr3(0x1000), ev.MovCr3(0x2000),
     ev.PvTlbFlush()],
]


@pytest.mark.parametrize("events", UNSYNC_SEQUENCES)
def test_relation_agrees_on_freeing_unsync_prev_roots(events):
    agree_on("509bfe3-no-pcide-free", "shadow", events)
