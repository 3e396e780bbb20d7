"""The watched page's rights (docs/model.md "Page rights"): its U/S, R/W and XD bits are state,
free in the initial states and named by a trace; no step reads them but the scope's XD rule, so
every verdict is the same for every right, on both levels; the concrete level builds the leaf
with them and reads it as the page's CPL allows."""

from __future__ import annotations

from dataclasses import replace

import pytest
from pysmt.shortcuts import And, Not

from formal.cli import render
from formal.concrete.pte import PTE_P, PTE_XD
from formal.concrete.replay import replay
from formal.concrete.shadow import GuestWorld
from formal.engines.checker import Checker
from formal.errors import NotModeled
from formal.model import arch, simulate, trace
from formal.model import events as ev
from formal.model.bits import PAGE_2M, PAGE_4M
from formal.model.scope import NX_ELSEWHERE, initial_not_modeled, not_modeled
from formal.model.state import CONFIGS, Page, Regs
from specs import POLICIES
from tests.conftest import LONG_MODE, PSE32, TRACES
from tests.test_symbolic_agreement import relation

F1 = TRACES / "invlpg-shared-pcid.json"
F10 = TRACES / "large-invlpg-other-4k.json"
SUPERVISOR_RO_NX = Page(user=False, writable=False, nx=True)
# PAE paging with EFER.NXE=1, and 4-level paging with NXE=0.
PAE_NX = Regs(cr0=0x8000_0011, cr3=0x1000, cr4=0x20, efer=0x800)
LONG_NO_NX = replace(LONG_MODE, efer=0x500)


def test_a_trace_names_the_rights_and_omits_the_defaults():
    t = trace.parse('{"format": "flushproof-trace/1", "policy": "v6.6", "config": "shadow", '
                    '"initial": {"cr0": "0x80010033", "cr3": "0x1000", "cr4": "0x20", '
                    '"efer": "0xd00"}, "page": {"user": false, "writable": false, "nx": true}, '
                    '"events": []}')
    assert t.page == SUPERVISOR_RO_NX
    assert '"page": {\n  "user": false,\n  "writable": false,\n  "nx": true\n }' \
        in trace.dumps(t)
    assert trace.parse(trace.dumps(t)) == t
    assert '"page"' not in trace.dumps(replace(t, page=Page()))


@pytest.mark.parametrize("field", ["user", "writable", "nx"])
def test_a_right_that_is_not_a_boolean_is_named(field):
    doc = ('{"format": "flushproof-trace/1", "policy": "v6.6", "config": "shadow", '
           '"initial": {"cr0": "0x11", "cr3": "0x1000", "cr4": "0x0", "efer": "0x0"}, '
           f'"page": {{"{field}": 1}}, "events": []}}')
    with pytest.raises(trace.TraceError,
                       match=f"page: field '{field}': expected true or false, got 1"):
        trace.parse(doc, "t.json")


@pytest.mark.parametrize("regs,page,why", [
    (LONG_MODE, Page(nx=True), None), (PAE_NX, Page(nx=True), None),
    (LONG_NO_NX, Page(nx=True), NX_ELSEWHERE), (PSE32, Page(nx=True), NX_ELSEWHERE),
    (replace(PSE32, cr0=0x11), Page(nx=True), None),  # paging off: XD means nothing
    (replace(PSE32, cr0=0x11), Page(size=PAGE_4M, nx=True), NX_ELSEWHERE),
    (PSE32, Page(size=PAGE_4M, user=False, writable=False), None),
    (LONG_NO_NX, Page(user=False, writable=False), None)])
def test_an_execute_disable_page_only_where_xd_is_not_reserved(regs, page, why):
    assert initial_not_modeled(arch.watching(regs, page)) == why


def test_an_execute_disable_page_leaves_the_model_with_efer_nxe_or_pae():
    v, shadow = arch.watching(LONG_MODE, Page(nx=True)), CONFIGS["shadow"]
    for e in (ev.WrmsrEfer(0x500), ev.SetSregs(0x8001_0011, 0x1000, 0, 0),
              ev.SetSregs(LONG_MODE.cr0, 0x1000, 0x20, 0x500)):
        assert not_modeled(shadow, v, e) == NX_ELSEWHERE
        assert not_modeled(shadow, replace(v, page_nx=False), e) is None
    assert not_modeled(shadow, v, ev.WrmsrEfer(0xD00)) is None
    assert not_modeled(shadow, v, ev.Smi()) is None  # SMI turns paging off


def test_the_concrete_leaf_has_the_pages_bits():
    assert GuestWorld(SUPERVISOR_RO_NX).leaf_flags == PTE_P | PTE_XD


@pytest.mark.parametrize("page", [Page(), SUPERVISOR_RO_NX, Page(user=False),
                                  Page(writable=False, global_=True)], ids=repr)
def test_f1_is_the_same_violation_on_every_kind_of_page(page):
    """F1 (v5.17 shadow, CR4.SMEP and SMAP on): the same event and the same GPAs on both levels;
    the replay's read is a supervisor one on a supervisor page."""
    t = replace(trace.load(F1), page=page)
    index, v = simulate.run(t, POLICIES[t.policy]).violation
    assert (index, v.prop) == (3, "freshness")
    out = replay(t, POLICIES[t.policy])
    assert (out.event, out.observed, out.allowed) == (3, 0x200_0000, (0x200_2000, 0x200_1000))
    assert f"L1 {'user' if page.user else 'supervisor'} read of VA 0x400000" in out.message


def test_f10_with_a_supervisor_read_only_execute_disable_2m_page():
    t = trace.load(F10)
    t = replace(t, page=replace(SUPERVISOR_RO_NX, size=PAGE_2M))
    assert simulate.run(t, POLICIES["v6.6"]).violation[0] == 2
    out = replay(t, POLICIES["v6.6"])
    assert (out.event, out.observed, out.allowed) == (2, 0x1_0020_0000, (0x1_0000_0000,))


def test_a_trace_with_an_execute_disable_page_under_efer_nxe_0_is_rejected():
    t = replace(trace.load(F1), initial=replace(trace.load(F1).initial, efer=0x500),
                page=Page(nx=True))
    for run in (lambda: simulate.run(t, POLICIES[t.policy]),
                lambda: replay(t, POLICIES[t.policy])):
        with pytest.raises(NotModeled, match="initial: an execute-disable watched page"):
            run()


def test_the_initial_states_hold_every_right_and_no_execute_disable_4m_page():
    """Vacuity of the new bits: the relation's initial states include a supervisor, read-only,
    execute-disable page (and each right's opposite), and exclude an execute-disable 4 MiB
    page."""
    rel = relation("v6.6", "tdp")
    ck = Checker()
    user, writable, nx = (rel.pre[f"page_{a}"] for a in ("user", "writable", "nx"))
    assert ck.sat("rights", And(rel.init, Not(user), Not(writable), nx))
    assert ck.sat("rights", And(rel.init, user, writable, Not(nx)))
    assert not ck.sat("nx-4m", And(rel.init, nx, rel.pre["page_4m"]))


def test_simulate_names_a_page_that_is_not_plain():
    t = replace(trace.load(F10), page=replace(SUPERVISOR_RO_NX, size=PAGE_2M))
    head = render.outcome_text(simulate.run(t, POLICIES["v6.6"])).splitlines()[1]
    assert head == "watched page: VA 0x400000, 2 MiB, supervisor, read-only, execute-disable"
    plain = render.outcome_text(simulate.run(trace.load(F1), POLICIES["v5.17"]))
    assert "watched page" not in plain
