"""`flushproof replay` and formal.concrete.replay: the corpus's stale accesses observed on the
concrete
shadow MMU, pinned to the addresses the concretization chooses (formal.concrete.shadow.GuestWorld:
data
pages from 0x2000000 in the order the trace names the pgds, a fresh page per PTE write)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from formal.cli.main import main
from formal.cli.policies import replay
from formal.concrete.paging import Mode
from formal.concrete.shadow import GuestWorld, concrete_policy
from formal.concrete.tlb_oracle import TlbOracle
from formal.model import arch, trace
from formal.model import events as ev
from formal.model.machine import Machine, diff
from formal.model.state import CONFIGS, Copies, HwTlb, Regs, Vcpu
from specs import POLICIES
from tests.conftest import LONG_MODE, TRACES

EXPECTED = json.loads((TRACES / "expected.json").read_text())


def replay_file(name: str, policy: str | None = None, config: str | None = None):
    return replay(trace.override(trace.load(TRACES / name), policy, config))


def test_lai_sequence_shows_the_old_page_through_the_reused_unsync_root():
    # pgd b=0x2000 (initial CR3) maps 0x2000000, a=0x1000 maps 0x2001000; the PTE write at
    # event 1 points b at 0x2002000.  At event 4 KVM reuses b's unsync root: the guest reads
    # b's old page, which PCID 0 lost at the flushing MOV CR3 of event 0.
    out = replay_file("lai-jiangshan.json", "509bfe3-no-pcide-free")
    assert out.violated and out.event == 4
    assert out.observed == 0x200_0000
    assert out.allowed == (0x200_2000, 0x200_1000)  # b's fresh walk; a's entry kept by NOFLUSH
    assert out.message == (
        "event 4, L1 user read of VA 0x400000 returned GPA 0x2000000 (via root pgd=0x2000 "
        "role=level=4,nx,wp); the architecture allows only GPA 0x2002000 or 0x2001000 since "
        "MOV CR3 with CR4.PCIDE=0 at event 0")


def test_prev_root_of_same_pcid_on_v5_12():
    out = replay_file("prev-root-same-pcid.json", "v5.12")
    assert (out.event, out.observed, out.allowed) == (3, 0x200_0000, (0x200_2000, 0x200_1000))
    assert out.message.endswith("since MOV CR3 (PCID 0x1) at event 2")
    assert "via root pgd=0x3001" in out.message


def test_pv_tlb_flush_on_v5_12():
    out = replay_file("pv-tlb-flush.json", "v5.12")
    assert (out.event, out.observed, out.allowed) == (1, 0x200_0000, (0x200_1000,))
    assert out.message.endswith("since PV TLB flush (KVM_VCPU_FLUSH_TLB) at event 1")


def test_l2_cr3_equal_to_an_earlier_ncr3_runs_l2_on_that_npt_root():
    # F5: L1's NPT at 0x5000 maps L2's pages at offset 0, the one at 0x6000 (the second table
    # named) at EPT_TABLE_STEP.  After KVM's MOV CR3 0x5000 L2 reads through 0x5000's root.
    out = replay_file("npt-l2-cr3-hits-ncr3-root.json", "v6.6")
    assert (out.event, out.observed, out.allowed) == (3, 0x200_2000, (0x1_0200_2000,))
    assert "via shadow EPT/NPT root pgd=0x5000" in out.message
    # Before v5.18 kvm_mmu_new_pgd searches with the direct TDP role: no guest_mmu root matches.
    assert not replay_file("npt-l2-cr3-hits-ncr3-root.json", "v5.17").violated
    # On VMX the hardware executes L2's MOV CR3; KVM's guest_mmu root stays EPTP 0x6000's.
    assert not replay_file("npt-l2-cr3-hits-ncr3-root.json", "v6.6", "nested-ept").violated


CELLS = [(name, policy) for name in sorted(EXPECTED) for policy in POLICIES]


@pytest.mark.parametrize("name,policy", CELLS, ids=[f"{n}-{p}" for n, p in CELLS])
def test_corpus_replays_to_its_verdict(name, policy):
    """A trace that holds replays with no forbidden access; a violated one shows the forbidden
    access at the event the model names."""
    out = replay_file(name, policy)
    want = EXPECTED[name][policy]
    if want == "holds":
        assert not out.violated, out.message
    else:
        assert out.event == int(want.split("@")[1])


def test_a_hardware_record_under_a_new_tag_is_diffed_against_a_blank_record():
    a = Vcpu(regs=Regs(0x8001_0033, 0x1000, 0x20, 0xD00))
    b = a.clone()
    b.hw[0].append(HwTlb(tag=0x5, local=Copies(ran=True, ran_tables=0x3000)))
    b.hw[1].append(HwTlb(tag=0x1008, local=Copies(old=True, stale=True)))
    assert diff(a, b) == [
        "hw[L1][tag 0x5].last_entry: none -> tables=0x3000 stale=0",
        "hw[L2][tag 0x1008]: clean -> old stale=1",
    ]


def test_cli_replay_exit_codes_and_json(capsys):
    assert main(["replay", str(TRACES / "lai-jiangshan.json")]) == 1
    assert capsys.readouterr().out.startswith("FORBIDDEN: event 4, L1 user read")
    for name in EXPECTED:
        if all(v == "holds" for v in EXPECTED[name].values()):
            assert main(["replay", str(TRACES / name)]) == 0
    assert main(["replay", str(TRACES / "pv-tlb-flush.json"), "--policy", "v5.13"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("PASS: no forbidden access")
    assert main(["replay", str(TRACES / "pv-tlb-flush.json"), "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert (doc["verdict"], doc["event"], doc["observed"], doc["allowed"]) == \
        ("forbidden", 1, "0x2000000", ["0x2001000"])
    assert doc["page"] == {"size": "4K", "global": False, "user": True, "writable": True,
                           "nx": False}


def test_cli_replay_bad_input_exits_3(tmp_path, capsys):
    assert main(["replay", "/nonexistent.json"]) == 3
    bad = tmp_path / "t.json"
    bad.write_text(json.dumps({"format": "flushproof-trace/1", "policy": "v5.18",
                               "config": "shadow", "initial": {"cr0": "0x80010033"},
                               "events": []}))
    assert main(["replay", str(bad)]) == 3
    assert "initial: missing field 'cr3'" in capsys.readouterr().err


def test_root_frame_serves_every_paging_mode():
    """One pgd's tables give the same data page in 4-level, PAE and 32-bit paging once the root
    frame is laid out for the mode (formal.concrete.shadow.GuestWorld.format_root)."""
    world = GuestWorld()
    world.add_pgd(0x1000)
    page = world.mem.read(world.tables[0x1000].leaf) & ~0xFFF
    for mode, regs in [(Mode.LEVEL4, LONG_MODE), (Mode.PAE, Regs(0x8000_0033, 0x1000, 0x20, 0)),
                       (Mode.BITS32, Regs(0x8000_0033, 0x1000, 0x0, 0)),
                       (Mode.PAE, Regs(0x8000_0033, 0x1FE0, 0x20, 0))]:
        world.format_root(regs.cr3, mode)
        fresh = TlbOracle(world.mem, regs).fresh(0x40_0000)
        assert fresh is not None and fresh.paddr == page, (mode, regs)
    # SDM §4.4.1: the PAE PDPT of CR3 0x1FE0 is at 0x1FE0, its PDPTE 0 points at the frame's PD.
    assert world.mem.read(0x1FE0) == world.tables[0x1000].pd | 1


# PAE paging (LONG_MODE with EFER=0) on CR3 0x1020: the PDPT is at CR3[31:5] = 0x1020.
PAE_1020 = Regs(cr0=0x8001_0033, cr3=0x1020, cr4=0x20, efer=0)


@pytest.mark.parametrize("laid_out", [True, False], ids=["pdpt-at-0x1020", "empty-0x1020"])
def test_pae_shadow_root_is_built_from_the_pdptes_at_cr3_31_5(laid_out):
    """mmu.c mmu_alloc_shadow_roots builds a PAE root from the PDPTEs x86.c load_pdptrs read at
    CR3[31:5] (SDM §4.4.1): with a present PDPTE 0 only at the start of the frame (0x1000) and
    none at 0x1020, the root maps nothing for the watched page."""
    world = GuestWorld()
    world.add_pgd(0x1000)
    world.format_root(0x1000, Mode.PAE)
    if laid_out:
        world.format_root(0x1020, Mode.PAE)
    policy = concrete_policy(POLICIES["v6.6"])(CONFIGS["shadow"], world)
    m = Machine(policy, PAE_1020)
    m.start()
    pdpte0 = world.tables[0x1000].pd | 1 if laid_out else 0
    assert policy.pdptrs == {(0x1020, m.v.mmu.root.role): (pdpte0, 0, 0, 0)}
    assert [seen.gpa for seen in policy.observable(m.v)] == ([0x200_0000] if laid_out else [])


@pytest.mark.parametrize("config", ["shadow", "nested-shadow"])
def test_pae_cr3_with_bits_11_5_set_replays_without_a_forbidden_access(config):
    """The replay's guest lays its PDPT out at CR3[31:5] before MOV CR3 0x1020 loads it: the
    shadow root and the oracle's walk agree."""
    t = trace.Trace("v6.6", config, replace(LONG_MODE, efer=0), (ev.MovCr3(0x1020),))
    out = replay(t)
    assert not out.violated and out.events_run == 1


@pytest.mark.parametrize("config", ["tdp", "nested-ept"])
def test_tdp_with_paging_off_reads_physical_memory_not_the_hardware_tlb(config):
    """With the guest's paging off (SMM entry clears CR0.PG) the hardware walking the guest's
    tables translates nothing: the access is physical (SDM §4.1.1) and the TLB, which caches only
    translations through paging structures (§4.10.2.3), is not used; what it cached is used
    again once paging is back on.  rfc-2022-02 flushes nothing from RSM to the next SMI."""
    t = trace.Trace("rfc-2022-02", config, LONG_MODE, (ev.Smi(), ev.Rsm(), ev.Smi()))
    assert not replay(t).violated
    world = GuestWorld()
    world.add_pgd(LONG_MODE.cr3)
    page = world.mem.read(world.tables[LONG_MODE.cr3].leaf) & ~0xFFF
    policy = concrete_policy(POLICIES[t.policy])(CONFIGS[config], world)
    m = Machine(policy, LONG_MODE)
    m.start()
    gpas = []
    for i, e in enumerate(t.events):
        m.step(i, e)
        gpas.append([seen.gpa for seen in policy.observable(m.v)])
    assert page == 0x200_0000
    assert gpas == [[arch.WATCHED_VA], [page], [arch.WATCHED_VA]]
    here = policy.hardware_context(m.v)
    assert [s.gpa for s in policy.hw[here].held(0)] == [page]  # kept for paging on again
