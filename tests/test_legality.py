"""The SDM's legality rules (docs/design.md §2): an illegal value is a fault in the trace, never a
crash, and leaves the state alone."""

from __future__ import annotations

from dataclasses import replace

import pytest

from formal.model import arch
from formal.model import events as ev
from formal.model.state import Regs
from tests.conftest import LONG_MODE, machine

PCID_ON = Regs(cr0=0x8001_0033, cr3=0x1001, cr4=0x20020, efer=0xD00)
LEGACY_PAE = Regs(cr0=0x8001_0033, cr3=0x1000, cr4=0x20, efer=0x800)
NO_PAGING = Regs(cr0=0x11, cr3=0x1000, cr4=0x0, efer=0x100)
LA57_OFF = LONG_MODE

CASES = [
    ("pcide_needs_ia32e", LEGACY_PAE, ev.MovCr4(0x20020),
     "#GP: setting CR4.PCIDE outside IA-32e mode"),
    ("pcide_needs_cr3_pcid_zero", Regs(0x8001_0033, 0x1008, 0x20, 0xD00), ev.MovCr4(0x20020),
     "#GP: setting CR4.PCIDE with CR3[11:0] != 0"),
    ("clear_pg_with_pcide", PCID_ON, ev.MovCr0(0x0001_0033),
     "#GP: clearing CR0.PG while CR4.PCIDE=1"),
    ("cr3_noflush_without_pcide", LONG_MODE, ev.MovCr3(0x8000_0000_0000_2000),
     "#GP: CR3 bit 63 is reserved while CR4.PCIDE=0"),
    ("cr3_above_maxphyaddr", LONG_MODE, ev.MovCr3(0x0010_0000_0000_2000),
     "#GP: CR3 bits above MAXPHYADDR set"),
    ("clear_pae_in_long_mode", LONG_MODE, ev.MovCr4(0x0),
     "#GP: clearing CR4.PAE in IA-32e mode"),
    ("toggle_la57_in_long_mode", LA57_OFF, ev.MovCr4(0x1020),
     "#GP: toggling CR4.LA57 in IA-32e mode"),
    ("cr4_reserved", LONG_MODE, ev.MovCr4(0x20 | 1 << 30),
     "#GP: reserved CR4 bits 0x40000000 set"),
    ("cr0_high_bits", LONG_MODE, ev.MovCr0(1 << 32 | 0x8001_0033),
     "#GP: CR0[63:32] are reserved"),
    ("pg_without_pe", NO_PAGING, ev.MovCr0(0x8000_0010), "#GP: CR0.PG=1 requires CR0.PE=1"),
    ("nw_without_cd", LONG_MODE, ev.MovCr0(0xA001_0033), "#GP: CR0.NW=1 requires CR0.CD=1"),
    ("long_mode_needs_pae", NO_PAGING, ev.MovCr0(0x8000_0011),
     "#GP: enabling paging with EFER.LME=1 needs CR4.PAE=1"),
    ("lme_change_while_paging", LEGACY_PAE, ev.WrmsrEfer(0x900),
     "#GP: changing EFER.LME while CR0.PG=1"),
    ("efer_reserved", LONG_MODE, ev.WrmsrEfer(0xD00 | 1 << 20),
     "#GP: reserved EFER bits 0x100000 set"),
    ("invpcid_type_4", LONG_MODE, ev.Invpcid(4, 0, 0), "#GP: INVPCID type 4 is not 0-3"),
    ("invpcid_pcid_without_pcide_type0", LONG_MODE, ev.Invpcid(0, 1, 0x400000),
     "#GP: INVPCID with PCID != 0 while CR4.PCIDE=0"),
    ("invpcid_pcid_without_pcide_type1", LONG_MODE, ev.Invpcid(1, 1, 0),
     "#GP: INVPCID with PCID != 0 while CR4.PCIDE=0"),
    ("invpcid_noncanonical", LONG_MODE, ev.Invpcid(0, 0, 0x0000_8000_0000_0000),
     "#GP: INVPCID individual-address with a non-canonical address"),
    ("invlpg_above_4g_under_pae", LEGACY_PAE, ev.Invlpg(0x1_0040_0000),
     "invalid: INVLPG's address has 32 bits outside IA-32e mode"),
    ("invlpg_above_4g_without_paging", NO_PAGING, ev.Invlpg(0x1_0040_0000),
     "invalid: INVLPG's address has 32 bits outside IA-32e mode"),
    ("invpcid_pcid_too_wide", PCID_ON, ev.Invpcid(1, 0x1000, 0),
     "#GP: INVPCID descriptor bits 63:12 are reserved"),
    ("rsm_outside_smm", LONG_MODE, ev.Rsm(), "#UD: RSM outside SMM"),
    ("set_sregs_lma_mismatch", LONG_MODE, ev.SetSregs(0x8001_0033, 0x1000, 0x20, 0x900),
     "-EINVAL: invalid: EFER.LMA must equal EFER.LME && CR0.PG"),
]


@pytest.mark.parametrize("name,regs,event,fault", CASES, ids=[c[0] for c in CASES])
def test_illegal_event_faults_and_changes_nothing(policy_name, name, regs, event, fault):
    m = machine(policy_name, regs=regs)
    before = m.v.clone()
    rec = m.step(0, event)
    assert rec.fault == fault
    assert rec.violations == [] and rec.actions == []
    assert m.v == before


NTR = ev.VmEntry(0x8001_0033, 0x1000, 0x20, 0xD00, 0x5000, 0)  # with vpid replaced per case

NESTED_CASES = [
    ("invvpid_vpid_too_wide_type2", "nested-ept", ev.Invvpid(2, 0x10000, 0),
     "VMfail: INVVPID descriptor bits 63:16 are reserved"),
    ("invvpid_vpid_too_wide_type1", "nested-ept", ev.Invvpid(1, 0x1_0001, 0),
     "VMfail: INVVPID descriptor bits 63:16 are reserved"),
    ("invvpid_vpid0_type1", "nested-ept", ev.Invvpid(1, 0, 0), "VMfail: INVVPID with VPID 0"),
    ("invvpid_type_4", "nested-ept", ev.Invvpid(4, 1, 0), "VMfail: INVVPID type 4 is not 0-3"),
    ("vmentry_vpid_too_wide", "nested-ept", replace(NTR, vpid=0x10000),
     "VM-entry failure: VPID is 16 bits"),
    ("vmrun_asid0", "nested-npt", NTR, "VMEXIT_INVALID: VMRUN with ASID 0"),
    ("invlpga_asid_wider_than_ecx", "nested-npt", ev.Invlpga(0x400000, 0x1_0000_0001),
     "invalid: INVLPGA's ASID is ECX, 32 bits"),
]


@pytest.mark.parametrize("name,config,event,fault", NESTED_CASES,
                         ids=[c[0] for c in NESTED_CASES])
def test_illegal_nested_event_faults_and_changes_nothing(name, config, event, fault):
    m = machine("v6.6", config)
    before = m.v.clone()
    rec = m.step(0, event)
    assert rec.fault == fault
    assert rec.violations == [] and rec.actions == []
    assert m.v == before


@pytest.mark.parametrize("config,event", [
    ("nested-ept", ev.Invvpid(2, 0xFFFF, 0)), ("nested-ept", ev.Invvpid(1, 0xFFFF, 0)),
    ("nested-ept", NTR), ("nested-npt", replace(NTR, vpid=0xFFFF)),
    ("nested-npt", ev.Invlpga(0x400000, 0xFFFF_FFFF))])
def test_legal_nested_neighbours_do_not_fault(config, event):
    assert machine("v6.6", config).step(0, event).fault is None


@pytest.mark.parametrize("event", [ev.MovCr4(0x20), ev.MovCr3(0x8000_0000_0000_1001)])
def test_legal_neighbours_of_the_rules_do_not_fault(event):
    rec = machine("v6.6", regs=PCID_ON).step(0, event)
    assert rec.fault is None


@pytest.mark.parametrize("regs,event", [
    (LONG_MODE, ev.Invlpg(0x1_0040_0000)), (LEGACY_PAE, ev.Invlpg(0xFFFF_F000)),
    # INVPCID type 0 uses all 64 bits of its address in every mode (SDM Vol. 2, INVPCID).
    (LEGACY_PAE, ev.Invpcid(0, 0, 0x1_0040_0000))])
def test_addresses_above_4g_are_legal_where_an_instruction_can_name_them(regs, event):
    rec = machine("v6.6", "shadow", regs).step(0, event)
    assert rec.fault is None


def test_invlpga_above_4g_outside_long_mode_is_invalid():
    m = machine("v6.6", "nested-npt", LEGACY_PAE)
    before = m.v.clone()
    rec = m.step(0, ev.Invlpga(0x1_0040_0000, 1))
    assert rec.fault == "invalid: INVLPGA's address is EAX, 32 bits, outside long mode"
    assert rec.actions == [] and m.v == before
    assert machine("v6.6", "nested-npt").step(0, ev.Invlpga(0x1_0040_0000, 1)).fault is None


def test_pcide_enable_is_legal_in_long_mode_with_pcid_zero():
    rec = machine("v6.6").step(0, ev.MovCr4(0x20020))
    assert rec.fault is None and rec.regs.cr4 == 0x20020


def test_noncanonical_invlpg_is_a_nop_not_a_fault():
    rec = machine("v6.6").step(0, ev.Invlpg(0x0000_8000_0000_0000))
    assert rec.fault is None and rec.actions == []


# INIT keeps CR0.CD and CR0.NW (SDM Vol. 3A Table 10-1, note 2), on the architecture's side and
# in KVM's kvm_vcpu_reset since "KVM: x86: Preserve guest's CR0.CD/NW on INIT" (v5.15).
CD_NW = 0x6000_0000


@pytest.mark.parametrize("cr0,after", [(LONG_MODE.cr0, 0x10),
                                       (LONG_MODE.cr0 | CD_NW, 0x6000_0010),
                                       (LONG_MODE.cr0 | 1 << 30, 0x4000_0010)])
def test_init_keeps_cd_and_nw_and_clears_the_rest(policy_name, cr0, after):
    assert arch.init_regs(replace(LONG_MODE, cr0=cr0)) == Regs(after, 0, 0, 0)
    for config in ("shadow", "tdp"):
        m = machine(policy_name, config, replace(LONG_MODE, cr0=cr0))
        rec = m.step(0, ev.Init())
        assert rec.fault is None and m.v.regs == Regs(after, 0, 0, 0)


def test_reset_sets_cd_and_nw():
    m = machine("v6.7", "tdp")
    m.policy.kvm_vcpu_reset(m.v, init_event=False)
    assert m.v.regs.cr0 == 0x6000_0010
