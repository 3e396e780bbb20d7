"""Explicit-state search for a violation: breadth-first over concrete events from a few legal
initial states (each with a 2 MiB and a 1 GiB watched page, then a non-global and a global
4 KiB one), on the model's own step (formal.model.machine.execute), states hashed.

Events are generated from the current state, not written per policy: every register write
toggles one bit that the architecture or a role reads (CR0.PG/WP, CR4.PGE/PCIDE/PAE/PSE/SMEP/
SMAP/PKE, EFER.NX), CR3 switches among two tables and two PCIDs with and without NOFLUSH, the
watched page's invalidations, PTE writes (the watched page's and another's) to either table, and
every event without operands; with nested virtualization, VM entries to a third table under
VPID/ASID 0, 1 or 2.  A violation it finds is a real one; whether it is shortest is bmc's
question (formal.cli.prove).
"""

from __future__ import annotations

import pickle
import time
from collections.abc import Iterator
from dataclasses import dataclass

from formal.model import arch, bits
from formal.model import events as ev
from formal.model.kvm import Mechanism
from formal.model.machine import enter, execute
from formal.model.properties import ModelError, Violation
from formal.model.scope import initial_not_modeled, not_modeled
from formal.model.state import Config, Page, Regs, Vcpu
from formal.model.trace import Trace

TABLES = (0x1000, 0x2000)
PCIDS = (0, 1)
L2_TABLE = 0x3000
NESTED_PGD = 0x9000
_LONG = Regs(0x8001_0033, 0x1000, bits.CR4_PAE, bits.EFER_LME | bits.EFER_LMA | bits.EFER_NX)
INITIAL = (_LONG, Regs(_LONG.cr0, 0x1001, bits.CR4_PAE | bits.CR4_PCIDE, _LONG.efer))
CR0_BITS = (bits.CR0_PG, bits.CR0_WP)
# The addresses per-address invalidations name: the watched page, another 4 KiB page of its
# 2 MiB page and one of its 1 GiB page outside that (hits only when the watched page is that
# large, arch.page_hit).
VAS = (arch.WATCHED_VA, arch.WATCHED_VA | 0x10_0000, arch.WATCHED_VA | 0x1000_0000)
# The watched pages tried, large ones first: an invalidation of another 4 KiB page of a large
# page is a violation one event sooner than F1's (docs/findings.md F10), and breadth-first
# search meets it earlier at each depth (docs/performance.md, "Large pages first").  Each is a
# user page with R/W=1 and XD=0: no step reads those bits but the scope's XD rule
# (formal.model.state.Vcpu.page_nx), so other values would only repeat the search.
PAGES = (Page(size=bits.PAGE_2M), Page(size=bits.PAGE_1G), Page(), Page(global_=True))
CR4_BITS = (bits.CR4_PGE, bits.CR4_PCIDE, bits.CR4_PAE, bits.CR4_PSE, bits.CR4_SMEP,
            bits.CR4_SMAP, bits.CR4_PKE)


def events(cfg: Config, v: Vcpu, kinds: set[str]) -> Iterator[ev.Event]:
    """The events tried from state v (of the kinds named)."""
    r = v.regs
    pcid = r.cr3 & bits.CR3_PCID_MASK
    out: list[ev.Event] = [ev.MovCr3(t | p | nf) for t in TABLES for p in PCIDS
                           for nf in (0, bits.CR3_NOFLUSH)]
    out += [ev.GuestPteWrite(t) for t in TABLES] + [ev.GuestPteWriteOther(t) for t in TABLES]
    out += [e for va in VAS for e in (ev.Invlpg(va), ev.Invpcid(0, pcid, va))]
    out += [ev.Invpcid(1, p, 0) for p in PCIDS] + [ev.Invpcid(2, 0, 0), ev.Invpcid(3, 0, 0)]
    out += [ev.MovCr4(r.cr4 ^ b) for b in CR4_BITS] + [ev.MovCr0(r.cr0 ^ b) for b in CR0_BITS]
    out += [ev.WrmsrEfer(r.efer ^ bits.EFER_NX)]
    out += [ev.SetSregs(r.cr0, t | pcid, r.cr4, r.efer) for t in TABLES]
    out += [ev.PvTlbFlush(), ev.Smi(), ev.Rsm(), ev.Init(), ev.CpuidUpdate()]
    if cfg.nested is not None:
        ept = NESTED_PGD if cfg.nested_tdp else 0
        out += [ev.VmEntry(_LONG.cr0, L2_TABLE, _LONG.cr4, _LONG.efer, ept, vpid)
                for vpid in (0, 1, 2)]
        out += [ev.VmExit(), ev.Invvpid(1, 1, 0), ev.GuestPteWrite(L2_TABLE)]
        out += [ev.Invlpga(va, 1) for va in VAS]
    return (e for e in out if e.op in kinds)


@dataclass
class _Node:
    vs: tuple[Vcpu, ...]  # the policy's vCPU, and in lockstep the base's
    # vs pickled: the key of its state (two equal states pickle alike, as the dataclasses
    # are built in one order) and the source of its children's copies, cheaper than deepcopy.
    data: bytes
    parent: _Node | None
    event: ev.Event | None
    initial: Regs
    page: Page


def search(policy_cls: type[Mechanism], cfg: Config, props: tuple[str, ...],
           kinds: set[str], depth: int, seconds: float,
           base_cls: type[Mechanism] | None = None) -> Trace | None:
    """A trace of at most depth events that violates one of props at its last event (its
    first entry included), breadth-first; None if there is none within depth or the time runs
    out.  Model errors are left to the engines (a state that raises one is not expanded).

    With base_cls, the two policies run in lockstep on the same events, as in the product
    relation (formal.symbolic.product): the trace violates one of props under policy_cls at
    its last event where base_cls does not."""
    stop = time.monotonic() + seconds
    policies = [policy_cls(cfg)] + ([base_cls(cfg)] if base_cls is not None else [])
    seen: set[bytes] = set()
    frontier: list[_Node] = []
    for page in PAGES:
        for regs in INITIAL:
            vs = tuple(arch.watching(regs, page) for _ in policies)
            if initial_not_modeled(vs[0]):
                continue
            try:
                for policy, v in zip(policies, vs, strict=True):
                    policy.start(v)
                added = _added([enter(policy, v, props, None)
                                for policy, v in zip(policies, vs, strict=True)], props)
            except ModelError:
                continue
            if added:
                return Trace(policy_cls.name, cfg.name, regs, (), "found by explicit search",
                             page)
            frontier.append(_Node(vs, _pickled(vs), None, None, regs, page))
    for _ in range(depth):
        nxt: list[_Node] = []
        for node in frontier:
            for e in events(cfg, node.vs[0], kinds):
                if time.monotonic() > stop:
                    return None
                if not_modeled(cfg, node.vs[0], e):
                    continue
                ws = pickle.loads(node.data)
                try:
                    steps = [_step(p, w, e, props) for p, w in zip(policies, ws, strict=True)]
                except ModelError:
                    continue
                if any(fault for fault, _ in steps):
                    continue  # a fault on one side only is the product's model error
                if _added([viol for _, viol in steps], props):
                    return _trace(policy_cls, cfg, _Node(ws, b"", node, e, node.initial,
                                                         node.page))
                data = _pickled(ws)
                if data not in seen:
                    seen.add(data)
                    nxt.append(_Node(ws, data, node, e, node.initial, node.page))
        frontier = nxt
    return None


def _step(policy: Mechanism, v: Vcpu, e: ev.Event,
          props: tuple[str, ...]) -> tuple[str | None, list[Violation]]:
    policy.log = []
    return execute(policy, v, e, props)


def _added(violations: list[list[Violation]], props: tuple[str, ...]) -> bool:
    """Whether the first side violates one of props that the other side (if any) does not."""
    mine = {x.prop for x in violations[0]} & set(props)
    for other in violations[1:]:
        mine -= {x.prop for x in other}
    return bool(mine)


def _pickled(vs: tuple[Vcpu, ...]) -> bytes:
    return pickle.dumps(vs, pickle.HIGHEST_PROTOCOL)


def _trace(policy_cls: type[Mechanism], cfg: Config, node: _Node) -> Trace:
    found: list[ev.Event] = []
    at: _Node | None = node
    while at is not None and at.event is not None:
        found.append(at.event)
        at = at.parent
    return Trace(policy_cls.name, cfg.name, node.initial, tuple(reversed(found)),
                 "found by explicit search", node.page)
