"""The architecture's rules: legality of each event (#GP and friends) and the TLB invalidations
it requires (Intel SDM Vol. 3A §4.10.4.1, AMD APM Vol. 2 §5.5; docs/design.md §2).

`step` computes, from the state before an event, what the architecture says the event does: a
fault, or the registers afterwards and the invalidations required.  It never looks at KVM's
state; the policy under verification must reach the same registers on its own.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from formal.model import bits
from formal.model import events as ev
from formal.model.state import Config, Page, Regs, Vcpu, Vendor
from formal.model.values import ite, neg, on, truth

# The one guest virtual page the abstract model watches: global or not (Vcpu.page_global), of
# 4 KiB, 2 MiB, 4 MiB or 1 GiB (Vcpu.page_large, page_4m, page_1g), user or supervisor,
# writable or read-only, executable or not (Vcpu.page_user, page_writable, page_nx).
# Invalidations of other pages leave it alone; guest_pte_write edits the entry that maps it.
WATCHED_VA = 0x400000
PAGE_MASK = ~(bits.PAGE_4K - 1)
# A 2 MiB page's linear address bits (SDM Vol. 3A §4.4.2, §4.5.4: a PDE with PS=1), a 4 MiB
# page's (§4.3: a 32-bit PDE with PS=1 and CR4.PSE=1) and a 1 GiB page's (§4.5.4: a PDPTE with
# PS=1); WATCHED_VA is 4 MiB aligned, so a 4 KiB hit is a hit of its 2 MiB and 4 MiB pages too,
# and one of those a hit of its 1 GiB page (the first one, 0-0x3FFFFFFF).
LARGE_PAGE_MASK = ~(bits.PAGE_2M - 1)
PAGE_4M_MASK = ~(bits.PAGE_4M - 1)
PAGE_1G_MASK = ~(bits.PAGE_1G - 1)
# The watched page's sizes, by their names in a trace's page field.
PAGE_SIZES = {"4K": bits.PAGE_4K, "2M": bits.PAGE_2M, "4M": bits.PAGE_4M, "1G": bits.PAGE_1G}


def global_translation(v: Vcpu) -> object:
    """SDM Vol. 3A §4.10.2.4: a translation cached now is global if the PTE mapping the page has
    G=1 and CR4.PGE=1; a global translation may be used under any PCID.  The model reads PGE
    now, not when the translation was cached: only a change of PGE invalidates everything
    (MOV CR4 toggling PGE), except SMI and RSM on Intel, which change CR4 without invalidating
    (docs/model.md "Global pages")."""
    return v.page_global & truth(v.regs.cr4 & bits.CR4_PGE)


def page_hit(va: object, large: object, huge: object = False, m4: object = False) -> object:
    """Whether an invalidation of the page containing va reaches the watched page's entries:
    va in the same 4 KiB page, or, if large holds (the entries are of a large page), in the
    same 2 MiB page, or, if huge or m4 holds as well (of a 1 GiB or a 4 MiB page), in the same
    1 GiB or 4 MiB page (huge and m4 count only with large).
    INVLPG invalidates every TLB entry of the page containing its address, the several entries
    a large page may be cached as included (SDM Vol. 2, INVLPG, note 1; Vol. 3A §4.10.2.3), and
    INVPCID individual-address likewise (Vol. 2, INVPCID, note 1); INVVPID individual-address
    invalidates the mappings that would be used to translate its address (Vol. 3C §30.3),
    which a large page's entry is; AMD's INVLPGA (APM Vol. 3) is read as INVLPG for another
    ASID."""
    in_1g = va & PAGE_1G_MASK == WATCHED_VA & PAGE_1G_MASK
    in_4m = va & PAGE_4M_MASK == WATCHED_VA
    return (va & PAGE_MASK == WATCHED_VA) \
        | (large & ((va & LARGE_PAGE_MASK == WATCHED_VA) | (huge & in_1g) | (m4 & in_4m)))


def page_bits(v: Vcpu) -> tuple[object, object, object]:
    """The watched page's size as page_hit and Inval.covers take it: (large, huge, m4)."""
    return v.page_large, v.page_1g, v.page_4m


def page_size(large: bool, huge: bool, m4: bool) -> int:
    """The size in bytes of a watched page with these attributes (Vcpu.page_large,
    Vcpu.page_1g, Vcpu.page_4m)."""
    if not large:
        return bits.PAGE_4K
    return bits.PAGE_1G if huge else bits.PAGE_4M if m4 else bits.PAGE_2M


def page_attributes(size: int) -> tuple[bool, bool, bool]:
    """(page_large, page_1g, page_4m) of a watched page of size bytes (one of PAGE_SIZES)."""
    return size != bits.PAGE_4K, size == bits.PAGE_1G, size == bits.PAGE_4M


def watching(regs: Regs, page: Page) -> Vcpu:
    """A vCPU with a copy of regs, watching a page of these attributes."""
    large, huge, m4 = page_attributes(page.size)
    return Vcpu(regs=replace(regs), page_global=page.global_, page_large=large, page_1g=huge,
                page_4m=m4, page_user=page.user, page_writable=page.writable,
                page_nx=page.nx)



class Globals(StrEnum):
    """What an invalidation does to global translations (SDM Vol. 3A §4.10.4.1)."""

    KEEP = "keep"  # spares them (MOV CR3, INVPCID types 0, 1 and 3, INVVPID type 3)
    BY_PCID = "by-pcid"  # treats them as the others: those of the PCIDs it covers
    ALL = "all"  # every PCID's (INVLPG)


def init_regs(old: Regs) -> Regs:
    """Register values after INIT (SDM Vol. 3A §10.1.1, Table 10-1; Table 9-1 in older
    editions): CR3 = CR4 = IA32_EFER = 0 and CR0 = 60000010H at power-up and RESET, but for
    INIT the table's note 2 says "The CD and NW flags are unchanged, bit 4 is set to 1, all
    other bits are cleared" (and the AMD APM agrees, per "KVM: x86: Preserve guest's CR0.CD/NW
    on INIT", <20210713163324.627647-47-seanjc@google.com>, v5.15)."""
    return Regs(cr0=bits.CR0_ET | old.cr0 & (bits.CR0_CD | bits.CR0_NW), cr3=0, cr4=0, efer=0)


@dataclass(frozen=True)
class Inval:
    """A TLB invalidation the architecture requires.

    vpid None = every VPID (all_but_vpid0 narrows that to INVVPID all-context), pcid None = every
    PCID, va None = every page; globals says what it does to global translations.
    """

    why: str
    vpid: int | None
    pcid: int | None = None
    va: int | None = None
    all_but_vpid0: bool = False
    globals: Globals = Globals.BY_PCID

    def covers(self, vpid: int, pcid: int, glob: object = False, large: object = False,
               huge: object = False, m4: object = False) -> object:
        """Does it cover the watched page's translation cached under tag (vpid, pcid), global
        if glob holds, as entries of a large page if large holds, a 1 GiB or 4 MiB one if huge
        or m4 holds as well (page_hit)?  A condition, not a branch: symbolic tags give one
        term."""
        hit = True
        if self.vpid is not None:
            hit = hit & (self.vpid == vpid)
        if self.all_but_vpid0:
            hit = hit & (vpid != 0)
        if self.globals is Globals.KEEP:
            hit = hit & neg(glob)
        if self.pcid is not None:
            same = self.pcid == pcid
            hit = hit & ((same | glob) if self.globals is Globals.ALL else same)
        if self.va is not None:
            hit = hit & page_hit(self.va, large, huge, m4)
        return hit


@dataclass(frozen=True)
class ArchStep:
    """What the architecture says an event does."""

    fault: str | None
    regs: Regs
    invals: tuple[Inval, ...] = ()


def pcid(regs: Regs) -> int:
    """SDM §4.10.1: the current PCID is CR3[11:0] with CR4.PCIDE=1, else 0."""
    return ite(regs.cr4 & bits.CR4_PCIDE, regs.cr3 & bits.CR3_PCID_MASK, 0)


def vpid(v: Vcpu) -> int:
    """The VPID of the running guest in L1's view: 0 for L1, vmcs12's VPID for L2."""
    return ite(v.guest_mode, v.vpid12, 0)


def tag(v: Vcpu) -> int:
    """The TLB tag of translations created now: VPID << 12 | PCID."""
    return vpid(v) << 12 | pcid(v.regs)


def tag_vpid(tag: int) -> int:
    """The VPID a tag (arch.tag) was made under."""
    return tag >> 12


def tag_pcid(tag: int) -> int:
    """The PCID a tag (arch.tag) was made under."""
    return tag & 0xFFF


# arch.tables with paging off: not a page-table address (those are page aligned).
NO_TABLES = 1


def tables(regs: Regs) -> int:
    """Which translations the guest makes: the page-table address in CR3 with paging on,
    NO_TABLES with paging off, where linear addresses are physical (SDM §4.1.1)."""
    return ite(regs.cr0 & bits.CR0_PG, regs.cr3 & bits.CR3_ADDR_MASK, NO_TABLES)


def long_mode(regs: Regs) -> bool:
    return regs.efer & bits.EFER_LMA != 0


def canonical(va: int) -> bool:
    """48-bit canonical form (SDM §3.3.7.1)."""
    top = va >> 47
    return top == 0 or top == (1 << 17) - 1


def _fault(v: Vcpu, why: str) -> ArchStep:
    return ArchStep(fault=why, regs=v.regs)


def cr0_error(cr0: int) -> str | None:
    """MOV CR0 checks that do not depend on the old value (SDM §2.5, MOV—Move to/from CR)."""
    if cr0 >> 32:
        return "#GP: CR0[63:32] are reserved"
    if cr0 & bits.CR0_PG and not cr0 & bits.CR0_PE:
        return "#GP: CR0.PG=1 requires CR0.PE=1"
    if cr0 & bits.CR0_NW and not cr0 & bits.CR0_CD:
        return "#GP: CR0.NW=1 requires CR0.CD=1"
    return None


def cr4_error(cr4: int) -> str | None:
    if cr4 & ~bits.CR4_DEFINED:
        return f"#GP: reserved CR4 bits {cr4 & ~bits.CR4_DEFINED:#x} set"
    return None


def cr3_reserved_error(cr3: int) -> str | None:
    if cr3 & ~bits.CR3_NOFLUSH & ~((1 << 52) - 1):
        return "#GP: CR3 bits above MAXPHYADDR set"
    return None


def efer_error(efer: int) -> str | None:
    if efer & ~bits.EFER_DEFINED:
        return f"#GP: reserved EFER bits {efer & ~bits.EFER_DEFINED:#x} set"
    return None


def with_lma(cr0: int, efer: int) -> int:
    """SDM §9.8.5: IA32_EFER.LMA = LME && CR0.PG; software cannot write LMA."""
    return efer & ~bits.EFER_LMA \
        | on(truth(efer & bits.EFER_LME) & truth(cr0 & bits.CR0_PG), bits.EFER_LMA)


def sregs_error(regs: Regs) -> str | None:
    """The consistency a whole register set needs (KVM_SET_SREGS: x86.c kvm_is_valid_sregs;
    VM entry: SDM Vol. 3C §26.3.1.1 guest control-register checks)."""
    for err in (cr0_error(regs.cr0), cr4_error(regs.cr4), cr3_reserved_error(regs.cr3),
                efer_error(regs.efer)):
        if err:
            return err
    if regs.cr3 & bits.CR3_NOFLUSH:
        return "#GP: CR3 bit 63 set in a register image"
    paging64 = regs.efer & bits.EFER_LME and regs.cr0 & bits.CR0_PG
    if paging64 and not regs.cr4 & bits.CR4_PAE:
        return "invalid: EFER.LME and CR0.PG need CR4.PAE"
    if bool(regs.efer & bits.EFER_LMA) != bool(paging64):
        return "invalid: EFER.LMA must equal EFER.LME && CR0.PG"
    if regs.cr4 & bits.CR4_PCIDE and not regs.efer & bits.EFER_LMA:
        return "invalid: CR4.PCIDE needs IA-32e mode"
    return None


def step(cfg: Config, v: Vcpu, e: ev.Event) -> ArchStep:
    """The architectural outcome of event e in state v."""
    handler = _STEPS[type(e)]
    return handler(cfg, v, e)


def normalize_cr0(cr0: int) -> int:
    """SDM §2.5: writes to the reserved bits of CR0[31:0] are ignored and ET reads as 1 (KVM:
    x86.c kvm_set_cr0 "cr0 |= X86_CR0_ET; cr0 &= ~CR0_RESERVED_BITS")."""
    return (cr0 & bits.CR0_DEFINED) | bits.CR0_ET


def _mov_cr0(cfg: Config, v: Vcpu, e: ev.MovCr0) -> ArchStep:
    err = cr0_error(e.value)
    if err:
        return _fault(v, err)
    old, new = v.regs.cr0, normalize_cr0(e.value)
    if old & bits.CR0_PG and not new & bits.CR0_PG and v.regs.cr4 & bits.CR4_PCIDE:
        return _fault(v, "#GP: clearing CR0.PG while CR4.PCIDE=1")
    if new & bits.CR0_PG and not old & bits.CR0_PG and v.regs.efer & bits.EFER_LME \
            and not v.regs.cr4 & bits.CR4_PAE:
        return _fault(v, "#GP: enabling paging with EFER.LME=1 needs CR4.PAE=1")
    regs = replace(v.regs, cr0=new, efer=with_lma(new, v.regs.efer))
    invals: tuple[Inval, ...] = ()
    if old & bits.CR0_PG and not new & bits.CR0_PG:
        invals = (Inval("MOV CR0 clearing PG", vpid(v)),)
    return ArchStep(None, regs, invals)


def _mov_cr3(cfg: Config, v: Vcpu, e: ev.MovCr3) -> ArchStep:
    value = e.value
    pcide = v.regs.cr4 & bits.CR4_PCIDE
    if value & bits.CR3_NOFLUSH and not pcide:
        return _fault(v, "#GP: CR3 bit 63 is reserved while CR4.PCIDE=0")
    err = cr3_reserved_error(value)
    if err:
        return _fault(v, err)
    noflush = value & bits.CR3_NOFLUSH
    regs = replace(v.regs, cr3=value & ~bits.CR3_NOFLUSH)
    if noflush:
        return ArchStep(None, regs)
    new_pcid = pcid(regs)
    why = f"MOV CR3 (PCID {new_pcid:#x})" if pcide else "MOV CR3 with CR4.PCIDE=0"
    return ArchStep(None, regs, (Inval(why, vpid(v), new_pcid, globals=Globals.KEEP),))


def _mov_cr4(cfg: Config, v: Vcpu, e: ev.MovCr4) -> ArchStep:
    old, new = v.regs.cr4, e.value
    err = cr4_error(new)
    if err:
        return _fault(v, err)
    changed = old ^ new
    if new & bits.CR4_PCIDE and not old & bits.CR4_PCIDE:
        if not long_mode(v.regs):
            return _fault(v, "#GP: setting CR4.PCIDE outside IA-32e mode")
        if v.regs.cr3 & bits.CR3_PCID_MASK:
            return _fault(v, "#GP: setting CR4.PCIDE with CR3[11:0] != 0")
    if long_mode(v.regs) and old & bits.CR4_PAE and not new & bits.CR4_PAE:
        return _fault(v, "#GP: clearing CR4.PAE in IA-32e mode")
    if long_mode(v.regs) and changed & bits.CR4_LA57:
        return _fault(v, "#GP: toggling CR4.LA57 in IA-32e mode")
    regs = replace(v.regs, cr4=new)
    invals: list[Inval] = []
    if changed & bits.CR4_PGE:
        invals.append(Inval("MOV CR4 toggling PGE", vpid(v)))
    if old & bits.CR4_PCIDE and not new & bits.CR4_PCIDE:
        invals.append(Inval("MOV CR4 clearing PCIDE", vpid(v)))
    flush_current = changed & bits.CR4_PAE or (new & bits.CR4_SMEP and not old & bits.CR4_SMEP)
    if flush_current:
        # Intel: the current PCID; AMD APM §5.5.3: all TLB entries.
        scope = None if cfg.vendor is Vendor.AMD else pcid(v.regs)
        invals.append(Inval("MOV CR4 toggling PAE or setting SMEP", vpid(v), scope))
    if cfg.vendor is Vendor.AMD and new & bits.CR4_PKE and not old & bits.CR4_PKE:
        invals.append(Inval("MOV CR4 setting PKE (AMD)", vpid(v)))
    return ArchStep(None, regs, tuple(invals))


def _wrmsr_efer(cfg: Config, v: Vcpu, e: ev.WrmsrEfer) -> ArchStep:
    err = efer_error(e.value)
    if err:
        return _fault(v, err)
    if (e.value ^ v.regs.efer) & bits.EFER_LME and v.regs.cr0 & bits.CR0_PG:
        return _fault(v, "#GP: changing EFER.LME while CR0.PG=1")
    return ArchStep(None, replace(v.regs, efer=with_lma(v.regs.cr0, e.value)))


def _address_above_4g(v: Vcpu, va: object) -> object:
    """A linear address above 4 GiB outside IA-32e mode, which no instruction can name there:
    outside IA-32e mode linear addresses have 32 bits (SDM Vol. 3A §3.4; §9.8.5: IA-32e
    mode is EFER.LMA=1).  INVPCID's and INVVPID's descriptor addresses are not linear addresses
    of the current mode: INVPCID type 0 uses all 64 bits in every mode (SDM Vol. 2, INVPCID),
    and INVVPID's names L2's."""
    return truth(va >> 32) & neg(truth(v.regs.efer & bits.EFER_LMA))


def _invlpg(cfg: Config, v: Vcpu, e: ev.Invlpg) -> ArchStep:
    # SDM INVLPG: the page in the current PCID, and global entries in all PCIDs; a NOP for a
    # non-canonical address.
    if _address_above_4g(v, e.va):
        return _fault(v, "invalid: INVLPG's address has 32 bits outside IA-32e mode")
    if not canonical(e.va):
        return ArchStep(None, v.regs)
    return ArchStep(None, v.regs, (Inval(f"INVLPG {e.va:#x}", vpid(v), pcid(v.regs), e.va,
                                         globals=Globals.ALL),))


INVPCID_NAMES = {0: "individual-address", 1: "single-context", 2: "all-context incl. globals",
                 3: "all-context"}


def _invpcid(cfg: Config, v: Vcpu, e: ev.Invpcid) -> ArchStep:
    if e.type > 3:
        return _fault(v, f"#GP: INVPCID type {e.type} is not 0-3")
    if e.type < 2:
        if e.pcid > bits.CR3_PCID_MASK:
            return _fault(v, "#GP: INVPCID descriptor bits 63:12 are reserved")
        if e.pcid and not v.regs.cr4 & bits.CR4_PCIDE:
            return _fault(v, "#GP: INVPCID with PCID != 0 while CR4.PCIDE=0")
    if e.type == 0:
        if not canonical(e.va):
            return _fault(v, "#GP: INVPCID individual-address with a non-canonical address")
        # SDM INVPCID: types 0, 1 and 3 invalidate "except global translations".
        inval = Inval(f"INVPCID individual-address PCID {e.pcid:#x} {e.va:#x}", vpid(v),
                      e.pcid, e.va, globals=Globals.KEEP)
    elif e.type == 1:
        inval = Inval(f"INVPCID single-context PCID {e.pcid:#x}", vpid(v), e.pcid,
                      globals=Globals.KEEP)
    elif e.type == 2:
        inval = Inval("INVPCID all-context incl. globals", vpid(v))
    else:
        inval = Inval("INVPCID all-context", vpid(v), globals=Globals.KEEP)
    return ArchStep(None, v.regs, (inval,))


def _no_change(cfg: Config, v: Vcpu, e: ev.Event) -> ArchStep:
    return ArchStep(None, v.regs)


def _pv_tlb_flush(cfg: Config, v: Vcpu, e: ev.PvTlbFlush) -> ArchStep:
    # The guest skipped its own flush and relies on KVM (Documentation/virt/kvm/x86/msr.rst,
    # MSR_KVM_STEAL_TIME preempted field, KVM_VCPU_FLUSH_TLB): a flush of its whole TLB.
    return ArchStep(None, v.regs, (Inval("PV TLB flush (KVM_VCPU_FLUSH_TLB)", vpid(v)),))


def _smi(cfg: Config, v: Vcpu, e: ev.Smi) -> ArchStep:
    # SDM Vol. 3C §32.5.1, Table 32-4: SMM starts with PE, EM, TS and PG clear, CR4 = 0 and
    # EFER.LME/LMA clear; CR3 is kept.  Intel requires no invalidation; AMD flushes everything.
    regs = Regs(cr0=v.regs.cr0 & ~(bits.CR0_PE | bits.CR0_EM | bits.CR0_TS | bits.CR0_PG),
                cr3=v.regs.cr3, cr4=0, efer=0)
    invals = (Inval("SMI (AMD)", None),) if cfg.vendor is Vendor.AMD else ()
    return ArchStep(None, regs, invals)


def _rsm(cfg: Config, v: Vcpu, e: ev.Rsm) -> ArchStep:
    if not v.smm:
        return _fault(v, "#UD: RSM outside SMM")
    invals = (Inval("RSM (AMD)", None),) if cfg.vendor is Vendor.AMD else ()
    return ArchStep(None, v.smram, invals)


def _set_sregs(cfg: Config, v: Vcpu, e: ev.SetSregs) -> ArchStep:
    regs = Regs(e.cr0, e.cr3, e.cr4, e.efer)
    err = sregs_error(regs)
    if err:
        return _fault(v, f"-EINVAL: {err}")
    # Userspace replacing CR0/CR3/CR4/EFER stands for a new CPU state: the vCPU's TLB must not
    # serve translations of the old one (docs/design.md §4; the rule KVM adopted in 4346db6e6e7a
    # "KVM: x86: Force TLB flush on userspace changes to special registers", v6.7).  Writing the
    # same values back changes nothing.
    if regs.same(v.regs):
        return ArchStep(None, regs)
    return ArchStep(None, regs, (Inval("KVM_SET_SREGS", vpid(v)),))


def init_blocked(cfg: Config) -> bool:
    """SDM Vol. 3C §23.8: INIT signals are blocked in VMX root operation, and in VMX non-root
    operation they cause VM exits (§25.2; the model's vmexit event).  L1 of a nested VMX
    configuration is in VMX operation; KVM latches the INIT (vmx.c
    vmx_apic_init_signal_blocked)."""
    return cfg.nested == "vmx"


def _init(cfg: Config, v: Vcpu, e: ev.Init) -> ArchStep:
    if init_blocked(cfg):
        return _fault(v, "INIT is blocked: L1 is in VMX operation (SDM Vol. 3C §23.8)")
    # SDM Vol. 3A §10.1: INIT invalidates the TLBs (all entries).
    return ArchStep(None, init_regs(v.regs), (Inval("INIT", None),))


def _transition_invals(what: str, vpid12: int) -> tuple[Inval, ...]:
    # SDM Vol. 3C §28.3.3.1: without VPIDs, VM entries and exits invalidate VPID 0's linear and
    # combined mappings; with VPIDs enabled nothing is required.
    return () if vpid12 else (Inval(f"{what} without VPID", 0),)


def _vmentry(cfg: Config, v: Vcpu, e: ev.VmEntry) -> ArchStep:
    if v.guest_mode:
        return _fault(v, "VMfail: VM entry while already in L2")
    regs = Regs(e.cr0, e.cr3, e.cr4, e.efer)
    err = sregs_error(regs)
    if err:
        return _fault(v, f"VM-entry failure: L2 state: {err}")
    if cfg.nested_tdp and not e.nested_pgd:
        return _fault(v, "VM-entry failure: nested_pgd (EPTP/nCR3) must be set")
    if not cfg.nested_tdp and e.nested_pgd:
        return _fault(v, f"VM-entry failure: nested paging is not available in {cfg.name}")
    if cfg.nested == "svm" and not e.vpid:
        # AMD APM Vol. 2 §15.5.1 (VMRUN consistency checks): ASID 0 is the host's; KVM checks
        # the same (svm/nested.c nested_vmcb_check_controls: control->asid == 0).
        return _fault(v, "VMEXIT_INVALID: VMRUN with ASID 0")
    if cfg.nested == "vmx" and e.vpid > 0xFFFF:
        # The VPID field is 16 bits (SDM Vol. 3C §24.6.12).  SVM's wider ASIDs are not
        # modelled (formal.model.simulate._not_modeled).
        return _fault(v, "VM-entry failure: VPID is 16 bits")
    return ArchStep(None, regs, _transition_invals("VM entry", e.vpid))


def _vmexit(cfg: Config, v: Vcpu, e: ev.VmExit) -> ArchStep:
    if not v.guest_mode:
        return _fault(v, "invalid: VM exit while in L1")
    return ArchStep(None, v.l1, _transition_invals("VM exit", v.vpid12))


def _invvpid(cfg: Config, v: Vcpu, e: ev.Invvpid) -> ArchStep:
    if v.guest_mode:
        return _fault(v, "invalid: INVVPID is L1's instruction")
    if e.type not in (0, 1, 2, 3):
        return _fault(v, f"VMfail: INVVPID type {e.type} is not 0-3")
    # The descriptor's VPID is bits 15:0, bits 63:16 are reserved and checked for every type
    # (SDM Vol. 3C §30.3, INVVPID Operation; vmx/nested.c handle_invvpid: operand.vpid >> 16).
    if e.vpid > 0xFFFF:
        return _fault(v, "VMfail: INVVPID descriptor bits 63:16 are reserved")
    if e.type != 2 and not e.vpid:
        return _fault(v, "VMfail: INVVPID with VPID 0")
    if e.type == 0 and not canonical(e.va):
        return _fault(v, "VMfail: INVVPID individual-address with a non-canonical address")
    if e.type == 0:
        inval = Inval(f"INVVPID individual-address VPID {e.vpid:#x} {e.va:#x}", e.vpid, va=e.va)
    elif e.type == 2:
        inval = Inval("INVVPID all-context", None, all_but_vpid0=True)
    elif e.type == 1:
        inval = Inval(f"INVVPID single-context VPID {e.vpid:#x}", e.vpid)
    else:
        inval = Inval(f"INVVPID single-context retaining globals VPID {e.vpid:#x}", e.vpid,
                      globals=Globals.KEEP)
    return ArchStep(None, v.regs, (inval,))


def _invlpga(cfg: Config, v: Vcpu, e: ev.Invlpga) -> ArchStep:
    if v.guest_mode:
        return _fault(v, "invalid: INVLPGA is L1's instruction")
    if e.asid >> 32:
        # The ASID operand is ECX (AMD APM Vol. 3, INVLPGA): an event names at most 32 bits.
        return _fault(v, "invalid: INVLPGA's ASID is ECX, 32 bits")
    if _address_above_4g(v, e.va):
        # rAX is EAX outside long mode (AMD APM Vol. 3, INVLPGA; the address size).
        return _fault(v, "invalid: INVLPGA's address is EAX, 32 bits, outside long mode")
    return ArchStep(None, v.regs, (Inval(f"INVLPGA {e.va:#x} ASID {e.asid:#x}", e.asid,
                                         va=e.va),))


_STEPS = {
    ev.MovCr0: _mov_cr0, ev.MovCr3: _mov_cr3, ev.MovCr4: _mov_cr4, ev.WrmsrEfer: _wrmsr_efer,
    ev.Invlpg: _invlpg, ev.Invpcid: _invpcid, ev.GuestPteWrite: _no_change,
    ev.GuestPteWriteOther: _no_change,
    ev.PvTlbFlush: _pv_tlb_flush, ev.Smi: _smi, ev.Rsm: _rsm, ev.SetSregs: _set_sregs,
    ev.Init: _init, ev.CpuidUpdate: _no_change, ev.VmEntry: _vmentry, ev.VmExit: _vmexit,
    ev.Invvpid: _invvpid, ev.Invlpga: _invlpga,
}
