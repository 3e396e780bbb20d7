"""Accesses KVM emulates under its cached cpu role (formal.concrete.emulation): the concrete
level's evidence for metadata violations, and the v5.12 reset-bit fix that the missing evidence
had hidden (docs/model.md, "Constants")."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from formal.cli import prove
from formal.cli.policies import replay
from formal.concrete.emulation import (
    PROBE_SUPERVISOR_RO,
    PROBE_USER_XD,
    _outcome,
    first_divergence,
    probes,
    walker_registers,
)
from formal.concrete.paging import Access, Kind, Perms, check_access
from formal.concrete.pte import PFERR_P, PFERR_PK, PFERR_W
from formal.concrete.shadow import GuestWorld, Mode
from formal.model import arch, bits, roles
from formal.model import events as ev
from formal.model.state import Regs
from formal.model.trace import Trace
from specs import POLICIES
from specs.v6_6 import V6_6
from tests.test_crosscheck import check

VA = arch.WATCHED_VA
LONG = Regs(cr0=0x8001_0033, cr3=0x1000, cr4=0x20, efer=0xD00)  # WP, PAE, NX, LMA


def world(cr3: int = 0x1000, mode: Mode = Mode.LEVEL4) -> GuestWorld:
    w = GuestWorld()
    w.add_pgd(cr3)
    w.format_root(cr3, mode)
    return w


def role_of(regs: Regs) -> int:
    return roles.calc_cpu_role(regs.cr0, regs.cr4, regs.efer, False, False)


# One register bit the cached role lacks (or has), and the first emulated access that shows it.
@pytest.mark.parametrize("now,cached,probe,kvm,arch_", [
    # SMAP set, role without it: KVM lets a supervisor read of a user page through.
    (Regs(LONG.cr0, 0x1000, 0x20 | bits.CR4_SMAP, 0xD00), LONG,
     "supervisor read of VA 0x400000 (EFLAGS.AC=0, PKRU=0x0)", None, PFERR_P),
    # SMEP set: a supervisor fetch from a user page.
    (Regs(LONG.cr0, 0x1000, 0x20 | bits.CR4_SMEP, 0xD00), LONG,
     "supervisor fetch of VA 0x400000 (EFLAGS.AC=0, PKRU=0x0)", None, PFERR_P | 0x10),
    # WP cleared, role with it: KVM faults a supervisor write to a read-only page.
    (Regs(LONG.cr0 & ~bits.CR0_WP, 0x1000, 0x20, 0xD00), LONG,
     "supervisor write of VA 0x402000 (EFLAGS.AC=0, PKRU=0x0)", PFERR_P | PFERR_W, None),
    # NX cleared: a fetch's #PF reports I/D only with SMEP or PAE paging and NXE (SDM §4.7).
    (Regs(LONG.cr0, 0x1000, 0x20, 0x500), LONG,
     "user fetch of VA 0x402000 (EFLAGS.AC=0, PKRU=0x0)", PFERR_P | 0x4 | 0x10, PFERR_P | 0x4),
    # PKE set: PKRU.WD for key 0 forbids a user... first a supervisor write with WP=1.
    (Regs(LONG.cr0, 0x1000, 0x20 | bits.CR4_PKE, 0xD00), LONG,
     "supervisor read of VA 0x400000 (EFLAGS.AC=0, PKRU=0x1)", None, PFERR_P | PFERR_PK),
])
def test_the_first_divergent_probe_names_the_stale_bit(now, cached, probe, kvm, arch_):
    d = first_divergence(world().mem, now, role_of(cached), VA)
    assert d is not None
    assert (str(d.probe), d.kvm[1], d.arch[1]) == (probe, kvm, arch_)


def test_no_divergence_when_the_role_is_current():
    for regs in (LONG, Regs(0x8001_0033, 0x1000, 0x20 | bits.CR4_SMAP | bits.CR4_PKE, 0xD00),
                 Regs(0x8000_0011, 0x1000, 0x10, 0)):
        assert first_divergence(world().mem, regs, role_of(regs), VA) is None


def legal(cr0: int, cr4: int, efer: int) -> Regs:
    """EFER.LMA = LME && CR0.PG (SDM §9.8.5); IA-32e mode keeps CR4.PAE."""
    lma = efer & bits.EFER_LME and cr0 & bits.CR0_PG
    efer = efer & ~bits.EFER_LMA | (bits.EFER_LMA if lma else 0)
    return Regs(cr0, 0x1000, cr4 | (bits.CR4_PAE if lma else 0), efer)


REGS = st.builds(legal, st.sampled_from([0x8001_0033, 0x8000_0033, 0x33, 0x8001_0031]),
                 st.integers(0, 0x7F_FFFF).map(lambda c: c & 0x30_00B0),
                 st.sampled_from([0xD00, 0x500, 0x900, 0x100, 0x0, 0x800, 0xC00]))


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(REGS)
def test_every_probe_depends_only_on_the_bits_a_role_names(regs):
    """first_divergence skips the probes when the role's registers equal the current ones as a
    role names them: every probe then has the same outcome (the skip is exact)."""
    mode = Mode.LEVEL4 if regs.efer & bits.EFER_LMA else \
        Mode.PAE if regs.cr4 & bits.CR4_PAE else Mode.BITS32
    mem = world(mode=mode).mem
    named = walker_registers(role_of(regs), regs.cr3)
    for p in probes(VA):
        assert _outcome(mem, named, p) == _outcome(mem, regs, p), p


@pytest.mark.parametrize("kind,user,pkru,wp,want", [
    (Kind.READ, True, 0b01, True, PFERR_P | PFERR_PK | 0x4),  # AD: no data access
    (Kind.WRITE, True, 0b10, False, PFERR_P | PFERR_PK | PFERR_W | 0x4),  # WD: user writes
    (Kind.WRITE, False, 0b10, False, None),  # WD: a supervisor write only with CR0.WP=1
    (Kind.WRITE, False, 0b10, True, PFERR_P | PFERR_PK | PFERR_W),
    (Kind.FETCH, True, 0b01, True, None),  # fetches are exempt
    (Kind.READ, True, 0b0100, True, None),  # another key's bits
])
def test_protection_keys_deny_data_accesses_to_user_pages(kind, user, pkru, wp, want):
    """SDM §4.6.2, with CR4.PKE=1 and IA-32e paging, key 0."""
    cr0 = bits.CR0_PG | (bits.CR0_WP if wp else 0)
    perms = Perms(writable=True, user=True, xd=False)
    got = check_access(perms, cr0, bits.CR4_PAE | bits.CR4_PKE, bits.EFER_LMA | bits.EFER_NX,
                       Access(kind, user), pkru=pkru, pkey=0)
    assert got == want
    # Without IA-32e mode, or for a supervisor page, keys do not apply.
    assert check_access(perms, cr0, bits.CR4_PAE | bits.CR4_PKE, 0, Access(kind, user),
                        pkru=pkru) is None or kind is not Kind.FETCH and not perms.writable
    assert check_access(Perms(True, False, False), cr0, bits.CR4_PAE | bits.CR4_PKE,
                        bits.EFER_LMA, Access(kind, False), pkru=pkru) is None


def test_the_probe_pages_are_mapped_in_every_mode():
    for mode in (Mode.LEVEL4, Mode.PAE, Mode.BITS32):
        cr0 = bits.CR0_PG | bits.CR0_WP
        cr4 = 0 if mode is Mode.BITS32 else bits.CR4_PAE
        efer = bits.EFER_LME | bits.EFER_LMA | bits.EFER_NX if mode is Mode.LEVEL4 else 0
        mem = world(mode=mode).mem
        regs = Regs(cr0, 0x1000, cr4, efer)
        ro = _outcome(mem, regs, probes(PROBE_SUPERVISOR_RO)[0])
        assert ro[1] is None  # a supervisor read of the read-only page
        user_write = next(p for p in probes(PROBE_SUPERVISOR_RO)
                          if p.access == Access(Kind.WRITE, True))
        assert _outcome(mem, regs, user_write)[1] == PFERR_P | PFERR_W | 0x4
        xd_fetch = next(p for p in probes(PROBE_USER_XD) if p.access == Access(Kind.FETCH, True))
        # XD exists with PAE and 4-level paging; without NXE it is a reserved bit (SDM §4.6.2)
        assert (_outcome(mem, regs, xd_fetch)[1] is None) == (mode is Mode.BITS32)


class NoSmapReset(V6_6):
    """v6.6 with CR4.SMAP dropped from the MMU's reset bits (the issue's mutant)."""

    name = "v6.6-no-smap-reset"
    cr4_reset_bits = V6_6.cr4_reset_bits & ~bits.CR4_SMAP


@pytest.fixture
def no_smap_reset(monkeypatch):
    monkeypatch.setitem(POLICIES, NoSmapReset.name, NoSmapReset)
    return NoSmapReset.name


@pytest.mark.parametrize("config", ["tdp", "shadow"])
def test_a_lost_smap_reset_is_a_metadata_refutation_the_replay_confirms(no_smap_reset, config):
    proof = prove.run(prove.Obligation(no_smap_reset, config, ("metadata",), "bmc", 2))
    cex = proof.counterexample
    assert (proof.result.verdict, proof.result.bound) == ("refuted", 1), proof.result.reason
    assert cex is not None and cex.violation[:2] == (0, "metadata")
    (e,) = cex.trace.events
    assert isinstance(e, ev.MovCr4) and (e.value ^ cex.trace.initial.cr4) & bits.CR4_SMAP
    assert cex.replay is not None and cex.replay.status is prove.ReplayStatus.CONFIRMED
    out = cex.replay.outcome
    assert out.event == 0 and "KVM's emulated supervisor read of VA 0x400000" in out.message
    assert "CR4.SMAP=" in out.message


@pytest.mark.parametrize("config", ["tdp", "shadow"])
def test_v6_6_has_no_short_metadata_violation(config):
    proof = prove.run(prove.Obligation("v6.6", config, ("metadata",), "bmc", 2))
    assert proof.result.label == "bounded(2)"


@pytest.mark.parametrize("config", ["tdp", "shadow"])
def test_the_levels_agree_on_the_lost_smap_reset(no_smap_reset, config):
    """The cross-check (tests/test_crosscheck.py) on the mutant, where metadata is violated:
    SMAP toggles among CR3 switches and PTE writes."""
    cr4s = st.sampled_from([0x20 | bits.CR4_SMAP, 0x20, 0x20 | bits.CR4_SMEP | bits.CR4_SMAP,
                            0x20 | bits.CR4_PKE])
    step = st.one_of(st.builds(ev.MovCr4, cr4s), st.builds(ev.MovCr3, st.sampled_from(
        [0x1000, 0x2000])), st.builds(ev.GuestPteWrite, st.sampled_from([0x1000, 0x2000])),
        st.builds(ev.MovCr0, st.sampled_from([0x8001_0033, 0x8000_0033])))
    violated = 0

    @settings(max_examples=40, deadline=None, derandomize=True, database=None)
    @given(st.lists(step, min_size=1, max_size=6))
    def run(events):
        nonlocal violated
        violated += check(no_smap_reset, config, events, LONG) is not None

    run()
    assert violated >= 5  # 6 of the 40 derandomized sequences


def test_v5_12_resets_on_smap_and_pke():
    """x86.c v5.11-v5.13 kvm_post_set_cr4's mmu_role_bits (8d214c481611): the one-event PKE
    toggle the issue found is no violation, and the shortest shadow violation is F2."""
    t = Trace("v5.12", "shadow", Regs(0x8005_0033, 0x1000, 0x72_2630, 0xD00),
              (ev.MovCr4(0x32_0030),))
    assert not replay(t).violated
    assert POLICIES["v5.12"].cr4_reset_bits & (bits.CR4_SMAP | bits.CR4_PKE) \
        == bits.CR4_SMAP | bits.CR4_PKE
