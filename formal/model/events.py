"""The events of a trace: guest instructions, guest memory writes, SMM, userspace ioctls and
nested transitions.  Operands are full-width ints; legality is formal.model.arch's business."""

from __future__ import annotations

from dataclasses import dataclass, field, fields


@dataclass(frozen=True, slots=True)
class Event:
    """Base of every event; `op` is the name used in trace files."""

    op = ""

    def describe(self) -> str:
        args = []
        for f in fields(self):
            val = getattr(self, f.name)
            args.append(f"{f.name}={val:#x}" if f.metadata.get("hex") else f"{f.name}={val}")
        return f"{self.op}({', '.join(args)})" if args else self.op


def hexfield() -> int:
    """A field rendered and parsed as a hex string."""
    return field(metadata={"hex": True})


@dataclass(frozen=True, slots=True)
class MovCr0(Event):
    op = "mov_cr0"
    value: int = hexfield()


@dataclass(frozen=True, slots=True)
class MovCr3(Event):
    op = "mov_cr3"
    value: int = hexfield()


@dataclass(frozen=True, slots=True)
class MovCr4(Event):
    op = "mov_cr4"
    value: int = hexfield()


@dataclass(frozen=True, slots=True)
class WrmsrEfer(Event):
    op = "wrmsr_efer"
    value: int = hexfield()


@dataclass(frozen=True, slots=True)
class Invlpg(Event):
    op = "invlpg"
    va: int = hexfield()


@dataclass(frozen=True, slots=True)
class Invpcid(Event):
    op = "invpcid"
    type: int
    pcid: int = hexfield()
    va: int = hexfield()


@dataclass(frozen=True, slots=True)
class GuestPteWrite(Event):
    """The guest rewrites the leaf PTE of the watched page in the page tables at pgd."""

    op = "guest_pte_write"
    pgd: int = hexfield()


@dataclass(frozen=True, slots=True)
class GuestPteWriteOther(Event):
    """The guest rewrites the PTE of some other page (not the watched one) in the page tables
    at pgd: the watched translation is unchanged, the shadow pages of those tables go unsync."""

    op = "guest_pte_write_other"
    pgd: int = hexfield()


@dataclass(frozen=True, slots=True)
class PvTlbFlush(Event):
    """The guest asked for a flush through steal time (KVM_VCPU_FLUSH_TLB) while preempted."""

    op = "pv_tlb_flush"


@dataclass(frozen=True, slots=True)
class Smi(Event):
    op = "smi"


@dataclass(frozen=True, slots=True)
class Rsm(Event):
    op = "rsm"


@dataclass(frozen=True, slots=True)
class SetSregs(Event):
    """KVM_SET_SREGS: userspace writes CR0, CR3, CR4 and EFER at once."""

    op = "set_sregs"
    cr0: int = hexfield()
    cr3: int = hexfield()
    cr4: int = hexfield()
    efer: int = hexfield()


@dataclass(frozen=True, slots=True)
class Init(Event):
    op = "init"


@dataclass(frozen=True, slots=True)
class CpuidUpdate(Event):
    """KVM_SET_CPUID2 (userspace), which KVM follows with kvm_vcpu_after_set_cpuid."""

    op = "cpuid_update"


@dataclass(frozen=True, slots=True)
class VmEntry(Event):
    """L1 enters L2 (VMLAUNCH/VMRESUME or VMRUN) with these L2 registers, L1's EPTP/nCR3
    (nested_pgd, 0 without nested paging) and the VPID/ASID L1 gave L2 (0: none)."""

    op = "vmentry"
    cr0: int = hexfield()
    cr3: int = hexfield()
    cr4: int = hexfield()
    efer: int = hexfield()
    nested_pgd: int = hexfield()
    vpid: int = hexfield()


@dataclass(frozen=True, slots=True)
class VmExit(Event):
    op = "vmexit"


@dataclass(frozen=True, slots=True)
class Invvpid(Event):
    """L1's INVVPID: 0 individual address, 1 single context, 2 all contexts, 3 single context
    retaining globals (SDM Vol. 3C §30.3)."""

    op = "invvpid"
    type: int
    vpid: int = hexfield()
    va: int = hexfield()


@dataclass(frozen=True, slots=True)
class Invlpga(Event):
    """L1's INVLPGA (AMD APM Vol. 3): invalidate va in the given ASID."""

    op = "invlpga"
    va: int = hexfield()
    asid: int = hexfield()


EVENT_TYPES: dict[str, type[Event]] = {
    cls.op: cls for cls in (MovCr0, MovCr3, MovCr4, WrmsrEfer, Invlpg, Invpcid, GuestPteWrite,
                            GuestPteWriteOther, PvTlbFlush, Smi, Rsm, SetSregs, Init,
                            CpuidUpdate, VmEntry, VmExit, Invvpid, Invlpga)
}
NESTED_OPS = frozenset({"vmentry", "vmexit", "invvpid", "invlpga"})
