"""`rfc-2022-02`: v5.17 plus "KVM: x86: do not unload MMU roots on all role changes" (Paolo
Bonzini, v1 12/12, 9 Feb 2022), as posted; never merged."""

from __future__ import annotations

from specs.v5_17 import V5_17


class Rfc2022_02(V5_17):
    name = "rfc-2022-02"
