"""Shared helpers for the tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from formal.cli import policies
from formal.model import trace
from formal.model.machine import Machine
from formal.model.state import CONFIGS, Regs
from specs import POLICIES

TRACES = Path(__file__).resolve().parent.parent / "traces"

# 64-bit paging, PCIDE=0: CR0 = PG|WP|NE|ET|MP|PE, CR4 = PAE, EFER = NX|LMA|LME.
LONG_MODE = Regs(cr0=0x8001_0033, cr3=0x1000, cr4=0x20, efer=0xD00)


def run_trace(name: str, policy: str | None = None, config: str | None = None):
    t = trace.override(trace.load(TRACES / name), policy, config)
    return policies.simulate(t)


def machine(policy: str, config: str = "shadow", regs: Regs = LONG_MODE) -> Machine:
    m = Machine(POLICIES[policy](CONFIGS[config]), regs)
    m.start()
    return m


@pytest.fixture(params=list(POLICIES))
def policy_name(request) -> str:
    return request.param


@pytest.fixture(autouse=True, scope="session")
def cold_cache(tmp_path_factory):
    """Every command a test runs builds its relations cold: the relation cache is a fresh
    directory of this session, never the user's (formal.cli.store.cache_dir)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("FLUSHPROOF_CACHE", str(tmp_path_factory.mktemp("flushproof-cache")))
    yield
    mp.undo()
