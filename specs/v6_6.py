"""KVM as of v6.6: v6.4 plus a guest TLB flush on KVM_SET_SREGS (Aug 2023)."""

from __future__ import annotations

from formal import events as ev
from formal.state import Req, Vcpu
from specs.v6_4 import V6_4


class V6_6(V6_4):
    name = "v6.6"

    def set_sregs(self, v: Vcpu, e: ev.SetSregs) -> None:
        """x86.c v6.6 __set_sregs: the MMU reset is followed by KVM_REQ_TLB_FLUSH_GUEST."""
        if self.set_sregs_common(v, e):
            self.kvm_mmu_reset_context(v)
            self.kvm_make_request(v, Req.TLB_FLUSH_GUEST)
