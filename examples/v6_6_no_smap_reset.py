"""An experiment: v6.6 with CR4.SMAP dropped from the bits whose change resets the MMU.

KVM's software walker reads CR4.SMAP from the walk MMU's cached cpu role (mmu.h
BUILD_MMU_ROLE_ACCESSOR(ext, cr4, smap)), so without the reset it keeps checking emulated
accesses under the old SMAP.  flushproof refutes metadata in one event and the replay shows the
emulated access (docs/policies.md).
"""

from formal.model import bits
from specs.v6_6 import V6_6


class V6_6NoSmapReset(V6_6):
    name = "v6.6-no-smap-reset"
    # mmu.h KVM_MMU_CR4_ROLE_BITS without X86_CR4_SMAP.
    cr4_reset_bits = V6_6.cr4_reset_bits & ~bits.CR4_SMAP
