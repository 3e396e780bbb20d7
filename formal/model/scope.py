"""What the model covers: the events it does not model in a given state.  The simulator, the
concrete replay and the transition relation all exclude these steps, each through
`not_modeled`."""

from __future__ import annotations

from formal.model import bits
from formal.model import events as ev
from formal.model.state import Config, Vcpu
from formal.model.values import neg, truth

# A large watched page is a PDE with PS=1 in PAE and 4-level paging; 32-bit paging would read
# the same PDE as a 4 MiB page or, with CR4.PSE=0, as a page table (SDM Vol. 3A §4.3), and a
# CR4.PSE toggle changes that without an invalidation (§4.10.4.1): not modelled.
LARGE_PAGING32 = "a large watched page under 32-bit paging is not modeled"


def paging32(cr0: object, cr4: object) -> object:
    """32-bit paging: CR0.PG=1 with CR4.PAE=0 (SDM Vol. 3A §4.1.1)."""
    return truth(cr0 & bits.CR0_PG) & neg(truth(cr4 & bits.CR4_PAE))


def _paging32_after(v: Vcpu, e: ev.Event) -> object:
    """Whether e asks for 32-bit paging (whether or not the architecture then faults).  SMI and
    INIT turn paging off; RSM and a VM exit restore registers a modelled state had."""
    match e:
        case ev.MovCr0(value=value):
            return paging32(value, v.regs.cr4)
        case ev.MovCr4(value=value):
            return paging32(v.regs.cr0, value)
        case ev.SetSregs(cr0=cr0, cr4=cr4) | ev.VmEntry(cr0=cr0, cr4=cr4):
            return paging32(cr0, cr4)
    return False


def initial_not_modeled(cr0: int, cr4: int, page_large: object) -> str | None:
    """Why an initial state is outside the model (a large watched page under 32-bit paging),
    or None."""
    if page_large & paging32(cr0, cr4):
        return LARGE_PAGING32
    return None


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
        return "a guest write to a large watched page's PDE under shadow paging is not modeled"
    if v.page_large & _paging32_after(v, e):
        return LARGE_PAGING32
    if isinstance(e, ev.VmEntry) and cfg.nested == "svm" and e.vpid > 0xFFFF:
        # The VMCB's ASID field is 32 bits, but KVM tells L1 it has 8 ASIDs (cpuid.c, CPUID
        # 0x8000000A EBX = 8): the model's tags (arch.tag) cover every ASID up to 0xFFFF.
        return "an L2 ASID above 0xFFFF is not modeled (KVM gives L1 8 ASIDs)"
    return None
