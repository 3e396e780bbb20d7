"""Architectural register bits and field helpers.

Bit positions are those of the Intel SDM Vol. 3A §2.5 (CR0, CR3, CR4) and §2.2.1 (IA32_EFER),
the same constants arch/x86/include/asm/processor-flags.h gives the kernel.
"""

# CR0 (SDM §2.5).
CR0_PE = 1 << 0
CR0_MP = 1 << 1
CR0_EM = 1 << 2
CR0_TS = 1 << 3
CR0_ET = 1 << 4
CR0_NE = 1 << 5
CR0_WP = 1 << 16
CR0_AM = 1 << 18
CR0_NW = 1 << 29
CR0_CD = 1 << 30
CR0_PG = 1 << 31
CR0_DEFINED = CR0_PE | CR0_MP | CR0_EM | CR0_TS | CR0_ET | CR0_NE | CR0_WP | CR0_AM \
    | CR0_NW | CR0_CD | CR0_PG

# CR3 (SDM §4.10.1, §4.5): PCID in bits 11:0 when CR4.PCIDE=1; bit 63 is the MOV CR3 NOFLUSH hint.
CR3_PCID_MASK = 0xFFF
CR3_NOFLUSH = 1 << 63
CR3_ADDR_MASK = 0x000F_FFFF_FFFF_F000  # MAXPHYADDR = 52

# CR4 (SDM §2.5).
CR4_VME = 1 << 0
CR4_PVI = 1 << 1
CR4_TSD = 1 << 2
CR4_DE = 1 << 3
CR4_PSE = 1 << 4
CR4_PAE = 1 << 5
CR4_MCE = 1 << 6
CR4_PGE = 1 << 7
CR4_PCE = 1 << 8
CR4_OSFXSR = 1 << 9
CR4_OSXMMEXCPT = 1 << 10
CR4_UMIP = 1 << 11
CR4_LA57 = 1 << 12
CR4_VMXE = 1 << 13
CR4_FSGSBASE = 1 << 16
CR4_PCIDE = 1 << 17
CR4_OSXSAVE = 1 << 18
CR4_SMEP = 1 << 20
CR4_SMAP = 1 << 21
CR4_PKE = 1 << 22
CR4_DEFINED = CR4_VME | CR4_PVI | CR4_TSD | CR4_DE | CR4_PSE | CR4_PAE | CR4_MCE | CR4_PGE \
    | CR4_PCE | CR4_OSFXSR | CR4_OSXMMEXCPT | CR4_UMIP | CR4_LA57 | CR4_VMXE | CR4_FSGSBASE \
    | CR4_PCIDE | CR4_OSXSAVE | CR4_SMEP | CR4_SMAP | CR4_PKE

# The CR4 bits KVM lets a VMX guest own on an EPT host, so that a MOV CR4 changing only these does
# not exit: kvm_cache_regs.h KVM_POSSIBLE_CR4_GUEST_BITS (PGE in it since before v5.12; TSD and
# FSGSBASE in the v5.12..mainline trees read); vmx.c set_cr4_guest_host_mask takes PGE back only
# without EPT (`if (!enable_ept)`: PGE alone in v5.12-era trees, X86_CR4_TLBFLUSH_BITS and
# X86_CR4_PDPTR_BITS later, both containing PGE), and for L2 also every bit vmcs12's
# cr4_guest_host_mask claims (an exit reflected to L1: the model's vmexit event).
CR4_GUEST_OWNED_EPT = CR4_PVI | CR4_DE | CR4_PCE | CR4_OSFXSR | CR4_OSXMMEXCPT | CR4_PGE \
    | CR4_TSD | CR4_FSGSBASE

# IA32_EFER (SDM §2.2.1, MSR 0xC0000080).
EFER_SCE = 1 << 0
EFER_LME = 1 << 8
EFER_LMA = 1 << 10
EFER_NX = 1 << 11
EFER_SVME = 1 << 12
EFER_DEFINED = EFER_SCE | EFER_LME | EFER_LMA | EFER_NX | EFER_SVME

# Page sizes (SDM Vol. 3A §4.3: 4 KiB and, with CR4.PSE, 4 MiB under 32-bit paging; §4.4.2 and
# §4.5.4: 4 KiB and 2 MiB under PAE paging, and 1 GiB as well under 4-level and 5-level paging).
PAGE_4K = 1 << 12
PAGE_2M = 1 << 21
PAGE_4M = 1 << 22
PAGE_1G = 1 << 30
