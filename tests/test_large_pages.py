"""A large watched page (docs/model.md "Large pages"): an invalidation of any address in the
2 MiB page covers it (SDM Vol. 2 INVLPG note 1), the hardware holds it as one 2 MiB entry where
it walks the guest's tables but as 4 KiB entries through KVM's shadow tables, and what the model
leaves out (32-bit paging, a PDE write under shadow paging); F10 on both levels."""

from __future__ import annotations

from dataclasses import replace

import pytest

from formal.cli import policies
from formal.concrete.replay import replay
from formal.errors import NotModeled
from formal.model import arch, explore, simulate, trace
from formal.model import events as ev
from formal.model.scope import LARGE_PAGING32, not_modeled
from formal.model.state import CONFIGS, Regs, Vcpu
from specs import POLICIES
from tests.conftest import TRACES

F10 = TRACES / "large-invlpg-other-4k.json"
FIX = TRACES.parent / "examples" / "v6_6_fix_f10_flush_large.py"
VA = arch.WATCHED_VA
OTHER_4K = VA | 0x10_0000  # another 4 KiB page of the watched 2 MiB page
# Legacy PAE paging (no IA-32e mode): clearing CR4.PAE there gives 32-bit paging.
PAE = Regs(cr0=0x8000_0011, cr3=0x1000, cr4=0x20, efer=0)


@pytest.mark.parametrize("va,small,large", [
    (VA, True, True), (VA | 0xFFF, True, True), (OTHER_4K, False, True),
    (VA + 0x20_0000, False, False), (VA - 0x1000, False, False)])
def test_an_address_hits_the_watched_page_by_its_size(va, small, large):
    assert (arch.page_hit(va, False), arch.page_hit(va, True)) == (small, large)


@pytest.mark.parametrize("e", [ev.Invlpg(OTHER_4K), ev.Invpcid(0, 0, OTHER_4K),
                               ev.Invvpid(0, 5, OTHER_4K), ev.Invlpga(OTHER_4K, 5)],
                         ids=lambda e: e.op)
def test_every_per_address_invalidation_covers_a_large_page_from_any_of_its_addresses(e):
    cfg = CONFIGS["nested-npt" if isinstance(e, ev.Invlpga) else "nested-ept"]
    [inval] = arch.step(cfg, Vcpu(regs=PAE), e).invals
    vpid = inval.vpid or 0
    assert (inval.covers(vpid, 0), inval.covers(vpid, 0, large=True)) == (False, True)


def test_the_hardware_holds_a_large_page_whole_only_where_it_walks_the_guests_tables():
    v = Vcpu(regs=PAE, page_large=True)
    assert [POLICIES["v6.6"](CONFIGS[c]).hw_large(v, 0) for c in ("tdp", "shadow")] \
        == [True, False]
    assert not POLICIES["v6.6"](CONFIGS["tdp"]).hw_large(replace(v, page_large=False), 0)


def test_what_a_large_page_leaves_out_of_the_model():
    large, small = Vcpu(regs=PAE, page_large=True), Vcpu(regs=PAE)
    shadow, tdp = CONFIGS["shadow"], CONFIGS["tdp"]
    assert "PDE under shadow paging" in not_modeled(shadow, large, ev.GuestPteWrite(0x1000))
    assert not_modeled(tdp, large, ev.GuestPteWrite(0x1000)) is None
    assert not_modeled(shadow, small, ev.GuestPteWrite(0x1000)) is None
    for e in (ev.MovCr4(0), ev.SetSregs(PAE.cr0, 0x1000, 0, 0),
              ev.VmEntry(PAE.cr0, 0x1000, 0, 0, 0, 1)):
        assert not_modeled(shadow, large, e) == LARGE_PAGING32
        assert not_modeled(shadow, small, e) is None
    off = Vcpu(regs=replace(PAE, cr0=0x11, cr4=0), page_large=True)
    assert not_modeled(shadow, off, ev.MovCr0(0x8000_0011)) == LARGE_PAGING32
    assert not_modeled(shadow, off, ev.MovCr4(0x20)) is None


def test_a_trace_starting_in_32_bit_paging_with_a_large_page_is_rejected():
    t = replace(trace.load(F10), initial=replace(PAE, cr4=0), events=())
    for run in (lambda: simulate.run(t, POLICIES["v6.6"]), lambda: replay(t, POLICIES["v6.6"])):
        with pytest.raises(NotModeled, match="initial: a large watched page under 32-bit"):
            run()


def test_f10_on_both_levels_and_only_with_a_large_page_under_shadow_paging():
    t = trace.load(F10)
    assert t.page_large and trace.parse(trace.dumps(t), "x").page_large
    run = simulate.run(t, POLICIES["v6.6"])
    assert run.violation is not None
    index, v = run.violation
    assert (index, v.prop) == (2, "freshness") and "since INVLPG 0x500000" in v.message
    out = replay(t, POLICIES["v6.6"])
    assert (out.event, out.observed, out.allowed) == (2, 0x1_0020_0000, (0x1_0000_0000,))
    for other in (replace(t, page_large=False), replace(t, config="tdp")):
        assert not simulate.run(other, POLICIES["v6.6"]).violated
        assert not replay(other, POLICIES["v6.6"]).violated


def test_the_explicit_search_finds_f10_as_the_shortest_in_v6_6_shadow():
    found = explore.search(POLICIES["v6.6"], CONFIGS["shadow"], ("freshness",),
                           {"mov_cr3", "invlpg"}, 3, 120)
    assert found is not None and found.page_large
    assert [e.op for e in found.events] == ["mov_cr3", "mov_cr3", "invlpg"]
    assert found.events[-1] == ev.Invlpg(OTHER_4K)


def test_the_f10_fix_holds_on_both_levels():
    fix = policies.resolve(policies.load_file(str(FIX)))
    t = trace.load(F10)
    assert not simulate.run(t, fix).violated
    assert not replay(t, fix).violated
