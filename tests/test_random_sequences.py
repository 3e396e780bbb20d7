"""Random event sequences on every policy and configuration: the model never crashes, KVM
always ends with the registers the architecture gives (Machine raises ModelError otherwise), a
root is always loaded at guest entry, and a run is deterministic."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from formal.model import events as ev
from formal.model.explore import VAS
from formal.model.machine import Machine
from formal.model.scope import not_modeled
from formal.model.state import CONFIGS
from specs import POLICIES
from tests.conftest import LONG_MODE

PGDS = [0x1000, 0x2000, 0x3000]
CR0S = [0x8001_0033, 0x8000_0033, 0x33, 0x1_0033, 0x8001_0031]
CR4S = [0x20, 0x20020, 0x320, 0x1020, 0x30_0020, 0xA0, 0x0, 0x10_0020, 0x40_0020]
EFERS = [0xD00, 0x500, 0x900, 0x100, 0x0, 0x800]

pgd = st.builds(lambda a, p: a | p, st.sampled_from(PGDS), st.sampled_from([0, 0, 1, 2]))


def events(cr4s: list[int]) -> st.SearchStrategy[ev.Event]:
    """Every L1 event, with CR4 values drawn from cr4s."""
    return st.one_of(
        st.builds(ev.MovCr0, st.sampled_from(CR0S)),
        st.builds(ev.MovCr3, st.builds(lambda p, f: p | f, pgd, st.sampled_from([0, 1 << 63]))),
        st.builds(ev.MovCr4, st.sampled_from(cr4s)),
        st.builds(ev.WrmsrEfer, st.sampled_from(EFERS)),
        st.builds(ev.Invlpg, st.sampled_from([0x400000, 0x500000, 0x800000])),
        st.builds(ev.Invpcid, st.integers(0, 3), st.integers(0, 2), st.sampled_from(VAS)),
        st.builds(ev.GuestPteWrite, st.sampled_from(PGDS + [0x9000])),
        st.builds(ev.GuestPteWriteOther, st.sampled_from(PGDS + [0x9000])),
        st.just(ev.PvTlbFlush()), st.just(ev.Smi()), st.just(ev.Rsm()), st.just(ev.Init()),
        st.just(ev.CpuidUpdate()),
        st.builds(ev.SetSregs, st.sampled_from(CR0S), st.sampled_from(PGDS),
                  st.sampled_from(cr4s), st.sampled_from(EFERS)),
    )


EVENTS = events(CR4S)
NESTED = st.one_of(
    st.builds(lambda cr0, cr3, cr4, efer, vpid: ev.VmEntry(cr0, cr3 + 0x10000, cr4, efer, 0,
                                                           vpid),
              st.sampled_from(CR0S), st.sampled_from(PGDS), st.sampled_from(CR4S),
              st.sampled_from(EFERS), st.integers(0, 2)),
    st.just(ev.VmExit()),
    st.builds(ev.Invvpid, st.integers(0, 3), st.integers(0, 2), st.sampled_from(VAS)),
    st.builds(ev.Invlpga, st.sampled_from(VAS), st.integers(1, 2)),
)


def run(policy: str, config: str, events: list[ev.Event]) -> list:
    cfg = CONFIGS[config]
    m = Machine(POLICIES[policy](cfg), LONG_MODE)
    out = [m.start()]
    for i, e in enumerate(events):
        if isinstance(e, ev.VmEntry) and cfg.nested_tdp:
            e = ev.VmEntry(e.cr0, e.cr3, e.cr4, e.efer, 0x9000, e.vpid)
        if not_modeled(cfg, m.v, e):
            continue
        rec = m.step(i, e)
        out.append(rec)
        assert m.v.mmu.root.valid or rec.fault
        if rec.violations:
            break
    return out


@settings(max_examples=300, deadline=None)
@given(policy=st.sampled_from(list(POLICIES)), config=st.sampled_from(["shadow", "tdp"]),
       events=st.lists(EVENTS, max_size=10))
def test_flat_configs_run_without_model_errors(policy, config, events):
    run(policy, config, events)


@settings(max_examples=300, deadline=None)
@given(policy=st.sampled_from(list(POLICIES)),
       config=st.sampled_from(["nested-ept", "nested-npt", "nested-shadow"]),
       events=st.lists(st.one_of(EVENTS, NESTED), max_size=10))
def test_nested_configs_run_without_model_errors(policy, config, events):
    run(policy, config, events)


@settings(max_examples=50, deadline=None)
@given(policy=st.sampled_from(list(POLICIES)), events=st.lists(EVENTS, max_size=8))
def test_runs_are_deterministic(policy, events):
    def seen(records: list) -> list:
        return [(r.fault, r.actions, r.violations, r.regs, r.changed) for r in records]

    assert seen(run(policy, "shadow", events)) == seen(run(policy, "shadow", events))
