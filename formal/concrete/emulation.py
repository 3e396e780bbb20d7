"""Accesses KVM emulates: its software walker (paging_tmpl.h walk_addr_generic, with
permission_fault) checks a guest access against the paging mode and rights that the walk MMU's
cached cpu role implies, where the processor would use the current registers.

After each guest entry the replay probes the guest's tables with a fixed matrix of accesses an
emulated instruction's memory operand could make (every access kind, user and supervisor,
EFLAGS.AC either way for supervisor data accesses, PKRU giving key 0 no rights, no write right
or all rights) on three pages: the watched page (user, writable), a supervisor read-only page
and a user execute-disable page.  The first access whose outcome (the translation, or the #PF
error code) differs between KVM's walk and the architecture's is a confirmed metadata (or
role) violation: KVM would emulate the access against rules the guest no longer has.

The cpu role becomes registers field by field (mmu.h BUILD_MMU_ROLE_ACCESSOR: cr0_wp and
efer_nx from the base role; cr4_pse, cr4_smep, cr4_smap, cr4_pke, cr4_la57 and efer_lma from
the extended role; the level gives PAE), and update_permission_bitmask / update_pkru_bitmask
(mmu.c) apply the SDM's rules to those bits, as `formal.concrete.paging.walk` does.  Bits of the
role that no walk reads (smm, guest_mode, ad_disabled) give no probe a different outcome: a
violation in those alone is not confirmed here.
"""

from __future__ import annotations

from dataclasses import dataclass

from formal.concrete.paging import Access, Kind, Memory, Mode, WalkResult, paging_mode, walk
from formal.concrete.pte import PTE_P, PTE_RW, PTE_US, PTE_XD
from formal.model import bits, roles
from formal.model.state import Regs

# The probe pages, beside the watched page (WATCHED_VA, user and writable) in its page table
# (formal.concrete.shadow.GuestWorld lays them out), with their leaf flags: a supervisor
# read-only page and a user execute-disable page (XD does not exist in a 32-bit PTE).
PROBE_SUPERVISOR_RO = 0x40_2000
PROBE_USER_XD = 0x40_6000
PROBES = ((PROBE_SUPERVISOR_RO, PTE_P), (PROBE_USER_XD, PTE_P | PTE_RW | PTE_US | PTE_XD))

# PKRU values the probes run with: key 0 (every probe page's) with all rights, with writes
# disabled, with access disabled (SDM §4.6.2: AD is bit 2k, WD bit 2k+1).
PKRUS = (0, 0b10, 0b01)


@dataclass(frozen=True)
class Probe:
    """An access an emulated instruction could make."""

    va: int
    access: Access
    ac: bool  # EFLAGS.AC
    pkru: int

    def __str__(self) -> str:
        return f"{self.access} of VA {self.va:#x} (EFLAGS.AC={int(self.ac)}, PKRU={self.pkru:#x})"


def probes(watched_va: int) -> list[Probe]:
    """The probe matrix, in the order it is tried."""
    out = []
    for va in (watched_va,) + tuple(p for p, _ in PROBES):
        for user in (False, True):
            for kind in (Kind.READ, Kind.WRITE, Kind.FETCH):
                for ac in ((False, True) if not user and kind is not Kind.FETCH else (False,)):
                    for pkru in PKRUS:
                        out.append(Probe(va, Access(kind, user), ac, pkru))
    return out


def walker_registers(cpu_role: int, cr3: int) -> Regs:
    """The registers whose walk KVM's walker performs under cpu_role (mmu.h
    BUILD_MMU_ROLE_ACCESSOR): CR0.WP and EFER.NX from the base role, CR4.PSE/SMEP/SMAP/PKE/LA57
    and EFER.LMA from the extended role, CR4.PAE from the level; a direct role walks nothing
    (paging off: kvm_calc_cpu_role)."""
    if roles.is_direct(cpu_role):
        return Regs(bits.CR0_PE, cr3, 0, 0)
    cr0 = bits.CR0_PE | bits.CR0_PG | (bits.CR0_WP if cpu_role & roles.CR0_WP else 0)
    ext = (
        (roles.EXT_CR4_PSE, bits.CR4_PSE), (roles.EXT_CR4_SMEP, bits.CR4_SMEP),
        (roles.EXT_CR4_SMAP, bits.CR4_SMAP), (roles.EXT_CR4_PKE, bits.CR4_PKE),
        (roles.EXT_CR4_LA57, bits.CR4_LA57))
    cr4 = sum(reg for role_bit, reg in ext if cpu_role & role_bit)
    if roles.level(cpu_role) >= roles.PT32E_ROOT_LEVEL:
        cr4 |= bits.CR4_PAE
    efer = bits.EFER_NX if cpu_role & roles.EFER_NX else 0
    if cpu_role & roles.EXT_EFER_LMA:
        efer |= bits.EFER_LME | bits.EFER_LMA
    return Regs(cr0, cr3, cr4, efer)


def _outcome(mem: Memory, regs: Regs, probe: Probe) -> tuple[int | None, int | None]:
    """(the GPA the access reaches or None, the #PF error code or None)."""
    if paging_mode(regs.cr0, regs.cr4, regs.efer) is Mode.NONE:
        return probe.va, None  # SDM §4.1.1: linear addresses are physical
    r: WalkResult = walk(mem, regs.cr0, regs.cr3, regs.cr4, regs.efer, probe.va, probe.access,
                         ac=probe.ac, pkru=probe.pkru)
    return (None if r.translation is None else r.translation.paddr), r.fault


@dataclass(frozen=True)
class Divergence:
    """An emulated access whose outcome under KVM's cached role differs from the
    architecture's."""

    probe: Probe
    kvm: tuple[int | None, int | None]
    arch: tuple[int | None, int | None]
    why: str  # the register bits on which the two disagree

    def describe(self, cpu_role: int) -> str:
        return (f"KVM's emulated {self.probe} {_text(self.kvm)} under cpu_role "
                f"{roles.describe(cpu_role)}; under the current registers the access "
                f"{_text(self.arch)}: {self.why}")


def _text(outcome: tuple[int | None, int | None]) -> str:
    gpa, fault = outcome
    if fault is not None:
        return f"faults (#PF error code {fault:#x})"
    return f"is allowed (GPA {gpa:#x})"


_NAMED = (("CR0.PG", 0, bits.CR0_PG), ("CR0.WP", 0, bits.CR0_WP), ("CR4.PSE", 2, bits.CR4_PSE),
          ("CR4.PAE", 2, bits.CR4_PAE), ("CR4.SMEP", 2, bits.CR4_SMEP),
          ("CR4.SMAP", 2, bits.CR4_SMAP), ("CR4.PKE", 2, bits.CR4_PKE),
          ("EFER.NX", 3, bits.EFER_NX), ("EFER.LMA", 3, bits.EFER_LMA))


def _why(kvm: Regs, now: Regs) -> str:
    words = ((kvm.cr0, now.cr0), None, (kvm.cr4, now.cr4), (kvm.efer, now.efer))
    diffs = [f"{name}={int(bool(words[i][1] & bit))} where the role has "
             f"{int(bool(words[i][0] & bit))}"
             for name, i, bit in _NAMED if (words[i][0] ^ words[i][1]) & bit]
    return ", ".join(diffs) or "the role and the registers differ in no bit named here"


def first_divergence(mem: Memory, regs: Regs, cpu_role: int,
                     watched_va: int) -> Divergence | None:
    """The first probe (probes order) whose outcome KVM's walker under cpu_role and the
    architecture under regs disagree on, or None.  Both walk the guest's current tables
    (CR3 from regs: kvm_read_cr3 / mmu->get_guest_pgd)."""
    kvm_regs = walker_registers(cpu_role, regs.cr3)
    # What the registers give the walk, as a role would name it (PKE only with LMA, ...):
    # only for saying which bits differ.
    wanted = walker_registers(roles.calc_cpu_role(regs.cr0, regs.cr4, regs.efer, False, False),
                              regs.cr3)
    if kvm_regs == wanted:
        # Every probe's outcome is a function of these bits (tests/test_emulation.py): the
        # walker's rules are the current registers' rules.
        return None
    for probe in probes(watched_va):
        kvm, now = _outcome(mem, kvm_regs, probe), _outcome(mem, regs, probe)
        if kvm != now:
            return Divergence(probe, kvm, now, _why(kvm_regs, wanted))
    return None
