"""Which hardware context each level runs in and which one each KVM flush hits (docs/model.md,
"Hardware tags"), per version: the ghost (formal.model.kvm.Mechanism) and the concrete MMU's
hardware contexts (formal.concrete.shadow) side by side."""

from __future__ import annotations

import pytest

from formal.cli.render import caveats
from formal.concrete.shadow import GuestWorld, concrete_policy
from formal.model import events as ev
from formal.model import simulate, trace
from formal.model.machine import Machine
from formal.model.state import CONFIGS, Copies, HwTlb, Vcpu
from specs import POLICIES
from tests.conftest import LONG_MODE

L1_TAG, L2_TAG = 0x0, 0x5000  # VPID 0 (L1, or an L2 without VPID) and vmcs12 VPID 5


def entered(policy: str, config: str, vpid: int):
    """A concrete-MMU machine of policy in config after one VM entry with vpid12 = vpid."""
    cfg = CONFIGS[config]
    world = GuestWorld()
    for pgd in (LONG_MODE.cr3, 0x3000):
        world.add_pgd(pgd)
    nested_pgd = 0x9000 if cfg.nested_tdp else 0
    if nested_pgd:
        world.add_ept(nested_pgd)
    p = concrete_policy(POLICIES[policy])(cfg, world)
    m = Machine(p, LONG_MODE)
    m.start()
    m.step(0, ev.VmEntry(LONG_MODE.cr0, 0x3000, LONG_MODE.cr4, LONG_MODE.efer, nested_pgd, vpid))
    return p, m


@pytest.mark.parametrize("config,vpid,ctx1,hardware", [
    ("nested-shadow", 0, False, (1, "")),   # vpid01, no EPT: L1's very context
    ("nested-shadow", 5, True, (2, "")),    # vpid02
    ("nested-ept", 0, True, (1, "l2")),     # vpid01, but under L2's EPT root
    ("nested-ept", 5, True, (2, "l2")),
    ("nested-npt", 1, True, (2, "")),       # vmcb02's ASID, whatever L1 asked for
    ("nested-npt", 5, True, (2, "")),       # (VMRUN with ASID 0 fails)
])
def test_the_context_l2_runs_in(config, vpid, ctx1, hardware):
    p, m = entered("v6.6", config, vpid)
    assert bool(p.running_ctx1(m.v)) is ctx1
    assert p.hardware_context(m.v) == hardware
    assert hardware in p.hw  # the entry cached there


def flushed(policy: str, config: str, vpid: int, flush) -> list[list[int]]:
    """The tags of ghost records left in contexts 0 and 1 after flush(policy object, state)
    (or the policy method so named) runs while an L2 with vpid12 = vpid is active, each context
    holding one record under VPID 0 and, in context 1, one under VPID 5."""
    p, m = entered(policy, config, vpid)
    v: Vcpu = m.v
    v.hw = [[HwTlb(tag=L1_TAG, local=Copies(ran=True, ran_tables=0x1000))],
            [HwTlb(tag=L1_TAG, local=Copies(ran=True, ran_tables=0x3000)),
             HwTlb(tag=L2_TAG, local=Copies(ran=True, ran_tables=0x3000))]]
    if isinstance(flush, str):
        getattr(p, flush)(v)
    else:
        flush(p, v)
    return [[r.tag for r in records if r.local.ran] for records in v.hw]


# (policy, vpid12, flush): the records left in (L1's context, L2's context).
NESTED_EPT = [
    # <= v5.15: flush_tlb_guest always vpid01 (to_vmx(vcpu)->vpid), also for an L2 with VPID.
    ("v5.12", 5, "vendor_flush_tlb_guest", [[], [L2_TAG]]),
    ("v5.12", 0, "vendor_flush_tlb_guest", [[], [L2_TAG]]),
    # v5.16..v6.11: vmx_get_current_vpid is vpid02 whenever L2 runs.
    ("v6.6", 5, "vendor_flush_tlb_guest", [[L1_TAG], [L1_TAG]]),
    ("v6.6", 0, "vendor_flush_tlb_guest", [[L1_TAG], [L1_TAG]]),
    # v6.12: vpid01 for an L2 without VPID.
    ("v6.12", 5, "vendor_flush_tlb_guest", [[L1_TAG], [L1_TAG]]),
    ("v6.12", 0, "vendor_flush_tlb_guest", [[], [L2_TAG]]),
    # With EPT, flush_tlb_current is the current EPTP's: L2's whole context, every VPID.
    ("v6.6", 0, "kvm_vcpu_flush_tlb_current", [[L1_TAG], []]),
    ("v5.12", 5, "kvm_vcpu_flush_tlb_current", [[L1_TAG], []]),
]


@pytest.mark.parametrize("policy,vpid,flush,left", NESTED_EPT)
def test_which_vpid_a_flush_hits_under_nested_ept(policy, vpid, flush, left):
    assert flushed(policy, "nested-ept", vpid, flush) == left


@pytest.mark.parametrize("policy,vpid,left", [
    # Without EPT, flush_tlb_current is a VPID flush too: vpid02 while L2 runs until v6.12.
    ("v5.12", 0, [[L1_TAG], [L1_TAG]]),
    ("v6.6", 0, [[L1_TAG], [L1_TAG]]),
    ("v6.12", 0, [[], [L2_TAG]]),
    ("v6.12", 5, [[L1_TAG], [L1_TAG]]),
])
def test_flush_tlb_current_without_ept(policy, vpid, left):
    assert flushed(policy, "nested-shadow", vpid, "kvm_vcpu_flush_tlb_current") == left


@pytest.mark.parametrize("policy", ["v5.12", "v6.6", "v6.12"])
def test_invvpid_flushes_vpid02_in_every_version(policy):
    """handle_invvpid: "INVVPID targets a VPID, not a VMCS" -- vpid02, whatever runs."""
    def invvpid(p, v):
        p.handle_invvpid(v, 1, 5, 0)
    assert flushed(policy, "nested-ept", 0, invvpid) == [[L1_TAG], [L1_TAG]]


def test_a_native_invlpg_under_vpid01_reaches_l1s_entries_under_every_ept_root():
    """SDM Vol. 3C §28.3.3.1: INVLPG invalidates the current VPID's mappings, combined ones
    for all EP4TAs.  An L2 without VPID (vpid01) executing INVLPG under nested EPT removes
    L1's entries for the page too, on both levels."""
    p, m = entered("v6.6", "nested-ept", 0)
    held = {key: bool(hw.entries) for key, hw in p.hw.items()}
    assert held == {(1, "l1"): True, (1, "l2"): True}
    m.step(1, ev.Invlpg(0x400000))
    assert [bool(r.local.ran) for r in m.v.hw[0]] == [False]  # L1's record: flushed, not re-cached
    assert not p.hw[(1, "l1")].entries


ENTRY = ev.VmEntry(0x8001_0033, 0x3000, 0x20, 0xD00, 0x9000, 0)
WP = 0x8001_0033 ^ 0x1_0000  # LONG_MODE's CR0 with WP cleared


@pytest.mark.parametrize("policy,config,l2,write,native", [
    ("v6.6", "nested-ept", True, ev.MovCr4(0xA0), True),       # PGE alone: guest-owned
    ("v6.6", "nested-ept", True, ev.MovCr4(0x400A0), False),   # OSXSAVE: always KVM's
    ("v6.6", "nested-ept", True, ev.MovCr4(0x20), True),       # no change: no exit either
    ("v6.6", "nested-ept", True, ev.MovCr0(WP), False),        # CR0.WP: KVM's in the model
    ("v5.12", "nested-ept", True, ev.MovCr4(0xA0), True),      # PGE: the guest's in v5.12 too
    ("v6.6", "nested-ept", False, ev.MovCr4(0xA0), False),     # L1's: KVM's emulator route
    ("v6.6", "tdp", False, ev.MovCr4(0xA0), False),
    ("v6.6", "nested-shadow", True, ev.MovCr4(0xA0), False),   # no EPT: KVM owns PGE
    ("v6.6", "nested-npt", True, ev.MovCr4(0xA0), False),      # SVM: every write is KVM's
])
def test_a_cr_write_changing_only_guest_owned_bits_runs_on_the_hardware_in_l2_under_ept(
        policy, config, l2, write, native):
    """specs/common.py `intercepted`: under VMX with EPT, L2's MOV CR4 changing only bits the
    guest owns does not exit (set_cr4_guest_host_mask) and the emulator refuses CR writes in
    guest mode; L1's stays KVM's, and so does every MOV CR0 (docs/model.md).  The native PGE
    toggle flushes the current VPID itself, so F9's write without OSXSAVE shows nothing
    stale."""
    events = ((ENTRY,) if l2 else ()) + (ev.GuestPteWrite(0x3000 if l2 else 0x1000), write)
    t = trace.Trace(policy, config, LONG_MODE, events, "test")
    out = simulate.run(t, POLICIES[policy], stop_at_violation=False)
    assert out.records[-1].fault is None
    assert ("executed by the hardware (not intercepted)" in out.records[-1].actions) == native
    if native and isinstance(write, ev.MovCr4) and write.value == 0xA0:
        assert out.violation is None


@pytest.mark.parametrize("policy,config,write,warned", [
    ("v6.6", "tdp", ev.MovCr4(0xA0), "(0x80;"),          # L1's PGE alone: KVM's by emulation
    ("v6.6", "tdp", ev.MovCr4(0x400A0), ""),             # with OSXSAVE: exits
    ("v6.6", "tdp", ev.MovCr0(WP), ""),                  # CR0.WP: KVM's route is equivalent
    ("v6.6", "nested-ept", ev.MovCr4(0xA0), "(0x80;"),   # L1 under nested-ept
    ("v6.6", "shadow", ev.MovCr4(0xA0), ""),             # without EPT KVM owns PGE
    ("v6.6", "nested-npt", ev.MovCr4(0xA0), ""),         # SVM: not VMX's guest-owned bits
])
def test_a_counterexample_says_when_kvm_may_never_see_its_cr4_write(policy, config, write,
                                                                     warned):
    """The model hands L1's MOV CR4 to KVM; on an EPT host one that changes only guest-owned
    bits does not exit (KVM runs it only through its emulator), and the prove output says so.
    L2's runs on the hardware (the test above): no caveat."""
    events = (ev.GuestPteWrite(0x1000), write)
    t = trace.Trace(policy, config, LONG_MODE, events, "test")
    said = caveats(simulate.run(t, POLICIES[policy], stop_at_violation=False))
    assert [c.split(":")[0] for c in said] == (["event 1"] if warned else [])
    assert not warned or warned in said[0]


def test_no_caveat_for_a_write_the_model_ran_on_the_hardware():
    t = trace.Trace("v6.6", "nested-ept", LONG_MODE,
                    (ENTRY, ev.GuestPteWrite(0x3000), ev.MovCr4(0xA0)), "test")
    assert caveats(simulate.run(t, POLICIES["v6.6"], stop_at_violation=False)) == []
