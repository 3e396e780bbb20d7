"""Which prev roots a guest TLB flush frees under shadow paging: since v5.16 (61b05a9fd4ae)
kvm_vcpu_flush_tlb_guest calls kvm_mmu_sync_prev_roots, which frees every prev root that
is_unsync_root -- an unsync shadow page anywhere under it ("sp->unsync ||
sp->unsync_children"), not only the watched page's.  Pinned on both levels: the abstract
ghost (Root.unsync, Root.unsync_elsewhere) and the concrete shadow pages
(formal.concrete.shadow), which must agree on every root the flush looks at."""

from __future__ import annotations

from dataclasses import replace

import pytest

from formal.cli.policies import replay
from formal.concrete.shadow import concrete_policy
from formal.model import arch, trace
from formal.model import events as ev
from formal.model.machine import Machine
from formal.model.properties import ModelError
from formal.model.state import CONFIGS
from specs import POLICIES
from tests.conftest import LONG_MODE, TRACES
from tests.test_crosscheck import abstract_verdict

A, B = 0x1000, 0x2000  # LONG_MODE runs on A first
# The versions that free unsync prev roots on a guest flush; v5.12 keeps every root (its
# kvm_vcpu_flush_tlb_guest only flushes), v5.13 frees them all (b53e84eed08b: unload).
SYNC_PREV = [p for p in POLICIES if p not in ("v5.12", "v5.13")]


def run(policy: str, events: list[ev.Event], concrete: bool = False) -> tuple[Machine, list]:
    cls = POLICIES[policy]
    m = Machine((concrete_policy(cls) if concrete else cls)(CONFIGS["shadow"]), LONG_MODE)
    m.start()
    logs = [m.step(i, e).actions for i, e in enumerate(events)]
    return m, logs


def prev_pgds(m: Machine) -> list[int | None]:
    return [r.pgd if r.valid else None for r in m.v.root_mmu.prev_roots]


ELSEWHERE = [ev.MovCr3(B), ev.GuestPteWriteOther(A), ev.PvTlbFlush()]


@pytest.mark.parametrize("concrete", [False, True], ids=["abstract", "concrete"])
@pytest.mark.parametrize("policy", SYNC_PREV)
def test_a_write_elsewhere_makes_a_prev_root_unsync_and_a_guest_flush_frees_it(policy,
                                                                               concrete):
    m, logs = run(policy, ELSEWHERE, concrete)
    assert logs[1] == [f"root pgd={A:#x} has an unsync page elsewhere"]
    assert f"free prev_roots[0] pgd={A:#x}" in logs[2]
    assert prev_pgds(m) == [None, None, None]


@pytest.mark.parametrize("policy", SYNC_PREV)
def test_without_the_write_elsewhere_the_guest_flush_keeps_the_prev_root(policy):
    m, logs = run(policy, [ev.MovCr3(B), ev.PvTlbFlush()])
    assert not any(line.startswith("free") for line in logs[1])
    assert prev_pgds(m) == [A, None, None]


def test_v5_12_keeps_and_v5_13_frees_every_root_whatever_is_unsync():
    m, _ = run("v5.12", ELSEWHERE)
    assert prev_pgds(m) == [A, None, None]
    m, logs = run("v5.13", [ev.MovCr3(B), ev.PvTlbFlush()])
    assert f"free prev_roots[0] pgd={A:#x}" in logs[1] and prev_pgds(m) == [None, None, None]


@pytest.mark.parametrize("concrete", [False, True], ids=["abstract", "concrete"])
@pytest.mark.parametrize("policy", SYNC_PREV)
def test_invlpg_resyncs_one_spte_and_leaves_the_root_unsync(policy, concrete):
    """INVLPG of the watched page rewrites its SPTE under every root (FNAME(invlpg) /
    sync_spte) but leaves the leaf shadow page unsync: the next guest flush frees the prev
    root.  The model used to count the root as synced and keep it."""
    events = [ev.MovCr3(B), ev.GuestPteWrite(A), ev.Invlpg(arch.WATCHED_VA), ev.PvTlbFlush()]
    m, logs = run(policy, events, concrete)
    assert f"free prev_roots[0] pgd={A:#x}" in logs[3]
    assert prev_pgds(m) == [None, None, None]


def test_a_full_sync_clears_the_unsync_elsewhere():
    """Back on A, kvm_mmu_load's sync (mmu_sync_children) leaves no unsync page under A's
    root: a later guest flush, with A a prev root again, keeps it."""
    events = [ev.MovCr3(B), ev.GuestPteWriteOther(A), ev.MovCr3(A), ev.MovCr3(B),
              ev.PvTlbFlush()]
    m, _ = run("v6.6", events)
    assert not m.v.root_mmu.prev_roots[0].unsync_elsewhere
    assert prev_pgds(m) == [A, None, None]


def test_the_concrete_level_rejects_a_ghost_that_disagrees_with_its_shadow_pages():
    m, _ = run("v6.6", [ev.MovCr3(B)], concrete=True)
    m.v.root_mmu.prev_roots[0].unsync_elsewhere = True  # no write elsewhere happened
    with pytest.raises(ModelError, match="unsync"):
        m.step(1, ev.PvTlbFlush())


@pytest.mark.parametrize("policy", list(POLICIES))
def test_the_write_elsewhere_never_exposes_a_stale_translation(policy):
    """The other page's PTE is not the watched one: both levels hold."""
    t = trace.Trace(policy, "shadow", LONG_MODE, (*ELSEWHERE, ev.MovCr3(A)))
    m, _ = run(policy, list(t.events))
    assert replay(t).event is None
    assert m.v.regs.cr3 == A


CORPUS_TRACE = TRACES / "guest-flush-frees-unsync-prev-root.json"


@pytest.mark.parametrize("policy", SYNC_PREV)
def test_without_the_write_elsewhere_the_kept_root_is_reused_unsync_on_both_levels(policy):
    """The corpus trace less its event 1: the flush keeps a's root, the NOFLUSH switch back
    reuses it unsync (F1's shape, a guest flush as the invalidation); with event 1 it holds
    (traces/expected.json)."""
    t = trace.override(trace.load(CORPUS_TRACE), policy, None)
    without = replace(t, events=tuple(e for e in t.events
                                      if not isinstance(e, ev.GuestPteWriteOther)))
    assert (abstract_verdict(without), replay(without).event) == (3, 3)
    assert (abstract_verdict(t), replay(t).event) == (None, None)
