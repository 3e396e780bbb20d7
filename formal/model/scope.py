"""What the model covers: the events it does not model in a given state.  The simulator, the
concrete replay and the transition relation all exclude these steps, each through
`not_modeled`."""

from __future__ import annotations

from formal.model import bits
from formal.model import events as ev
from formal.model.state import Config, Vcpu
from formal.model.values import is_symbolic, neg, truth

# The watched page has one size for a whole trace, so a paging mode that would map it at another
# size, or not at all, is not modelled.  A 2 MiB page is a PDE with PS=1 in PAE and 4-level
# paging; 32-bit paging would read the same PDE as a 4 MiB page or, with CR4.PSE=0, as a page
# table (SDM Vol. 3A §4.3), and a CR4.PSE toggle changes that without an invalidation
# (§4.10.4.1).
LARGE_PAGING32 = "a 2 MiB or 1 GiB watched page under 32-bit paging is not modeled"
# A 4 MiB page is a 32-bit PDE with PS=1 and CR4.PSE=1 (§4.3); CR4.PSE=0 would read it as a page
# table, PAE and 4-level paging as a 2 MiB page or not at all (§4.4.2, §4.5.4).
PAGE_4M_ELSEWHERE = "a 4 MiB watched page is modeled only under 32-bit paging with CR4.PSE=1"
# A 1 GiB page is a PDPTE with PS=1, which only 4-level and 5-level paging have (SDM Vol. 3A
# §4.5.4); PAE paging's PDPTE has no PS bit (§4.4.1, Table 4-8: bit 7 reserved), so its table
# would not map the page at all.
HUGE_LEGACY = "a 1 GiB watched page under 32-bit or PAE paging is not modeled " \
    "(only 4-level and 5-level paging map one)"
# XD is bit 63 of a PAE or 4-level paging entry, reserved unless EFER.NXE=1 (SDM Vol. 3A §4.4.2,
# §4.5.4: a reserved bit set makes the entry map nothing); 32-bit paging's entries have no XD
# bit (§4.3).  A change of EFER.NXE needs no invalidation (§4.10.4.1 lists none), so an
# execute-disable page under NXE=0 would be a page that is and is not mapped.  A 4 MiB page
# is a 32-bit PDE, so an execute-disable one is none.
NX_ELSEWHERE = "an execute-disable watched page is modeled only at 4 KiB, 2 MiB or 1 GiB, " \
    "and while paging is on only under PAE or 4-level paging with EFER.NXE=1 (its XD bit is " \
    "reserved otherwise)"


def paging32(cr0: object, cr4: object) -> object:
    """32-bit paging: CR0.PG=1 with CR4.PAE=0 (SDM Vol. 3A §4.1.1)."""
    return truth(cr0 & bits.CR0_PG) & neg(truth(cr4 & bits.CR4_PAE))


def legacy_paging(cr0: object, efer: object) -> object:
    """32-bit or PAE paging: CR0.PG=1 outside IA-32e mode, EFER.LME=0 (SDM Vol. 3A §4.1.1;
    LMA follows LME when paging is on, §9.8.5)."""
    return truth(cr0 & bits.CR0_PG) & neg(truth(efer & bits.EFER_LME))


def _asked(v: Vcpu, e: ev.Event) -> tuple[object, object, object] | None:
    """The CR0, CR4 and EFER that e asks for (whether or not the architecture then faults), or
    None when it asks for none.  SMI and INIT turn paging off; RSM and a VM exit restore
    registers a modelled state had."""
    r = v.regs
    match e:
        case ev.MovCr0(value=value):
            return value, r.cr4, r.efer
        case ev.MovCr4(value=value):
            return r.cr0, value, r.efer
        case ev.WrmsrEfer(value=value):
            return r.cr0, r.cr4, value
        case ev.SetSregs(cr0=cr0, cr4=cr4, efer=efer) | ev.VmEntry(cr0=cr0, cr4=cr4, efer=efer):
            return cr0, cr4, efer
    return None


def page_not_modeled(cr0: object, cr4: object, efer: object, v: Vcpu) -> str | None:
    """Why v's watched page (Vcpu.page_large, page_1g, page_4m, page_nx) under these
    registers is outside the model, or None."""
    paging = truth(cr0 & bits.CR0_PG)
    p32 = paging32(cr0, cr4)
    pse32 = p32 & truth(cr4 & bits.CR4_PSE)
    wrong = [(v.page_large & neg(v.page_4m) & p32, LARGE_PAGING32),
             (v.page_1g & legacy_paging(cr0, efer), HUGE_LEGACY),
             (v.page_4m & paging & neg(pse32), PAGE_4M_ELSEWHERE),
             (v.page_nx & (v.page_4m | paging & (p32 | neg(truth(efer & bits.EFER_NX)))),
              NX_ELSEWHERE)]
    # One branch where the page is modelled: a symbolic execution forks once per event here.
    if wrong[0][0] | wrong[1][0] | wrong[2][0] | wrong[3][0]:
        return "a watched page under a paging mode that does not map it so is not modeled" \
            if is_symbolic() else next(why for bad, why in wrong if bad)
    return None


def initial_not_modeled(v: Vcpu) -> str | None:
    """Why v's initial state is outside the model (its watched page under a paging mode that
    does not map it with its size and XD bit), or None."""
    return page_not_modeled(v.regs.cr0, v.regs.cr4, v.regs.efer, v)


def not_modeled(cfg: Config, v: Vcpu, e: ev.Event) -> str | None:
    """Why event e in state v is outside the model, or None when it is modelled."""
    if isinstance(e, ev.Smi) and v.smm:
        return "an SMI while in SMM is latched, not taken"
    if isinstance(e, (ev.Smi, ev.Init)) and v.guest_mode:
        return f"{e.op} while L2 runs (a nested VM exit to L1 first) is not modeled"
    if isinstance(e, ev.Init) and v.smm:
        return "INIT is blocked in SMM"
    if isinstance(e, (ev.VmEntry, ev.VmExit, ev.Invvpid, ev.Invlpga)) and v.smm:
        return f"{e.op} in SMM is not modeled"
    if isinstance(e, ev.GuestPteWrite) and not cfg.tdp_enabled and v.page_large:
        # KVM write-protects every guest table it shadows above level 1 (mmu.c
        # account_shadowed), so the guest's write to a large page's PDE traps and KVM zaps
        # the SPTEs of every shadow page of that table and flushes if one was present
        # (mmu.c kvm_mmu_pte_write, kvm_mmu_track_write in newer trees): presence per shadow page is
        # not in the model.
        return "a guest write to a large watched page's PDE or PDPTE under shadow paging is " \
            "not modeled"
    asked = _asked(v, e)
    if asked is not None:
        why = page_not_modeled(*asked, v)
        if why:
            return why
    if isinstance(e, ev.VmEntry) and cfg.nested == "svm" and e.vpid > 0xFFFF:
        # The VMCB's ASID field is 32 bits, but KVM tells L1 it has 8 ASIDs (cpuid.c, CPUID
        # 0x8000000A EBX = 8): the model's tags (arch.tag) cover every ASID up to 0xFFFF.
        return "an L2 ASID above 0xFFFF is not modeled (KVM gives L1 8 ASIDs)"
    return None
