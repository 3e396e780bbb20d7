"""Shared helpers for the tests."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from formal.cli import policies
from formal.model import trace
from formal.model.bits import PAGE_1G, PAGE_2M, PAGE_4M
from formal.model.machine import Machine
from formal.model.state import CONFIGS, Page, Regs
from specs import POLICIES

TRACES = Path(__file__).resolve().parent.parent / "traces"

# 64-bit paging, PCIDE=0: CR0 = PG|WP|NE|ET|MP|PE, CR4 = PAE, EFER = NX|LMA|LME.
LONG_MODE = Regs(cr0=0x8001_0033, cr3=0x1000, cr4=0x20, efer=0xD00)
# 32-bit paging with 4 MiB pages: CR0 = PG|WP|ET|PE, CR4 = PSE.
PSE32 = Regs(cr0=0x8001_0011, cr3=0x1000, cr4=0x10, efer=0)
# The watched pages the sampled tests draw: a 4 KiB, a global, a 2 MiB, a 1 GiB and a 4 MiB one
# (which starts in PSE32), each a user writable page, then each a supervisor read-only one, an
# execute-disable one and a supervisor read-only execute-disable one (formal.model.state.Page;
# an execute-disable 4 MiB page is not modelled).  Hypothesis draws the first ones most often:
# the plain 4 KiB page first, whose PTE writes shadow paging models (formal.model.scope).
SIZES = (Page(), Page(global_=True), Page(size=PAGE_2M), Page(size=PAGE_1G), Page(size=PAGE_4M))
RIGHTS = ({}, {"user": False, "writable": False}, {"nx": True},
          {"user": False, "writable": False, "nx": True})
SAMPLED_PAGES = tuple(replace(page, **rights) for rights in RIGHTS for page in SIZES)


def initial_for(page: Page) -> Regs:
    """PSE32 for a 4 MiB page, which only 32-bit paging maps, else LONG_MODE."""
    return PSE32 if page.size == PAGE_4M else LONG_MODE


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
