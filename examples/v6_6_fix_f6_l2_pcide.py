"""A fix for F6 (docs/findings.md): a VM entry that changes L2's CR4.PCIDE under the same vpid12
is treated as a new vpid12.

v6.6's nested_vmx_transition_tlb_flush (vmx/nested.c, 712494de96f3) requests
KVM_REQ_TLB_FLUSH_GUEST, which with shadow paging syncs the roots, only when vmcs12's VPID
differs from nested_vmx.last_vpid.  L2's shadow root is keyed by the raw CR3 value under a role
without CR4.PCIDE (552617382c19), so an entry with the same VPID and CR3 but another CR4.PCIDE
reuses L2's unsync root for a PCID that never cached the page.  This patch remembers L2's
CR4.PCIDE next to last_vpid and requests the same flush when it changes.

The model's state has no field for the remembered PCIDE, and a policy file cannot add one, so
the patch keeps it in bit 16 of last_vpid, above vmcs12's 16-bit VPID (SDM Vol. 3C §25.6.12):
last_vpid's VPID bits keep their meaning.
"""

from formal.model import events as ev
from formal.model.bits import CR4_PCIDE
from formal.model.state import Vcpu
from formal.model.values import ite
from specs.v6_6 import V6_6

# Where the patch keeps L2's CR4.PCIDE at the last VM entry: above the 16-bit VPID.
LAST_L2_PCIDE = 1 << 16


class V6_6L2PcideFlush(V6_6):
    name = "v6.6-fix-f6"

    def nested_vmx_enter_non_root_mode(self, v: Vcpu, e: ev.VmEntry) -> None:
        """vmx/nested.c as Common.nested_vmx_enter_non_root_mode, with the transition flush of
        a VM entry told vmcs12's guest CR4 (prepare_vmcs02 has it in vmcs12->guest_cr4)."""
        r = v.regs
        v.l1 = type(r)(r.cr0, r.cr3, r.cr4, r.efer)
        v.guest_mode = True
        v.vpid12, v.nested_pgd = e.vpid, e.nested_pgd
        self.nested_vmx_entry_tlb_flush(v, e.cr4)
        if self.cfg.nested_tdp:
            self.nested_ept_init_mmu_context(v)
        self.vendor_set_cr0(v, e.cr0)
        self.vendor_set_cr4(v, e.cr4)
        self.vendor_set_efer(v, e.efer)
        self.nested_vmx_load_cr3(v, e.cr3, self.cfg.nested_tdp)

    def nested_vmx_entry_tlb_flush(self, v: Vcpu, l2_cr4: int) -> None:
        """nested_vmx_transition_tlb_flush(vcpu, vmcs12, true), patched: "if (vpid12 !=
        last_vpid || l2_pcide != last_l2_pcide)" requests the new-vpid12 flush."""
        if not v.vpid12:
            self.kvm_make_request(v, self.vmx_transition_request)
            return
        key = v.vpid12 | ite(l2_cr4 & CR4_PCIDE != 0, LAST_L2_PCIDE, 0)
        if key != v.last_vpid:
            v.last_vpid = key
            self.flush_new_vpid12(v)
