"""A global watched page (docs/model.md "Global pages"): which invalidations cover a global
translation (SDM Vol. 3A §4.10.4.1), who may use one under another PCID (§4.10.2.4: the guest's
own tables under TDP; never KVM's shadow PTEs, which carry no G), and a policy that only a global
page exposes, on both levels."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from formal.cli import policies
from formal.concrete.replay import replay
from formal.concrete.shadow import HwContext, Seen
from formal.model import arch, bits, properties, simulate, trace
from formal.model import events as ev
from formal.model.machine import Machine
from formal.model.state import CONFIGS, Copies, HwTlb, Page, Regs, Vcpu
from specs import POLICIES
from tests.conftest import TRACES

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "v6_6_invlpg_current_pcid.py"
TRACE = TRACES / "global-invlpg-other-pcid.json"
# Long mode, CR4.PCIDE and CR4.PGE, running under PCID 1.
PCID1 = Regs(cr0=0x8001_0033, cr3=0x1001, cr4=0x200A0, efer=0xD00)
VA = arch.WATCHED_VA
NOFLUSH = bits.CR3_NOFLUSH


def invals(e: ev.Event, guest_mode: bool = False) -> tuple[arch.Inval, ...]:
    cfg = CONFIGS["nested-ept" if guest_mode or isinstance(e, ev.Invvpid) else "shadow"]
    a = arch.step(cfg, Vcpu(regs=PCID1), e)
    assert a.fault is None
    return a.invals


# (event, covers the page's non-global translation under PCID 1, a global one cached under
# PCID 1, a global one cached under PCID 2).
RULES = [
    (ev.MovCr3(0x2001), True, False, False),       # "globals stay"
    (ev.Invlpg(VA), True, True, True),              # "global entries ... regardless of PCID"
    (ev.Invpcid(0, 1, VA), True, False, False),     # types 0, 1, 3: "except global translations"
    (ev.Invpcid(1, 1, 0), True, False, False),
    (ev.Invpcid(2, 0, 0), True, True, True),
    (ev.Invpcid(3, 0, 0), True, False, False),
    (ev.MovCr4(0x20020), True, True, True),         # PGE toggled: everything
    (ev.MovCr4(0x1200A0), True, True, False),       # SMEP set: the current PCID's, globals too
    (ev.PvTlbFlush(), True, True, True),
]


@pytest.mark.parametrize("e,plain,glob_here,glob_there", RULES, ids=[r[0].op for r in RULES])
def test_which_invalidations_cover_a_global_translation(e, plain, glob_here, glob_there):
    [inval] = invals(e)
    assert (inval.covers(0, 1), inval.covers(0, 1, True), inval.covers(0, 2, True)) \
        == (plain, glob_here, glob_there)


def test_invvpid_retaining_globals_spares_them_and_single_context_does_not():
    [keep] = invals(ev.Invvpid(3, 5, 0))
    [single] = invals(ev.Invvpid(1, 5, 0))
    assert (keep.covers(5, 1), keep.covers(5, 1, True)) == (True, False)
    assert (single.covers(5, 1), single.covers(5, 1, True)) == (True, True)


def test_a_translation_is_global_only_with_cr4_pge():
    assert arch.global_translation(Vcpu(regs=PCID1, page_global=True))
    assert not arch.global_translation(Vcpu(regs=replace(PCID1, cr4=0x20020), page_global=True))
    assert not arch.global_translation(Vcpu(regs=PCID1))


@pytest.mark.parametrize("config,page_global,violated", [
    ("tdp", True, True),       # the hardware walks the guest's PTE, G=1: usable under PCID 2
    ("tdp", False, False),     # a non-global entry under PCID 1 is not used under PCID 2
    ("shadow", True, False),   # cached through KVM's SPTE, which has no G
])
def test_a_stale_global_entry_is_used_under_another_pcid_only_where_the_hardware_walks_g(
        config, page_global, violated):
    policy = POLICIES["v6.6"](CONFIGS[config])
    m = Machine(policy, replace(PCID1, cr3=0x1002), page=Page(global_=page_global))
    m.start()
    glob = policy.hw_global(m.v, 0)
    m.v.hw[0] = [HwTlb(tag=0x001, local=Copies(old=not glob, stale=not glob),
                        glob=Copies(old=glob, stale=glob))]
    assert properties.conditions(policy, m.v)["freshness"] is violated


def test_the_concrete_hardware_context_serves_global_entries_under_every_pcid():
    hw = HwContext()
    hw.fill(1, Seen(0x2000000, None, "walk", global_=True))
    hw.fill(1, Seen(0x2001000, None, "walk"))
    assert [s.gpa for s in hw.held(2)] == [0x2000000]
    assert [s.gpa for s in hw.held(1)] == [0x2000000, 0x2001000]


def test_the_trace_names_a_global_page_and_round_trips():
    t = trace.load(TRACE)
    assert t.page.global_
    assert trace.parse(trace.dumps(t)) == t
    assert '"page"' not in trace.dumps(replace(t, page=replace(t.page, global_=False)))


@pytest.mark.parametrize("page,message", [
    ('{"global": "yes"}', "page: field 'global': expected true or false, got \"yes\""),
    ('{"size": 2}', "page: field 'size': expected one of \"4K\", \"2M\", \"4M\", \"1G\", got 2"),
    ('{"large": true}', "page: unknown field 'large'"),
    ('[]', "field 'page': expected an object"),
])
def test_a_malformed_page_is_named(page, message):
    text = TRACE.read_text().replace('"global": true', '"x": 0').replace(
        '"page": {\n  "x": 0\n }', f'"page": {page}')
    with pytest.raises(trace.TraceError, match=message.replace("(", r"\(")):
        trace.parse(text)


def test_a_policy_that_resyncs_only_the_current_pcid_is_stale_only_for_a_global_page(
        monkeypatch):
    """examples/v6_6_invlpg_current_pcid.py on the corpus trace: freshness at event 3 on both
    levels, with the addresses the replay reads; with a non-global page, and under v6.6, both
    levels hold."""
    monkeypatch.setattr(policies, "_LOADED", {})
    monkeypatch.setattr(policies, "_FILES", {})
    name = policies.load_file(str(EXAMPLE))
    t = trace.override(trace.load(TRACE), name, None)
    cls = policies.resolve(name)
    run = simulate.run(t, cls)
    assert run.violation is not None
    assert (run.violation[0], run.violation[1].prop) == (3, "freshness")
    out = replay(t, cls)
    assert (out.event, out.observed, out.allowed) == (3, 0x200_0000, (0x200_2000, 0x200_1000))
    plain = replace(t, page=replace(t.page, global_=False))
    assert simulate.run(plain, cls).violation is None
    assert replay(plain, cls).event is None
    base = trace.load(TRACE)
    assert simulate.run(base, POLICIES["v6.6"]).violation is None
    assert replay(base, POLICIES["v6.6"]).event is None


@pytest.mark.parametrize("other_tables,page_global,violated", [
    (0x1000, True, False),   # PCID 0 re-cached the global translation through 0x1000
    (0x1000, False, False),  # INVLPG under PCID 0 left PCID 2's translation alone
    (0x2000, True, True),    # the global entry PCID 0 re-cached came through other tables
    (0x2000, False, False),
])
def test_a_global_entry_cached_under_one_pcid_lets_a_root_of_another_keep_its_old_translation(
        other_tables, page_global, violated):
    """509bfe3-no-pcide-free keeps PCID 2's root across a NOFLUSH switch to PCID 0 and back.
    After an INVLPG of the global page under PCID 0, the guest runs there and may cache the
    translation again as a global entry, usable under PCID 2 (SDM Vol. 3A §4.10.2.4): if it
    came through the tables PCID 2's root shadows, the root's old translation after the PTE
    write is one the TLB could serve.  Both levels agree; bmc once found the first row refuted
    on the abstract level only (Mechanism._share_global)."""
    t = trace.Trace("509bfe3-no-pcide-free", "shadow", replace(PCID1, cr3=0x1002),
                    (ev.MovCr3(NOFLUSH | other_tables), ev.Invlpg(VA), ev.GuestPteWrite(0x1000),
                     ev.MovCr3(NOFLUSH | 0x1002)), "test", Page(global_=page_global))
    cls = POLICIES[t.policy]
    run, out = simulate.run(t, cls), replay(t, cls)
    if violated:
        assert run.violation is not None
        assert (run.violation[0], run.violation[1].prop) == (3, "freshness")
        assert (out.event, out.observed, out.allowed) == (3, 0x200_0000, (0x200_2000, 0x200_1000))
    else:
        assert run.violation is None
        assert out.event is None


# After F9's missed PGE flush and the toggle back (with OSXSAVE set in the same write, so that
# it exits to KVM on an EPT host: traces/global-kept-past-pge-toggle.json), L2 (PCID 0, tables
# 0x11000) does one more thing; the hardware still holds the global copy of GPA 0x2001000
# cached with PGE=1.  (event, the read at event 3 on v6.6 or None); v6.12 flushes vpid01 and
# holds on every one.
AFTER_PGE_TOGGLE = [
    # drops the architecture's non-global copy, not the hardware's global one
    (ev.MovCr3(0x1000), 0x200_1000),
    # the same translation, non-global, is still allowed under PCID 0 (HwTlb.excused)...
    (ev.GuestPteWrite(0x11000), None),
    (ev.MovCr3(NOFLUSH | 0x1000), None),
    # ...but not under PCID 2, where the global copy may be used too
    (ev.MovCr3(NOFLUSH | 0x1002), 0x200_1000),
    # through the same tables it is what the walk gives
    (ev.MovCr3(NOFLUSH | 0x11002), None),
]


@pytest.mark.parametrize("policy", ["v6.6", "v6.12"])
@pytest.mark.parametrize("third,read", AFTER_PGE_TOGGLE, ids=[str(e) for e, _ in AFTER_PGE_TOGGLE])
def test_a_global_copy_kept_past_a_missed_pge_flush_is_seen_at_both_levels(policy, third, read):
    """v6.6 runs an L2 without a VPID on vpid01 but points the TLB_FLUSH_GUEST of L2's CR4.PGE
    toggles at vpid02 (F9, docs/findings.md), so the hardware keeps the global copy L2 cached
    with PGE=1 through the tables at 0x11000.  After the toggle back the architecture holds the
    translation again, as a non-global entry under PCID 0 only.  The abstract model agrees with
    the replay on each next event: the record's global part stays stale through the non-global
    re-entry, excused only under PCID 0 while the non-global copy is allowed (docs/model.md
    "Global pages")."""
    t = trace.Trace(policy, "nested-ept", replace(PCID1, cr3=0x1000, cr4=0x20),
                    (ev.VmEntry(0x8001_0033, 0x11000, 0x20, 0xD00, 0x9000, 0),
                     ev.MovCr4(0x200A0), ev.MovCr4(0x60020), third), "test", Page(global_=True))
    out = replay(t, POLICIES[policy])
    run = simulate.run(t, POLICIES[policy])
    if policy == "v6.6" and read is not None:
        assert (out.event, out.observed, out.allowed) == (3, read, (0x200_0000,))
        assert run.violation is not None and run.violation[0] == 3
        # under PCID 2 the copy used is the global one PCID 0 cached: the message says whose
        other = "for tag 0x2 (a global copy cached under tag 0x0, usable under every PCID"
        assert (other in run.violation[1].message) == (third == ev.MovCr3(NOFLUSH | 0x1002))
    else:
        assert out.event is None
        assert run.violation is None
