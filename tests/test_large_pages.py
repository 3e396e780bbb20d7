"""A large watched page (docs/model.md "Large pages"): an invalidation of any address in the
2 MiB or 1 GiB page covers it (SDM Vol. 2 INVLPG note 1), the hardware holds it as one large
entry where it walks the guest's tables but as 4 KiB entries through KVM's shadow tables, and
what the model leaves out (a 2 MiB or 1 GiB page under 32-bit paging, a 1 GiB one under PAE
paging, a 4 MiB one outside 32-bit paging with CR4.PSE, a PDE or PDPTE write under shadow
paging); F10 on both levels, with a 2 MiB and a 1 GiB page."""

from __future__ import annotations

from dataclasses import replace

import pytest

from formal.cli import policies
from formal.concrete.replay import replay
from formal.errors import NotModeled
from formal.model import arch, explore, simulate, trace
from formal.model import events as ev
from formal.model.bits import PAGE_1G, PAGE_2M, PAGE_4K, PAGE_4M
from formal.model.scope import HUGE_LEGACY, LARGE_PAGING32, PAGE_4M_ELSEWHERE, not_modeled
from formal.model.state import CONFIGS, Page, Regs, Vcpu
from specs import POLICIES
from tests.conftest import PSE32, TRACES

F10 = TRACES / "large-invlpg-other-4k.json"
F10_1G = TRACES / "huge-invlpg-other-2m.json"
FIX = TRACES.parent / "examples" / "v6_6_fix_f10_flush_large.py"
VA = arch.WATCHED_VA
OTHER_4K = VA | 0x10_0000  # another 4 KiB page of the watched 2 MiB page
OTHER_2M = VA | 0x1000_0000  # an address of the watched 1 GiB page outside its 2 MiB page
# Legacy PAE paging (no IA-32e mode): clearing CR4.PAE there gives 32-bit paging.
PAE = Regs(cr0=0x8000_0011, cr3=0x1000, cr4=0x20, efer=0)
# 4-level paging (IA-32e mode).
LONG = Regs(cr0=0x8001_0033, cr3=0x1000, cr4=0x20, efer=0xD00)


@pytest.mark.parametrize("va,small,large,m4,huge", [
    (VA, True, True, True, True), (VA | 0xFFF, True, True, True, True),
    (OTHER_4K, False, True, True, True), (VA + 0x20_0000, False, False, True, True),
    (VA | 0x3F_FFFF, False, False, True, True), (VA + 0x40_0000, False, False, False, True),
    (VA - 0x1000, False, False, False, True), (OTHER_2M, False, False, False, True),
    (0, False, False, False, True), (0x3FFF_FFFF, False, False, False, True),
    (0x4000_0000, False, False, False, False), (0x1_0040_0000, False, False, False, False)])
def test_an_address_hits_the_watched_page_by_its_size(va, small, large, m4, huge):
    assert (arch.page_hit(va, False), arch.page_hit(va, True),
            arch.page_hit(va, True, m4=True), arch.page_hit(va, True, True)) \
        == (small, large, m4, huge)
    # A 1 GiB or 4 MiB attribute without the large one is no large page.
    assert arch.page_hit(va, False, True, True) == small
    assert [arch.page_size(*arch.page_attributes(s)) for s in arch.PAGE_SIZES.values()] \
        == list(arch.PAGE_SIZES.values())


@pytest.mark.parametrize("e", [ev.Invlpg(OTHER_4K), ev.Invpcid(0, 0, OTHER_4K),
                               ev.Invvpid(0, 5, OTHER_4K), ev.Invlpga(OTHER_4K, 5)],
                         ids=lambda e: e.op)
def test_every_per_address_invalidation_covers_a_large_page_from_any_of_its_addresses(e):
    cfg = CONFIGS["nested-npt" if isinstance(e, ev.Invlpga) else "nested-ept"]
    [inval] = arch.step(cfg, Vcpu(regs=PAE), e).invals
    vpid = inval.vpid or 0
    assert (inval.covers(vpid, 0), inval.covers(vpid, 0, large=True)) == (False, True)
    far = arch.step(cfg, Vcpu(regs=PAE), replace(e, va=OTHER_2M)).invals[0]
    assert (far.covers(vpid, 0, large=True), far.covers(vpid, 0, large=True, huge=True)) \
        == (False, True)


def test_the_hardware_holds_a_large_page_whole_only_where_it_walks_the_guests_tables():
    v = Vcpu(regs=LONG, page_large=True)
    policy = {c: POLICIES["v6.6"](CONFIGS[c]) for c in ("tdp", "shadow")}
    assert [policy[c].hw_size(v, 0) for c in ("tdp", "shadow")] \
        == [(True, False, False), (False, False, False)]
    assert policy["tdp"].hw_size(replace(v, page_1g=True), 0) == (True, True, False)
    assert policy["shadow"].hw_size(replace(v, page_1g=True), 0) == (False, False, False)
    assert policy["tdp"].hw_size(replace(v, page_large=False), 0) == (False, False, False)
    assert policy["tdp"].hw_size(replace(v, page_4m=True), 0) == (True, False, True)
    assert (policy["tdp"].hw_page_hit(replace(v, page_1g=True), OTHER_2M),
            policy["tdp"].hw_page_hit(v, OTHER_2M)) == (True, False)


def test_what_a_large_page_leaves_out_of_the_model():
    large, small = Vcpu(regs=PAE, page_large=True), Vcpu(regs=PAE)
    shadow, tdp = CONFIGS["shadow"], CONFIGS["tdp"]
    assert "PDE or PDPTE under shadow paging" in not_modeled(shadow, large,
                                                             ev.GuestPteWrite(0x1000))
    assert not_modeled(tdp, large, ev.GuestPteWrite(0x1000)) is None
    assert not_modeled(shadow, small, ev.GuestPteWrite(0x1000)) is None
    for e in (ev.MovCr4(0), ev.SetSregs(PAE.cr0, 0x1000, 0, 0),
              ev.VmEntry(PAE.cr0, 0x1000, 0, 0, 0, 1)):
        assert not_modeled(shadow, large, e) == LARGE_PAGING32
        assert not_modeled(shadow, small, e) is None
    off = Vcpu(regs=replace(PAE, cr0=0x11, cr4=0), page_large=True)
    assert not_modeled(shadow, off, ev.MovCr0(0x8000_0011)) == LARGE_PAGING32
    assert not_modeled(shadow, off, ev.MovCr4(0x20)) is None


def test_a_1g_page_only_under_4_level_paging():
    """PAE paging's PDPTEs have no PS bit: a 1 GiB page is modelled under 4-level (and 5-level)
    paging only, and with paging off."""
    huge = Vcpu(regs=LONG, page_large=True, page_1g=True)
    large = replace(huge, page_1g=False)
    tdp = CONFIGS["tdp"]
    for e in (ev.SetSregs(PAE.cr0, 0x1000, 0x20, 0), ev.VmEntry(PAE.cr0, 0x1000, 0x20, 0, 0, 1),
              ev.SetSregs(PAE.cr0, 0x1000, 0, 0)):
        assert not_modeled(tdp, huge, e) == (HUGE_LEGACY if e.cr4 else LARGE_PAGING32)
        assert not_modeled(tdp, large, e) == (None if e.cr4 else LARGE_PAGING32)
    assert not_modeled(tdp, huge, ev.SetSregs(LONG.cr0, 0x1000, 0x20, 0xD00)) is None
    off = replace(huge, regs=replace(PAE, cr0=0x11))
    # Paging on with EFER.LME=0 is PAE paging; with LME=1 it is 4-level paging.
    assert not_modeled(tdp, off, ev.MovCr0(0x8000_0011)) == HUGE_LEGACY
    assert not_modeled(tdp, replace(off, regs=replace(off.regs, efer=0x100)),
                       ev.MovCr0(0x8000_0011)) is None
    assert not_modeled(tdp, off, ev.WrmsrEfer(0x100)) is None
    assert "PDE or PDPTE under shadow paging" in not_modeled(CONFIGS["shadow"], huge,
                                                             ev.GuestPteWrite(0x1000))


def test_a_4m_page_only_under_32_bit_paging_with_pse():
    """A 32-bit PDE with PS=1 maps 4 MiB only with CR4.PSE=1; PAE and 4-level paging would map
    the page at 2 MiB: a 4 MiB page is modelled under 32-bit paging with PSE only, and with
    paging off."""
    m4 = Vcpu(regs=PSE32, page_large=True, page_4m=True)
    tdp = CONFIGS["tdp"]
    assert not_modeled(tdp, m4, ev.MovCr4(0)) == PAGE_4M_ELSEWHERE  # PSE cleared
    assert not_modeled(tdp, m4, ev.MovCr4(0x30)) == PAGE_4M_ELSEWHERE  # PAE paging
    assert not_modeled(tdp, m4, ev.SetSregs(LONG.cr0, 0x1000, 0x20, 0xD00)) == PAGE_4M_ELSEWHERE
    assert not_modeled(tdp, m4, ev.MovCr4(0x90)) is None  # PGE set, PSE kept
    assert not_modeled(tdp, m4, ev.MovCr0(0x11)) is None  # paging off
    off = replace(m4, regs=replace(PSE32, cr0=0x11, cr4=0))
    assert not_modeled(tdp, off, ev.MovCr4(0x20)) is None
    assert not_modeled(tdp, off, ev.MovCr0(0x8000_0011)) == PAGE_4M_ELSEWHERE
    # A 2 MiB page is the one 32-bit paging does not map.
    assert not_modeled(tdp, replace(m4, page_4m=False), ev.MovCr4(0x90)) == LARGE_PAGING32


def test_a_4m_page_on_both_levels():
    """Tables switched, an INVLPG of another 2 MiB half of the 4 MiB page, PGE set, and back:
    every policy holds on both levels; the replay maps VA through a 32-bit PDE with PS=1 to a
    4 MiB frame below 4 GiB."""
    t = trace.Trace("v6.6", "shadow", PSE32, (
        ev.MovCr3(0x900000), ev.Invlpg(0x600000), ev.MovCr4(0x90), ev.MovCr3(0x1000),
        ev.Invlpg(0x700000), ev.Smi(), ev.Rsm()), page=Page(size=PAGE_4M))
    assert trace.parse(trace.dumps(t), "x") == t and '"size": "4M"' in trace.dumps(t)
    for config in ("shadow", "tdp", "nested-ept"):
        other = replace(t, config=config)
        assert not simulate.run(other, POLICIES["v6.6"]).violated
        assert not replay(other, POLICIES["v6.6"]).violated
    with pytest.raises(NotModeled, match="a 4 MiB watched page is modeled only"):
        simulate.run(replace(t, initial=LONG), POLICIES["v6.6"])


@pytest.mark.parametrize("initial,size,why", [
    (replace(PAE, cr4=0), PAGE_2M, "a 2 MiB or 1 GiB watched page under 32-bit"),
    (PAE, PAGE_1G, "a 1 GiB watched page under 32-bit or PAE paging")])
def test_a_trace_starting_in_a_mode_that_does_not_map_its_page_is_rejected(initial, size, why):
    t = replace(trace.load(F10), initial=initial, events=(), page=Page(size=size))
    for run in (lambda: simulate.run(t, POLICIES["v6.6"]), lambda: replay(t, POLICIES["v6.6"])):
        with pytest.raises(NotModeled, match=f"initial: {why}"):
            run()


def test_the_page_size_in_a_trace():
    t = trace.load(F10_1G)
    assert t.page.size == PAGE_1G and '"size": "1G"' in trace.dumps(t)
    assert trace.parse(trace.dumps(t), "x") == t
    assert '"page"' not in trace.dumps(replace(t, page=replace(t.page, size=PAGE_4K)))
    for bad, said in (('{"size": "8M"}', '"8M"'), ('{"size": 2}', "2"), ('{"large": true}', "")):
        doc = trace.dumps(t).replace('{\n  "size": "1G"\n }', bad)
        with pytest.raises(trace.TraceError,
                           match="unknown field 'large'" if not said else f"got {said}"):
            trace.parse(doc, "x")


def test_f10_on_both_levels_and_only_with_a_large_page_under_shadow_paging():
    t = trace.load(F10)
    assert t.page.size == PAGE_2M and trace.parse(trace.dumps(t), "x").page.size == PAGE_2M
    run = simulate.run(t, POLICIES["v6.6"])
    assert run.violation is not None
    index, v = run.violation
    assert (index, v.prop) == (2, "freshness") and "since INVLPG 0x500000" in v.message
    out = replay(t, POLICIES["v6.6"])
    assert (out.event, out.observed, out.allowed) == (2, 0x1_0020_0000, (0x1_0000_0000,))
    for other in (replace(t, page=replace(t.page, size=PAGE_4K)), replace(t, config="tdp")):
        assert not simulate.run(other, POLICIES["v6.6"]).violated
        assert not replay(other, POLICIES["v6.6"]).violated


def test_f10_with_a_1g_page_from_another_2m_region_of_it():
    """F10's INVLPG of an address outside the 2 MiB page but inside the 1 GiB one: stale only
    with a 1 GiB page, on both levels; the replay reads the other tables' 1 GiB frame at
    WATCHED_VA's offset in it."""
    t = trace.load(F10_1G)
    assert t.events[-1] == ev.Invlpg(OTHER_2M)
    index, v = simulate.run(t, POLICIES["v6.6"]).violation
    assert (index, v.prop) == (2, "freshness") and "since INVLPG 0x10400000" in v.message
    out = replay(t, POLICIES["v6.6"])
    assert (out.event, out.observed, out.allowed) == (2, 0x110_0040_0000, (0x100_0040_0000,))
    assert "since INVLPG 0x10400000 at event 2" in out.message
    for other in (replace(t, page=replace(t.page, size=PAGE_2M)), replace(t, config="tdp")):
        assert not simulate.run(other, POLICIES["v6.6"]).violated
        assert not replay(other, POLICIES["v6.6"]).violated


def test_the_explicit_search_finds_f10_as_the_shortest_in_v6_6_shadow():
    found = explore.search(POLICIES["v6.6"], CONFIGS["shadow"], ("freshness",),
                           {"mov_cr3", "invlpg"}, 3, 120)
    assert found is not None and found.page.size == PAGE_2M
    assert [e.op for e in found.events] == ["mov_cr3", "mov_cr3", "invlpg"]
    assert found.events[-1] == ev.Invlpg(OTHER_4K)


def test_the_f10_fix_holds_on_both_levels():
    fix = policies.resolve(policies.load_file(str(FIX)))
    for t in (trace.load(F10), trace.load(F10_1G)):
        assert not simulate.run(t, fix).violated
        assert not replay(t, fix).violated
