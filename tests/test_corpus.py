"""The historical bugs of docs/design.md §4, as hand-written traces, on every version."""

from __future__ import annotations

import pytest

from formal.cli import corpus
from specs import POLICIES
from tests.conftest import TRACES, run_trace

FIXED_FOR_LAI = ["v5.12", "v5.13", "v5.17", "rfc-2022-02", "v5.18", "v6.4", "v6.6"]


def test_lai_sequence_violates_freshness_at_the_noflush_switch_without_pcide_free():
    out = run_trace("lai-jiangshan.json", "509bfe3-no-pcide-free")
    idx, viol = out.violation
    assert (idx, viol.prop) == (4, "freshness")
    assert viol.message.startswith("root pgd=0x2000 reused: its out-of-sync shadow entries for "
                                   "VA 0x400000 are stale since the guest PTE write")
    assert "MOV CR3 with CR4.PCIDE=0 at event 0" in viol.message


@pytest.mark.parametrize("policy", FIXED_FOR_LAI)
def test_lai_sequence_holds_on_versions_that_free_or_never_cache(policy):
    out = run_trace("lai-jiangshan.json", policy)
    assert out.violation is None
    assert len(out.records) == 6  # the initial entry and all five events ran


def test_lai_sequence_on_v5_12_is_prevented_by_invpcid_freeing_every_pcid0_prev_root():
    out = run_trace("lai-jiangshan.json", "v5.12")
    invpcid = out.records[3]
    assert "free prev_roots[0] pgd=0x2000" in invpcid.actions
    assert "switch to cached prev_roots[0] pgd=0x2000" not in out.records[5].actions


def test_lai_sequence_on_v5_17_frees_the_roots_on_the_pcide_change():
    out = run_trace("lai-jiangshan.json", "v5.17")
    pcide = out.records[4]
    assert pcide.actions[:2] == ["request MMU_RELOAD", "service MMU_RELOAD"]
    assert "free prev_roots[0] pgd=0x2000" in pcide.actions


@pytest.mark.parametrize("policy", list(POLICIES))
def test_prev_root_of_same_pcid_left_unsync_across_flushing_mov_cr3(policy):
    out = run_trace("prev-root-same-pcid.json", policy)
    if policy in ("v5.12", "v5.13"):
        idx, viol = out.violation
        assert (idx, viol.prop) == (3, "freshness")
        assert viol.message == ("root pgd=0x3001 reused: its out-of-sync shadow entries for VA "
                                "0x400000 are stale since MOV CR3 (PCID 0x1) at event 2")
    else:
        assert out.violation is None


@pytest.mark.parametrize("policy", list(POLICIES))
def test_pv_tlb_flush_without_shadow_sync(policy):
    out = run_trace("pv-tlb-flush.json", policy)
    if policy == "v5.12":
        idx, viol = out.violation
        assert (idx, viol.prop) == (1, "freshness")
        assert "PV TLB flush (KVM_VCPU_FLUSH_TLB) at event 1" in viol.message
    else:
        assert out.violation is None


def test_corpus_matches_its_expectations():
    cells = [c for t in corpus.run(TRACES) for c in t.cells]
    assert [c for c in cells if not c.ok or c.new] == []
    assert len(cells) == len(POLICIES) * (len(list(TRACES.glob("*.json"))) - 1)
