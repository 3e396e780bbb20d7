"""Request servicing in vcpu_enter_guest: the order of each version, and what each does."""

from __future__ import annotations

import pytest

from formal.model.state import Req
from tests.conftest import machine

OLD = ["service MMU_RELOAD", "service MMU_SYNC", "service LOAD_MMU_PGD", "service TLB_FLUSH",
       "service TLB_FLUSH_GUEST"]
NEW = ["service FREE_OBSOLETE_ROOTS", "service MMU_SYNC", "service LOAD_MMU_PGD",
       "service TLB_FLUSH", "service TLB_FLUSH_GUEST"]
ORDER = {"v5.12": OLD, "v5.13": OLD, "v5.17": OLD, "rfc-2022-02": OLD,
         "509bfe3-no-pcide-free": OLD, "v5.18": NEW, "v6.4": NEW, "v6.6": NEW, "v6.7": NEW,
         "v6.12": NEW, "mainline": NEW}


def test_every_policy_has_a_pinned_order(policy_name):
    assert policy_name in ORDER


def test_all_requests_are_serviced_in_the_versions_order(policy_name):
    m = machine(policy_name)
    p, v = m.policy, m.v
    other = Req.FREE_OBSOLETE_ROOTS if p.root_request == Req.MMU_RELOAD else Req.MMU_RELOAD
    v.requests = sum(Req) & ~other
    p.log = []
    p.vcpu_enter_guest(v)
    serviced = [a for a in p.log if a.startswith("service")]
    # TLB_FLUSH clears TLB_FLUSH_CURRENT ("Flushing all ASIDs flushes the current ASID").
    assert serviced == ORDER[policy_name]
    assert v.requests == 0


@pytest.mark.parametrize("policy", ["v5.17", "v6.6"])
def test_flush_current_alone_precedes_flush_guest(policy):
    m = machine(policy)
    m.v.requests = Req.TLB_FLUSH_GUEST | Req.TLB_FLUSH_CURRENT
    m.policy.log = []
    m.policy.vcpu_enter_guest(m.v)
    assert m.policy.log == ["service TLB_FLUSH_CURRENT", "service TLB_FLUSH_GUEST"]


def test_reload_happens_after_the_requests(policy_name):
    """MMU_SYNC on an unloaded MMU is a no-op; the root kvm_mmu_load builds comes after."""
    m = machine(policy_name)
    p, v = m.policy, m.v
    p.kvm_mmu_unload(v)
    v.requests = Req.MMU_SYNC
    p.log = []
    p.vcpu_enter_guest(v)
    assert p.log == ["service MMU_SYNC", "load new root pgd=0x1000 role=level=4,nx,wp"]
