"""KVM as of v6.7: v6.6 plus a guest TLB flush when userspace changes the special registers."""

from __future__ import annotations

from formal.model import events as ev
from formal.model.state import Req, Vcpu
from specs.v6_6 import V6_6


class V6_7(V6_6):
    name = "v6.7"

    def set_sregs(self, v: Vcpu, e: ev.SetSregs) -> None:
        """x86.c v6.7 __set_sregs (4346db6e6e7a "KVM: x86: Force TLB flush on userspace changes
        to special registers"): the MMU reset is followed by KVM_REQ_TLB_FLUSH_GUEST."""
        if self.set_sregs_common(v, e):
            self.kvm_mmu_reset_context(v)
            self.kvm_make_request(v, Req.TLB_FLUSH_GUEST)
