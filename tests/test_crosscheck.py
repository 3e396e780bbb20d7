"""Cross-check of the two levels (DESIGN.md §6, issue #4 item 5): on random event sequences, for
every policy and configuration, the abstract model flags a role, pgd or freshness violation iff
the concrete replay (formal.replay) observes an access the saturated-TLB oracle forbids, and at
the same event.

Fixed seed (derandomize): CI runs EXAMPLES sequences per (policy, configuration) cell, 45 cells.
A longer run: FLUSHPROOF_CROSSCHECK_EXAMPLES=2000 python -m pytest -q tests/test_crosscheck.py
(docs/replay.md).  A disagreement fails with hypothesis's shrunk sequence as a trace.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from formal import events as ev
from formal import trace
from formal.machine import Machine
from formal.replay import replay
from formal.simulate import _not_modeled
from formal.state import CONFIGS, Regs
from specs import POLICIES
from tests.conftest import LONG_MODE, TRACES
from tests.test_random_sequences import CR0S, CR4S, EFERS, PGDS, events

EXAMPLES = int(os.environ.get("FLUSHPROOF_CROSSCHECK_EXAMPLES", "46"))
PROPS = ("role", "pgd", "freshness")

# 5-level paging (CR4.LA57 with IA-32e mode) is not modelled by formal.paging.
FLAT_CR4S = [c for c in CR4S if not c & 0x1000]
EVENTS = events(FLAT_CR4S)
# The paths the historical bugs take (DESIGN.md §4): PCID and NOFLUSH CR3 switches among a few
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
    st.builds(ev.MovCr4, st.sampled_from([0x20020, 0x20, 0x200A0, 0xA0])),
    st.builds(ev.Invpcid, st.integers(0, 3), st.integers(0, 1), st.just(0x400000)),
    st.builds(ev.Invlpg, st.just(0x400000)),
)
NESTED = st.one_of(
    st.builds(lambda cr0, cr3, cr4, efer, vpid: ev.VmEntry(cr0, cr3 + 0x10000, cr4, efer, 0,
                                                           vpid),
              st.sampled_from(CR0S), st.sampled_from(PGDS), st.sampled_from(FLAT_CR4S),
              st.sampled_from(EFERS), st.integers(0, 2)),
    st.just(ev.VmExit()),
    st.builds(ev.Invvpid, st.integers(0, 3), st.integers(0, 2), st.just(0x400000)),
    st.builds(ev.Invlpga, st.just(0x400000), st.integers(1, 2)),
)


def modelled(policy: str, config: str, events: list[ev.Event],
             initial: Regs = LONG_MODE) -> trace.Trace:
    """The events the model covers, in order (as tests/test_random_sequences.run picks them),
    as a trace; VM entries get L1's EPTP/nCR3 0x9000 under nested TDP."""
    cfg = CONFIGS[config]
    m = Machine(POLICIES[policy](cfg), initial, PROPS)
    m.start()
    kept = []
    for e in events:
        if isinstance(e, ev.VmEntry) and cfg.nested_tdp:
            e = ev.VmEntry(e.cr0, e.cr3, e.cr4, e.efer, 0x9000, e.vpid)
        if _not_modeled(m.v, e):
            continue
        m.step(len(kept), e)
        kept.append(e)
    return trace.Trace(policy, config, initial, tuple(kept))


def abstract_verdict(t: trace.Trace) -> int | None:
    """The event of the first role/pgd/freshness violation (-1: the first entry), or None."""
    m = Machine(POLICIES[t.policy](CONFIGS[t.config]), t.initial, PROPS)
    if m.start().violations:
        return -1
    for i, e in enumerate(t.events):
        if m.step(i, e).violations:
            return i
    return None


def check(policy: str, config: str, events: list[ev.Event], initial: Regs = LONG_MODE) -> None:
    t = modelled(policy, config, events, initial)
    abstract = abstract_verdict(t)
    concrete = replay(t)
    said = "holds" if abstract is None else f"violation at event {abstract}"
    assert abstract == concrete.event, (
        f"levels disagree: abstract model {said}, concrete replay "
        f"{concrete.message or 'holds'}\n{trace.dumps(t)}")


CELLS = [(p, c) for p in POLICIES for c in CONFIGS]
CORPUS = sorted(p.name for p in TRACES.glob("*.json") if p.name != "expected.json")


@pytest.mark.parametrize("name", CORPUS)
@pytest.mark.parametrize("policy,config", CELLS, ids=[f"{p}-{c}" for p, c in CELLS])
def test_corpus_traces_agree_on_every_cell(name, policy, config):
    """The hand-written bugs, which the random draws reach rarely, on every cell."""
    t = trace.load(TRACES / name)
    check(policy, config, list(t.events), t.initial)


@pytest.mark.parametrize("policy,config", CELLS, ids=[f"{p}-{c}" for p, c in CELLS])
def test_abstract_violation_iff_concrete_forbidden_access(policy, config):
    nested = CONFIGS[config].nested is not None
    events = st.lists(st.one_of(FOCUSED, FOCUSED, FOCUSED, FOCUSED, EVENTS,
                                *([NESTED] if nested else [])),
                      min_size=2, max_size=12)

    @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(events=events)
    def run(events):
        check(policy, config, events)

    run()
