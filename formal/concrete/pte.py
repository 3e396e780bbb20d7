"""Paging-structure entry bits and page-fault error-code bits.

Bit positions are those of the Intel SDM Vol. 3A §4.3 (Tables 4-4..4-6, 32-bit paging), §4.4.2
(Tables 4-8..4-11, PAE paging), §4.5 (Tables 4-15..4-20, 4-level paging) and §4.7 (Figure 4-12,
the page-fault error code); the names follow arch/x86/include/asm/pgtable_types.h and KVM's
PFERR_*_MASK (arch/x86/include/asm/kvm_host.h).
"""

# Paging-structure entries (SDM §4.3, §4.4.2, §4.5).
PTE_P = 1 << 0
PTE_RW = 1 << 1
PTE_US = 1 << 2
PTE_PWT = 1 << 3
PTE_PCD = 1 << 4
PTE_A = 1 << 5
PTE_D = 1 << 6
PTE_PS = 1 << 7  # in a PDE or PDPTE: the entry maps a page (in a 4 KiB PTE: PAT)
PTE_G = 1 << 8
PTE_PAT_LARGE = 1 << 12  # PAT in an entry that maps a 2 MiB, 4 MiB or 1 GiB page
PTE_XD = 1 << 63  # PAE and 4-level paging only

# Page-fault error code (SDM §4.7).
PFERR_P = 1 << 0  # 0: not-present page; 1: protection violation (or reserved bit)
PFERR_W = 1 << 1  # the access was a write
PFERR_U = 1 << 2  # the access was a user-mode (CPL=3) access
PFERR_RSVD = 1 << 3  # a reserved bit was set in a paging-structure entry
PFERR_I = 1 << 4  # the access was an instruction fetch (only reported with SMEP or PAE+NXE)
PFERR_PK = 1 << 5  # a protection-key violation (SDM §4.6.2)
