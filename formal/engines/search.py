"""Proof engines over a transition system (formal.engines.system): bmc, kind, houdini, pdr.

Verdicts (Verdict):
- `refuted`: a counterexample, the solver's assignment to a shortest path (bmc), which the
  caller turns into a trace and confirms on the concrete simulator;
- `proved`: only with a certificate that a solver of another code base than the search's
  (z3) re-checked, every query unsat (Checker.recheck: yices by default);
- `bounded(N)`: no violation within N events, nothing more;
- `unknown`: anything else (timeout, solver `unknown`, a failed re-check, a reachable model
  error), always with its cause.

The property is checked at the guest entry that ends each step, so "bad" is a predicate of a
step (formal.engines.unroll); a model error (the system contradicting itself) counts as bad
too: nothing is proved about a model that contradicts itself.  The engines know the terms of
the system, not what they stand for.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from functools import partial

from pysmt.fnode import FNode
from pysmt.shortcuts import (
    BV,
    And,
    BVAnd,
    BVLShr,
    EqualsOrIff,
    Iff,
    Implies,
    Not,
    Or,
    Symbol,
)

from formal.engines import ic3, parallel
from formal.engines.checker import Checker
from formal.engines.system import EventRelation, Relation
from formal.engines.unroll import Unroller, renaming
from formal.solvers import Inconclusive

ENGINES = ("auto", "bmc", "kind", "houdini", "pdr")


class Verdict(StrEnum):
    PROVED = "proved"
    REFUTED = "refuted"
    BOUNDED = "bounded"
    UNKNOWN = "unknown"


@dataclass
class Witness:
    """The solver's assignment to a path of `depth` events that ends in a bad step (or, with
    model_error, in a model error): the values of every state variable of s0 and of every
    step's selector and operands (Unroller.path_vars)."""

    depth: int
    values: dict[FNode, object]
    model_error: bool = False


@dataclass
class Result:
    verdict: Verdict
    engine: str
    bound: int = 0  # events explored (bmc), k (kind), events of the counterexample
    reason: str = ""
    witness: Witness | None = None
    certificate: str = ""  # what was re-checked, in words, and where it was written
    checker: str = ""  # the solver that re-checked the certificate
    checked: int = 0  # how many queries it answered unsat
    by: dict[str, int] = field(default_factory=dict)  # of those, how many each solver answered
    # houdini's certificate, the conjunction of these lemmas over the pre-state (what a stored
    # certificate keeps: formal.engines.certificate)
    lemmas: list[FNode] = field(default_factory=list)
    times: dict[str, float] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"bounded({self.bound})" if self.verdict == Verdict.BOUNDED else str(self.verdict)


# Readability preferences for a counterexample of a given depth (tried in order as one extra
# constraint each, the first satisfiable one kept): given by the caller, who knows what the
# variables mean.
Preferences = Callable[[Unroller, int], list[FNode]]


# -- bmc --

def bmc(rel: Relation, props: tuple[str, ...], bound: int, checker: Checker | None = None,
        start_depth: int = 0, prefer: Preferences | None = None) -> Result:
    """Iterative deepening from depth start_depth (0 = the first guest entry).  Depth d asks
    for a violation (or a model error) at its last step only: every shallower depth was
    unsatisfiable, so the first counterexample found is a shortest one."""
    ck = checker or Checker()
    un = Unroller(rel)
    t0 = time.perf_counter()
    path = [un.init()]
    d = start_depth
    try:
        for d in range(bound + 1):
            if d:
                path.append(un.trans(d))
            if d < start_depth:
                continue
            ck.progress(f"bmc depth {d} of {bound}")
            err = un.init_error() if d == 0 else un.error(d)
            is_err = Symbol(f"model_error{d}")
            query = And(_at(un, path, d, props), Iff(is_err, err))
            if not ck.sat(f"bmc-{d}", query, solver=ck.decider):
                continue
            values = _solve_nicely(ck, un, query, d, [is_err], prefer)
            times = {"bmc": time.perf_counter() - t0}
            cex = Witness(d, values, bool(values[is_err]))
            if cex.model_error:
                return Result(Verdict.UNKNOWN, "bmc", d, witness=cex, times=times,
                              reason=(f"model error reachable in {d} events: a policy spec and "
                                      "the architecture disagree (a bug in the model, not a "
                                      "verdict)"))
            return Result(Verdict.REFUTED, "bmc", d, witness=cex, times=times)
    except Inconclusive as exc:
        done = f"depths {start_depth}-{d - 1} have no violation" if d > start_depth else \
            "no depth finished"
        return Result(Verdict.UNKNOWN, "bmc", max(d - 1, 0), reason=(
            f"{exc} at bmc depth {d} ({done})"), times={"bmc": time.perf_counter() - t0})
    return Result(Verdict.BOUNDED, "bmc", bound, times={"bmc": time.perf_counter() - t0})


def _at(un: Unroller, path: list[FNode], d: int, props: tuple[str, ...]) -> FNode:
    """bmc's query at depth d: path (the initial state and d steps) ends in a violation of props
    or a model error."""
    bad = un.init_bad(props) if d == 0 else un.bad(d, props)
    return And(path + [Or(bad, un.init_error() if d == 0 else un.error(d))])


def depths(rel: Relation, props: tuple[str, ...], bound: int,
           checker: Checker | None = None) -> Iterator[tuple[int, bool]]:
    """For depth 0, 1, ... bound in turn, whether a violation of props or a model error is
    reachable in exactly that many events (bmc's query, without the model bmc reads from a
    satisfiable one); stops after the first reachable depth.  Raises Inconclusive as bmc
    would."""
    ck = checker or Checker()
    un = Unroller(rel)
    path = [un.init()]
    for d in range(bound + 1):
        if d:
            path.append(un.trans(d))
        reachable = bool(ck.sat(f"bmc-{d}", _at(un, path, d, props), solver=ck.decider))
        yield d, reachable
        if reachable:
            return


def _solve_nicely(ck: Checker, un: Unroller, query: FNode, depth: int, extra: list[FNode],
                  prefer: Preferences | None) -> dict:
    """A model of query, with the readability preferences if they are satisfiable too."""
    want = un.path_vars(depth) + extra
    for pref in prefer(un, depth) if prefer is not None else []:
        values = ck.sat("bmc-prefer", And(query, pref), want)
        if values:
            return values
    values = ck.sat("bmc-model", query, want)
    if not isinstance(values, dict):  # the decider said sat, the model's solver unsat
        raise Inconclusive(f"{ck.decider} and {ck.solver_name} disagree on bmc's depth {depth}: "
                           "satisfiable to one, not to the other")
    return values


# -- k-induction --

def _distinct(a: dict[str, FNode], b: dict[str, FNode]) -> FNode:
    return Or([Not(EqualsOrIff(a[n], b[n])) for n in a])


def step_query(un: Unroller, props: tuple[str, ...], k: int) -> FNode:
    """The induction step of depth k: from any state, k good steps along a simple path, then a
    bad step (or a model error).  Unsatisfiable means: k good steps are always followed by a
    good one."""
    steps = [un.trans(i) for i in range(1, k + 1)]
    good = [Not(Or(un.bad(i, props), un.error(i))) for i in range(1, k + 1)]
    states = [un.state(i) for i in range(k + 1)]
    simple = [_distinct(states[i], states[j]) for i in range(k + 1) for j in range(i + 1, k + 1)]
    last = Or(un.bad(k + 1, props), un.error(k + 1))
    return And(steps + good + simple + [last])


def kind(rel: Relation, props: tuple[str, ...], max_k: int, checker: Checker | None = None,
         prefer: Preferences | None = None) -> Result:
    """k-induction with simple-path constraints, k = 1 .. max_k.  The base case is bmc to
    depth k; a proof is re-checked by the re-checker (base and step queries, one-shot)."""
    ck = checker or Checker()
    un = Unroller(rel)
    t0 = time.perf_counter()
    try:
        for k in range(1, max_k + 1):
            ck.progress(f"kind k = {k}: base")
            base = bmc(rel, props, k, ck, 0 if k == 1 else k, prefer)
            if base.verdict != Verdict.BOUNDED:
                base.engine = "kind"
                return base
            ck.progress(f"kind k = {k}: step")
            if ck.sat(f"kind-step-{k}", step_query(un, props, k)):
                continue
            times = {"kind": time.perf_counter() - t0}
            return _recheck_kind(rel, un, props, k, ck, times)
    except Inconclusive as exc:
        return Result(Verdict.UNKNOWN, "kind", reason=str(exc),
                      times={"kind": time.perf_counter() - t0})
    return Result(Verdict.UNKNOWN, "kind", max_k, times={"kind": time.perf_counter() - t0},
                  reason=f"not {max_k}-inductive: the property needs strengthening")


def _recheck_kind(rel: Relation, un: Unroller, props: tuple[str, ...], k: int, ck: Checker,
                  times: dict[str, float]) -> Result:
    """The k-inductive argument, re-checked one-shot by the re-checker: no violation within k
    events from the initial states, and the induction step."""
    t0 = time.perf_counter()

    def base(d: int) -> FNode:
        if d == 0:
            return And(un.init(), un.init_bad(props))
        return And([un.init()] + [un.trans(i) for i in range(1, d + 1)]
                   + [Or(un.bad(d, props), un.error(d))])

    queries = [(f"kind-base-{d}", partial(base, d)) for d in range(k + 1)]
    queries.append(("kind-step", partial(step_query, un, props, k)))
    sat = ck.recheck(queries)
    times["recheck"] = time.perf_counter() - t0
    if sat is not None:
        return Result(Verdict.UNKNOWN, "kind", k, times=times, reason=(
            f"the re-check ({', '.join(ck.chain())}) does not confirm the {k}-induction "
            f"certificate: query {sat} is satisfiable"))
    return Result(Verdict.PROVED, "kind", k, times=times, checker=ck.checker,
                  checked=len(queries), by=dict(ck.rechecked_by), certificate=(
                      f"{k}-induction: base (depths 0..{k}) and step re-checked by "
                      f"{ck.answered_by()} in {len(queries)} one-shot queries"))


# -- pdr (IC3 over the state bits, formal.engines.ic3) --

def pdr(rel: Relation, props: tuple[str, ...], checker: Checker | None = None) -> Result:
    """IC3/PDR over the bits of the state (formal.engines.ic3).  Its converged frame is an inductive
    invariant; it counts only after the re-checker accepts it (recheck_invariant).  A chain of proof
    obligations from an initial state to a bad step is a real path, but not a shortest one:
    the verdict is then `unknown`, and bmc gives the shortest counterexample."""
    ck = checker or Checker()
    t0 = time.perf_counter()
    try:
        out = ic3.search(Unroller(rel), props, ck)
    except ic3.Violated as exc:
        where = "at the first guest entry" if exc.events == 0 else \
            f"on a path of {exc.events} event{'s' if exc.events > 1 else ''}"
        return Result(Verdict.UNKNOWN, "pdr", times={"pdr": time.perf_counter() - t0}, reason=(
            f"pdr found the property violated {where}; run bmc for a shortest counterexample"))
    except Inconclusive as exc:
        return Result(Verdict.UNKNOWN, "pdr", reason=str(exc),
                      times={"pdr": time.perf_counter() - t0})
    times = {"pdr": time.perf_counter() - t0}
    r = recheck_invariant(rel, props, out.invariant, ck, times, "pdr")
    if r.verdict == Verdict.PROVED:
        n = len(out.cubes)
        r.certificate = (f"IC3 frame {out.frame} ({n} clause{'s' if n != 1 else ''} over state "
                         f"bits, {out.queries} z3 queries); " + r.certificate)
    return r


def recheck_invariant(rel: Relation, props: tuple[str, ...], invariant: FNode, ck: Checker,
                      times: dict[str, float], engine: str) -> Result:
    """The one-shot queries of a certificate, asked of the re-checker (ck.checker, a solver of
    another code base than the search's), over s0 (and the successor's terms for the step):
    the initial states satisfy it and violate nothing at the first entry; every path of every
    event kind preserves it (consecution); no event from a state satisfying it violates a
    property or reaches a model error (safety, per event kind).  An event kind's transition
    relation is the disjunction of its paths (each its condition and its successor's terms,
    formal.engines.system.EventRelation.cases), so the per-path consecution queries are
    unsatisfiable exactly when the kind's is; one query per kind over the merged successor
    is far slower for cvc5 (docs/proving.md, "Cost").  The queries are independent: the
    re-checker answers them on every core (Checker.recheck).  Initiation and consecution do
    not depend on the property: once accepted for an invariant of this relation they are not
    asked again."""
    t0 = time.perf_counter()
    un = Unroller(rel)
    path = ck.dump("certificate-invariant", invariant)
    s0 = list(un.state(0).values())
    # the invariant is printed once per query script, as a function applied to s0 (and to the
    # successor in consecution): see formal.engines.parallel.Macro
    inv = parallel.macro("invariant", s0, invariant)
    holds = inv.apply
    queries = [("initiation", lambda: And(un.init(), Or(un.init_bad(props), un.init_error())))]
    if invariant not in rel.rechecked:
        queries.append(("initiation", lambda: And(un.init(), Not(holds(s0)))))
        for er in un.events:
            if er.post:
                queries += [(f"consecution-{er.name}-path{i}",
                             partial(path_consecution, un, er, holds, i))
                            for i in range(len(er.branches()))]
    for k, er in enumerate(un.events):
        queries.append((f"safety-{er.name}", partial(_safety, un, k, holds(s0), props)))
    sat = ck.recheck(queries, [inv])
    times["recheck"] = time.perf_counter() - t0
    if sat is not None:
        return Result(Verdict.UNKNOWN, engine, times=times, reason=(
            f"the re-check ({', '.join(ck.chain())}) rejects the invariant's certificate: the "
            f"{sat} query is satisfiable"))
    rel.rechecked.add(invariant)
    where = f" (written to {path})" if path else ""
    return Result(Verdict.PROVED, engine, times=times, checker=ck.checker, checked=len(queries),
                  by=dict(ck.rechecked_by),
                  certificate=(
                      f"inductive invariant re-checked by {ck.answered_by()} in {len(queries)} "
                      f"one-shot queries (initiation; consecution per path and safety for each "
                      f"of {len(un.events)} event kinds){where}: {_short(invariant)}"))


def _safety(un: Unroller, k: int, invariant: FNode, props: tuple[str, ...]) -> FNode:
    """From a state satisfying invariant, event kind k violates one of props or reaches a model
    error."""
    er = un.events[k]
    return And(invariant, Or(un.bad_event(1, k, props),
                             er.model_error.substitute(un.substitution(1, er))))


def path_consecution(un: Unroller, er: EventRelation, holds: Callable[[list[FNode]], FNode],
                     i: int) -> FNode:
    """The consecution query of path i of event kind er for an invariant (holds: the
    invariant of a state given by the values of s0's variables, in order): it holds at s0,
    the path's condition holds, and the successor falsifies it."""
    s0, rename = un.state(0), un.renamer(1, er)
    cond, post = er.branches()[i]
    return And(holds(list(s0.values())), rename(cond), Not(holds([rename(post[n]) for n in s0])))


def _short(f: FNode, limit: int = 400) -> str:
    """The first conjuncts of f, up to about limit characters.  Each is printed to a bounded
    depth: an invariant is a DAG whose tree printing can be exponentially long."""
    parts = list(f.args()) if f.is_and() else [f]
    text = ""
    for i, part in enumerate(parts):
        text += (" & " if i else "") + part.serialize(threshold=12)
        if len(text) > limit:
            return text[:limit] + " ..."
    return text


# -- houdini: the strongest conjunction of candidate lemmas that is inductive --

# Bit-vector fields whose single bits are lemma templates: the role words are bit-packed
# (formal.model.roles), and facts such as "no root carries the guest_mode role bit outside nested
# virtualization" are single bits.  Bit templates over every field (cr3, pgd, ...) multiply the
# candidates by ten for no lemma a proof has needed.
BIT_TEMPLATE_FIELDS = ("role",)
# Widths a field may fit in: a PCID (12 bits), a VPID (16, SDM Vol. 3C §25.6.12), a VPID:PCID
# tag (28, formal.model.arch.tag).  With "the low 12 bits are clear" (a page address): templates for
# every bit-vector field.
WIDTHS = (12, 16, 28)


def candidates(rel: Relation,
               bit_fields: tuple[str, ...] = BIT_TEMPLATE_FIELDS) -> dict[FNode, str]:
    """Lemma templates over the pre-state, each with a name that says what it states (a stored
    certificate's lemmas carry it, formal.engines.certificate): the relation's own lemmas
    (formal.symbolic.transition), each boolean fixed either way, implications between the
    booleans of one record (a root, a hardware context, the vCPU's own flags: smm,
    guest_mode, mmu_is_guest), equalities between bit-vector fields of one sort, each
    bit-vector field fitting in each of WIDTHS and page-aligned, each bit of the fields named
    *<one of bit_fields> fixed either way, and per event without operands and property,
    "taking it now violates nothing".  A term that two templates give keeps the first name."""
    state = rel.pre
    out: dict[FNode, str] = {}

    def add(term: FNode, name: str) -> None:
        out.setdefault(term, name)

    for i, lemma in enumerate(rel.lemmas):
        add(lemma, f"relation lemma {i}")
    groups: dict[str, list[tuple[str, FNode]]] = {}
    words: dict[object, list[tuple[str, FNode]]] = {}
    for name, var in state.items():
        if var.symbol_type().is_bool_type():
            add(var, name)
            add(Not(var), f"!{name}")
            groups.setdefault(name.rsplit(".", 1)[0] if "." in name else "", []).append(
                (name, var))
            continue
        words.setdefault(var.symbol_type(), []).append((name, var))
        width = var.symbol_type().width
        for k in WIDTHS:
            if k < width:
                add(EqualsOrIff(BVLShr(var, BV(k, width)), BV(0, width)), f"{name} < 2^{k}")
        add(EqualsOrIff(BVAnd(var, BV(0xFFF, width)), BV(0, width)), f"{name} page-aligned")
        if name.endswith(bit_fields):
            for i in range(width):
                bit = EqualsOrIff(BVAnd(var, BV(1 << i, width)), BV(0, width))
                add(bit, f"{name} bit {i} clear")
                add(Not(bit), f"{name} bit {i} set")
    for group in groups.values():
        for na, a in group:
            for nb, b in group:
                if a is not b:
                    add(Implies(a, b), f"{na} -> {nb}")
    # "this event, taken now, violates nothing": for events without operands (a VM exit, RSM,
    # a PV flush) a formula over the state alone.  The VM exit's relates L1's saved registers
    # to root_mmu while L2 runs (not yet enough for a nested proof: see docs/findings.md).
    for er in rel.events:
        if not er.ops:
            for prop, bad in er.violated.items():
                add(Not(And(er.steps, bad)), f"{er.name} now violates no {prop}")
    for same in words.values():
        for i, (na, a) in enumerate(same):
            for nb, b in same[i + 1:]:
                add(EqualsOrIff(a, b), f"{na} = {nb}")
    return out


def houdini(rel: Relation, props: tuple[str, ...], checker: Checker | None = None,
            bit_fields: tuple[str, ...] = BIT_TEMPLATE_FIELDS,
            seed: list[FNode] | None = None) -> Result:
    """Houdini (Flanagan & Leino, FME 2001): the strongest inductive conjunction of the
    candidate lemmas (inductive_lemmas), or of `seed`'s (a stored certificate's lemmas: a warm
    start).  If it excludes every violation and model error it is the certificate
    (recheck_invariant); the result carries its lemmas."""
    ck = checker or Checker()
    t0 = time.perf_counter()
    try:
        lemmas = inductive_lemmas(rel, ck, bit_fields, seed)
        invariant = And(lemmas)
        times = {"houdini": time.perf_counter() - t0}
        bad = [And(er.steps, Or([er.violated[p] for p in props])) for er in rel.events] \
            + [er.model_error for er in rel.events]
        if ck.sat("houdini-safety", And(invariant, Or(bad))) or \
                ck.sat("houdini-initial-entry", And(rel.init, Or(
                    [rel.init_violated[p] for p in props] + [rel.init_error]))):
            return Result(Verdict.UNKNOWN, "houdini", times=times, reason=(
                f"the strongest inductive conjunction of the {'stored' if seed else 'candidate'}"
                f" lemmas ({len(lemmas)} lemmas) does not exclude every violation"))
    except Inconclusive as exc:
        return Result(Verdict.UNKNOWN, "houdini", reason=str(exc),
                      times={"houdini": time.perf_counter() - t0})
    return recheck_lemmas(rel, props, lemmas, ck, times)


def recheck_lemmas(rel: Relation, props: tuple[str, ...], lemmas: list[FNode], ck: Checker,
                   times: dict[str, float]) -> Result:
    """The conjunction of lemmas (over the pre-state) as a certificate: re-checked whole
    (recheck_invariant), never assumed; a proved result carries the lemmas."""
    invariant = And(lemmas).substitute(Unroller(rel).substitution(1, None))
    r = recheck_invariant(rel, props, invariant, ck, times, "houdini")
    if r.verdict == Verdict.PROVED:
        r.lemmas = list(lemmas)
    return r


def inductive_lemmas(rel: Relation, ck: Checker,
                     bit_fields: tuple[str, ...] = BIT_TEMPLATE_FIELDS,
                     seed: list[FNode] | None = None) -> list[FNode]:
    """Start from every candidate lemma (or from seed's), drop those some initial state
    falsifies, then repeatedly drop those some step from a state satisfying all of them
    falsifies, one event kind at a time, until no event drops one: what remains is inductive.
    Over the pre-state variables; independent of the properties, so the candidates' is kept on
    the relation."""
    cold = seed is None and bit_fields == BIT_TEMPLATE_FIELDS
    if cold and rel.inductive is not None:
        return rel.inductive
    pre = rel.pre
    cands = list(seed) if seed is not None else list(candidates(rel, bit_fields))
    while cands:
        ck.progress(f"houdini initiation: {len(cands)} lemmas")
        vals = ck.sat("houdini-init", And(rel.init, Not(And(cands))), cands)
        if not vals:
            break
        cands = [c for c in cands if vals[c]]
    # each event's candidates -> their successors, renamed by one walker for all rounds
    succ = [renaming({pre[name]: term for name, term in er.post.items()}) for er in rel.events]
    stable, rounds = False, 0
    while cands and not stable:
        stable, rounds = True, rounds + 1
        for er, successor in zip(rel.events, succ, strict=True):
            while cands:
                ck.progress(f"houdini round {rounds}: {len(cands)} lemmas, {er.name}")
                nxt = [successor(c) for c in cands]
                vals = ck.sat(f"houdini-step-{er.name}",
                              And([*cands, er.steps, Not(And(nxt))]), nxt)
                if not vals:
                    break
                cands = [c for c, n in zip(cands, nxt, strict=True) if vals[n]]
                stable = False
    if cold:
        rel.inductive = cands
    return cands
