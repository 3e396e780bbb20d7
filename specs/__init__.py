"""The KVM policy versions under verification, by the names proofs and traces use."""

from __future__ import annotations

from formal.model.kvm import Mechanism
from specs.mainline import Mainline
from specs.no_pcide_free import NoPcideFree
from specs.rfc_2022_02 import Rfc2022_02
from specs.v5_12 import V5_12
from specs.v5_13 import V5_13
from specs.v5_17 import V5_17
from specs.v5_18 import V5_18
from specs.v6_4 import V6_4
from specs.v6_6 import V6_6
from specs.v6_7 import V6_7
from specs.v6_12 import V6_12

POLICIES: dict[str, type[Mechanism]] = {
    cls.name: cls for cls in (V5_12, V5_13, V5_17, Rfc2022_02, V5_18, V6_4, V6_6, V6_7, V6_12,
                             Mainline, NoPcideFree)
}
