"""A fix for F10 (docs/findings.md): a per-address flush reaches the guest's whole page.

v6.6's kvm_mmu_invalidate_addr (INVLPG, INVPCID individual-address) and handle_invvpid
(INVVPID individual-address of a shadowed L2) make one hardware flush of the guest's address:
vmx_flush_tlb_gva / vpid_sync_vcpu_addr (INVVPID individual-address), svm_flush_tlb_gva
(INVLPGA).  Under shadow paging the hardware holds a guest large page as the 4 KiB entries of
KVM's SPTEs whenever KVM cannot map it with a huge SPTE (mmu.c kvm_mmu_hugepage_adjust), so the
flush of one address misses the entries of the page's other 4 KiB pages, which the architecture
invalidates too (SDM Vol. 2, INVLPG, note 1).  This patch flushes the whole VPID or ASID instead
(vpid_sync_context, svm's ASID flush) when the guest maps the address with a page larger than
4 KiB: the guest walk FNAME(invlpg) / __kvm_mmu_invalidate_addr already make gives its level.
"""

from formal.model import arch
from formal.model.state import Vcpu
from specs.v6_6 import V6_6


class V6_6FlushLargePage(V6_6):
    name = "v6.6-fix-f10"

    def hw_page_hit(self, v: Vcpu, gva: int) -> object:
        """Patched: the flush reaches every hardware entry of the guest's page containing gva,
        2 MiB, 4 MiB or 1 GiB for a large watched page, whatever size the hardware holds it
        at."""
        return arch.page_hit(gva, *arch.page_bits(v))
