"""What the model covers: the events it does not model in a given state.  The simulator, the
concrete replay and the transition relation all exclude these steps, each through
`not_modeled`."""

from __future__ import annotations

from formal.model import events as ev
from formal.model.state import Config, Vcpu


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
    if isinstance(e, ev.VmEntry) and cfg.nested == "svm" and e.vpid > 0xFFFF:
        # The VMCB's ASID field is 32 bits, but KVM tells L1 it has 8 ASIDs (cpuid.c, CPUID
        # 0x8000000A EBX = 8): the model's tags (arch.tag) cover every ASID up to 0xFFFF.
        return "an L2 ASID above 0xFFFF is not modeled (KVM gives L1 8 ASIDs)"
    return None
