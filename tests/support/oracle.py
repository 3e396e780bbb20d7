"""What tests ask of the saturated-TLB oracle beyond what the replay needs."""

from __future__ import annotations

from formal.concrete.paging import Mode, Translation
from formal.concrete.tlb_oracle import TlbOracle


def allowed(oracle: TlbOracle, va: int, observed: Translation) -> bool:
    """Is observed (physical address and permissions) a translation the architecture lets the
    guest use for va now: a fresh walk's, or a retained entry's (docs/design.md §2).  With
    paging off only va itself (SDM §4.1.1: linear addresses are physical)."""
    if oracle.mode is Mode.NONE:
        return observed.paddr == va
    seen = (observed.paddr, observed.perms)
    t = oracle.fresh(va)
    if t is not None and (t.paddr, t.perms) == seen:
        return True
    return any((e.paddr(va), e.perms) == seen for e in oracle.usable(va))
