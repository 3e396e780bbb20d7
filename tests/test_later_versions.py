"""v6.12 and mainline against v6.7: what the model can see of the kernels after v6.7.

On the modelled paths the two later policies differ from v6.7 in writing INVLPG through
kvm_mmu_invalidate_addr (the v6.5 form, specs/v6_12.py), which must change nothing the model
observes, and in the VPID vmx_get_current_vpid names while an L2 without a VPID runs (v6.12),
which shows only on nested VMX with vmcs12 VPID 0 (tests/test_hardware_tags.py)."""

from __future__ import annotations

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from formal.model import events as ev
from tests.conftest import machine
from tests.test_random_sequences import EVENTS, NESTED, run

LATER = ["v6.12", "mainline"]


def observed(records: list) -> list:
    return [(r.fault, r.violations, r.regs, r.changed) for r in records]


@settings(max_examples=120, deadline=None)
@given(policy=st.sampled_from(LATER), config=st.sampled_from(["shadow", "tdp"]),
       events=st.lists(EVENTS, max_size=10))
def test_flat_runs_match_v6_7(policy, config, events):
    assert observed(run(policy, config, events)) == observed(run("v6.7", config, events))


@settings(max_examples=120, deadline=None)
@given(policy=st.sampled_from(LATER),
       config=st.sampled_from(["nested-ept", "nested-npt", "nested-shadow"]),
       events=st.lists(st.one_of(EVENTS, NESTED), max_size=10))
def test_nested_runs_match_v6_7(policy, config, events):
    """Everywhere but an L2 without a VPID on nested VMX (the v6.12 VPID fix)."""
    if config != "nested-npt":
        assume(all(not isinstance(e, ev.VmEntry) or e.vpid for e in events))
    assert observed(run(policy, config, events)) == observed(run("v6.7", config, events))


def test_v6_12_invlpg_syncs_the_unsync_root_and_ignores_a_noncanonical_address():
    """mmu.c v6.5+ kvm_mmu_invalidate_addr: "INVLPG on a non-canonical address is a NOP";
    otherwise flush_tlb_gva, then sync the gva in every root (sync_spte is set for a shadow
    MMU)."""
    m = machine("v6.12")
    m.start()
    m.step(0, ev.GuestPteWrite(0x1000))
    rec = m.step(1, ev.Invlpg(0x400000))
    assert (rec.actions, rec.violations) == (["sync root pgd=0x1000"], [])
    assert m.v.mmu.root.unsync is False
    m = machine("v6.12")
    m.start()
    rec = m.step(0, ev.Invlpg(1 << 47))  # non-canonical: a NOP
    assert rec.actions == []
