"""KVM as of v6.6.  On the MMU's flush and root-reuse paths v6.6 is v6.4: the KVM_SET_SREGS guest
TLB flush (4346db6e6e7a) was merged for v6.7, not v6.6 (see specs/v6_7.py).  What v6.6 adds
elsewhere does not reach the model: KVM_SET_SREGS rejects an invalid CR0 (26a0652cb453, the
model's legality check already does) and mmu.c stops treating dummy roots as usable."""

from __future__ import annotations

from specs.v6_4 import V6_4


class V6_6(V6_4):
    name = "v6.6"
