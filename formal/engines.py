"""Proof engines over the transition system (issue #3, DESIGN.md §6): bmc, kind, pdr, auto.

Verdicts:
- `refuted`: a counterexample trace that the concrete simulator replays to the same violation;
- `proved`: only with a certificate that an independent solver (cvc5) re-checked;
- `bounded(N)`: no violation within N events, nothing more;
- `unknown`: anything else (timeout, solver `unknown`, a failed re-check, a reachable model
  error, a counterexample the simulator does not confirm), always with its cause.

The property is checked at the guest entry that ends each step, so "bad" is a predicate of a
step (formal.unroll); a model error (a spec contradicting the architecture) counts as bad too:
nothing is proved about a model that contradicts itself.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pysmt.exceptions import SolverReturnedUnknownResultError
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
    Solver,
    Symbol,
)
from pysmt.smtlib.script import smtlibscript_from_formula

from formal import simulate
from formal.bits import CR4_LA57
from formal.state import Regs
from formal.trace import Trace
from formal.transition import EventRelation, Relation
from formal.unroll import Unroller

ENGINES = ("auto", "bmc", "kind", "houdini", "pdr")


@dataclass
class Result:
    verdict: str  # "refuted", "proved", "bounded", "unknown"
    engine: str
    bound: int = 0  # events explored (bmc), k (kind)
    reason: str = ""
    trace: Trace | None = None
    violation: tuple[int, str, str] | None = None  # (event index, property, message)
    certificate: str = ""  # what was re-checked, in words, and where it was written
    times: dict[str, float] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"bounded({self.bound})" if self.verdict == "bounded" else self.verdict


class Inconclusive(Exception):
    """The solver could not answer: the verdict is `unknown` with this cause."""


# cvc5 bit-blasts eagerly: its default lazy bit-vector solver returns unknown after minutes on
# the consecution queries of RSM and KVM_SET_SREGS that it answers in seconds this way.
SOLVER_OPTIONS: dict[str, dict[str, object]] = {"cvc5": {"bitblast": "eager"}}
TIMEOUT_OPTION = {"z3": "timeout", "cvc5": "tlimit-per"}


class Checker:
    """One-shot satisfiability queries with a deadline, each optionally written out as an
    SMT-LIB 2 file (--dump-smt DIR)."""

    def __init__(self, solver_name: str = "z3", timeout: float | None = None,
                 dump_dir: Path | None = None) -> None:
        self.solver_name = solver_name
        self.deadline = time.monotonic() + timeout if timeout else None
        self.dump_dir = dump_dir
        self.count = 0
        if dump_dir is not None:
            dump_dir.mkdir(parents=True, exist_ok=True)

    def remaining(self) -> float | None:
        if self.deadline is None:
            return None
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise Inconclusive("timeout")
        return left

    def dump(self, name: str, formula: FNode) -> Path | None:
        if self.dump_dir is None:
            return None
        self.count += 1
        path = self.dump_dir / f"{self.count:03d}-{name}.smt2"
        with path.open("w") as out:
            smtlibscript_from_formula(formula, logic="QF_BV").serialize(out, daggify=True)
        return path

    def sat(self, name: str, formula: FNode, model_of: list[FNode] | None = None):
        """Is formula satisfiable?  Returns None if not, else a dict of the values of
        model_of (or True when none are asked for)."""
        self.dump(name, formula)
        left = self.remaining()
        opts: dict[str, object] = dict(SOLVER_OPTIONS.get(self.solver_name, {}))
        if left:
            opts[TIMEOUT_OPTION[self.solver_name]] = max(1, int(left * 1000))
        try:
            with Solver(name=self.solver_name, logic="QF_BV", solver_options=opts) as s:
                s.add_assertion(formula)
                if not s.solve():
                    return None
                if not model_of:
                    return True
                return {n: s.get_value(n).constant_value() for n in model_of}
        except SolverReturnedUnknownResultError:
            self.remaining()
            raise Inconclusive(f"{self.solver_name} returned unknown on {name}") from None


def solver_versions() -> dict[str, str]:
    import cvc5
    import pysmt
    import z3
    return {"z3": z3.get_version_string(), "cvc5": getattr(cvc5, "__version__", "?"),
            "pysmt": pysmt.__version__}


# -- counterexamples --

def _cex_vars(un: Unroller, depth: int) -> list[FNode]:
    s0 = un.state(0)
    out = [s0[f"regs.{r}"] for r in ("cr0", "cr3", "cr4", "efer")]
    for i in range(1, depth + 1):
        out.append(un.sel(i))
        for er in un.kinds:
            out += list(un.ops(i, er).values())
    return out


# Operands that hold guest addresses or page-table pointers, and those that hold CR4.
_ADDRESSES = {("mov_cr3", "value"), ("guest_pte_write", "pgd"), ("invlpg", "va"),
              ("invpcid", "va"), ("set_sregs", "cr3"), ("vmentry", "cr3"),
              ("vmentry", "nested_pgd"), ("invvpid", "va"), ("invlpga", "va")}
_CR4S = {("mov_cr4", "value"), ("set_sregs", "cr4"), ("vmentry", "cr4")}


def _preferences(un: Unroller, depth: int) -> list[FNode]:
    """What makes a counterexample readable (and replayable on the concrete MMU), tried in
    order as one extra constraint, the first satisfiable one kept: addresses below 16 MiB
    (CR3's bit 63, NOFLUSH, left free) and no 5-level paging; first also with CR3 bits 11:5
    clear, so a PAE PDPT reads as a page address (the concrete level replays either:
    formal.paging.pdpt_address)."""
    s0 = un.state(0)
    addrs = [s0[n] for n in ("regs.cr3",) if n in s0]
    cr4s = [s0[n] for n in ("regs.cr4",) if n in s0]
    for i in range(1, depth + 1):
        for er in un.kinds:
            for f, var in un.ops(i, er).items():
                if (er.kind.op, f) in _ADDRESSES:
                    addrs.append(var)
                elif (er.kind.op, f) in _CR4S:
                    cr4s.append(var)
    zero = BV(0, 64)
    small = [EqualsOrIff(BVAnd(a, BV(0x7FFF_FFFF_FF00_0000, 64)), zero) for a in addrs]
    no_la57 = [EqualsOrIff(BVAnd(c, BV(CR4_LA57, 64)), zero) for c in cr4s]
    page_aligned = [EqualsOrIff(BVAnd(a, BV(0xFE0, 64)), zero) for a in addrs]
    return [And(small + no_la57 + page_aligned), And(small + no_la57)]


def extract_trace(rel: Relation, un: Unroller, values: dict, depth: int, how: str) -> Trace:
    """The events and initial registers the solver chose, as a trace file."""
    s0 = un.state(0)
    regs = Regs(*(values[s0[f"regs.{r}"]] for r in ("cr0", "cr3", "cr4", "efer")))
    events = []
    for i in range(1, depth + 1):
        er = un.kinds[values[un.sel(i)]]
        events.append(er.kind(**{f: values[var] for f, var in un.ops(i, er).items()}))
    return Trace(rel.policy, rel.config, regs, tuple(events), how)


# -- bmc --

def bmc(rel: Relation, props: tuple[str, ...], bound: int, checker: Checker | None = None,
        start_depth: int = 0, confirm_with_simulator: bool = True) -> Result:
    """Iterative deepening from depth start_depth (0 = the first guest entry).  Depth d asks
    for a violation (or a model error) at its last step only: every shallower depth was
    unsatisfiable, so the first counterexample found is a shortest one."""
    ck = checker or Checker()
    un = Unroller(rel)
    t0 = time.perf_counter()
    path = [un.init()]
    try:
        for d in range(bound + 1):
            if d:
                path.append(un.trans(d))
            if d < start_depth:
                continue
            bad = un.init_bad(props) if d == 0 else un.bad(d, props)
            err = un.init_error() if d == 0 else un.error(d)
            is_err = Symbol(f"model_error{d}")
            query = And(path + [Or(bad, err), Iff(is_err, err)])
            if not ck.sat(f"bmc-{d}", query):
                continue
            values = _solve_nicely(ck, un, query, d, [is_err])
            times = {"bmc": time.perf_counter() - t0}
            if values[is_err]:
                return Result("unknown", "bmc", d, times=times, trace=extract_trace(
                    rel, un, values, d, f"model error reached by flushproof bmc ({d} events)"),
                    reason=(f"model error reachable in {d} events: a policy spec and the "
                            "architecture disagree (a bug in the model, not a verdict)"))
            t = extract_trace(rel, un, values, d,
                              f"shortest counterexample found by flushproof bmc ({d} events)")
            if not confirm_with_simulator:
                return Result("refuted", "bmc", d, trace=t, times=times)
            return confirm(t, d, props, times)
    except Inconclusive as exc:
        return Result("unknown", "bmc", reason=str(exc), times={"bmc": time.perf_counter() - t0})
    return Result("bounded", "bmc", bound, times={"bmc": time.perf_counter() - t0})


def _solve_nicely(ck: Checker, un: Unroller, query: FNode, depth: int,
                  extra: list[FNode]) -> dict:
    """A model of query, with the readability preferences if they are satisfiable too."""
    want = _cex_vars(un, depth) + extra
    for pref in _preferences(un, depth):
        values = ck.sat("bmc-prefer", And(query, pref), want)
        if values:
            return values
    values = ck.sat("bmc-model", query, want)
    assert isinstance(values, dict)
    return values


def confirm(t: Trace, depth: int, props: tuple[str, ...], times: dict[str, float]) -> Result:
    """Replay a counterexample on the concrete simulator: it must violate one of props at the
    same event, or symbolic and concrete execution disagree (a bug, never a verdict)."""
    out = simulate.run(t)
    want = depth - 1  # the initial entry is index -1
    if out.violation is None or out.violation[0] != want:
        got = "no violation" if out.violation is None else f"a violation at {out.violation[0]}"
        return Result("unknown", "bmc", depth, trace=t, times=times, reason=(
            f"the solver's counterexample ({depth} events) gives {got} on the concrete "
            "simulator: symbolic and concrete execution disagree"))
    mine = [x for x in out.records[-1].violations if x.prop in props]
    if not mine:
        return Result("unknown", "bmc", depth, trace=t, times=times, reason=(
            f"the concrete simulator violates {out.violation[1].prop}, not "
            f"{', '.join(props)}: symbolic and concrete execution disagree"))
    return Result("refuted", "bmc", depth, trace=t, times=times,
                  violation=(want, mine[0].prop, mine[0].message))


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
         confirm_with_simulator: bool = True) -> Result:
    """k-induction with simple-path constraints, k = 1 .. max_k.  The base case is bmc to
    depth k; a proof is re-checked by cvc5 (base and step queries, one-shot)."""
    ck = checker or Checker()
    un = Unroller(rel)
    t0 = time.perf_counter()
    try:
        for k in range(1, max_k + 1):
            base = bmc(rel, props, k, ck, 0 if k == 1 else k, confirm_with_simulator)
            if base.verdict != "bounded":
                base.engine = "kind"
                return base
            if ck.sat(f"kind-step-{k}", step_query(un, props, k)):
                continue
            times = {"kind": time.perf_counter() - t0}
            return _recheck_kind(rel, un, props, k, ck, times)
    except Inconclusive as exc:
        return Result("unknown", "kind", reason=str(exc),
                      times={"kind": time.perf_counter() - t0})
    return Result("unknown", "kind", max_k, times={"kind": time.perf_counter() - t0},
                  reason=f"not {max_k}-inductive: the property needs strengthening")


def _recheck_kind(rel: Relation, un: Unroller, props: tuple[str, ...], k: int, ck: Checker,
                  times: dict[str, float]) -> Result:
    """The k-inductive argument, re-checked one-shot by cvc5: no violation within k events
    from the initial states, and the induction step."""
    t0 = time.perf_counter()
    cv = Checker("cvc5", None, ck.dump_dir)
    path = [un.init()]
    queries = [("base-0", And(path + [un.init_bad(props)]))]
    for d in range(1, k + 1):
        path.append(un.trans(d))
        queries.append((f"base-{d}", And(path + [Or(un.bad(d, props), un.error(d))])))
    queries.append(("step", step_query(un, props, k)))
    for name, q in queries:
        if cv.sat(f"recheck-kind-{name}", q):
            times["recheck"] = time.perf_counter() - t0
            return Result("unknown", "kind", k, times=times, reason=(
                f"cvc5 does not confirm the {k}-induction certificate: query {name} is "
                "satisfiable"))
    times["recheck"] = time.perf_counter() - t0
    return Result("proved", "kind", k, times=times, certificate=(
        f"{k}-induction: base (depths 0..{k}) and step re-checked by cvc5"))


# -- pdr (IC3 over the state bits, formal.ic3) --

def pdr(rel: Relation, props: tuple[str, ...], checker: Checker | None = None) -> Result:
    """IC3/PDR over the bits of the state (formal.ic3).  Its converged frame is an inductive
    invariant; it counts only after cvc5 re-checks it (recheck_invariant).  A chain of proof
    obligations from an initial state to a bad step is a real path, but not a shortest one:
    the verdict is then `unknown`, and bmc gives the shortest counterexample."""
    from formal import ic3

    ck = checker or Checker()
    t0 = time.perf_counter()
    try:
        out = ic3.search(Unroller(rel), props, ck)
    except ic3.Violated as exc:
        where = "at the first guest entry" if exc.events == 0 else \
            f"on a path of {exc.events} event{'s' if exc.events > 1 else ''}"
        return Result("unknown", "pdr", times={"pdr": time.perf_counter() - t0}, reason=(
            f"pdr found the property violated {where}; run bmc for a shortest counterexample"))
    except Inconclusive as exc:
        return Result("unknown", "pdr", reason=str(exc), times={"pdr": time.perf_counter() - t0})
    times = {"pdr": time.perf_counter() - t0}
    r = recheck_invariant(rel, props, out.invariant, ck, times, "pdr")
    if r.verdict == "proved":
        n = len(out.cubes)
        r.certificate = (f"IC3 frame {out.frame} ({n} clause{'s' if n != 1 else ''} over state "
                         f"bits, {out.queries} z3 queries); " + r.certificate)
    return r


def recheck_invariant(rel: Relation, props: tuple[str, ...], invariant: FNode, ck: Checker,
                      times: dict[str, float], engine: str) -> Result:
    """The one-shot cvc5 queries of a certificate, over s0 (and the successor's terms for the
    step): the initial states satisfy it and violate nothing at the first entry; every path of
    every event kind preserves it (consecution); no event from a state satisfying it violates a
    property or reaches a model error (safety, per event kind).  An event kind's transition
    relation is the disjunction of its paths (each its condition and its successor's terms,
    formal.transition.EventRelation.cases), so the per-path consecution queries are
    unsatisfiable exactly when the kind's is.  cvc5 answers them one path at a time: one query
    per kind over the merged successor, whose terms hold every path's, did not finish in
    35 minutes for MOV CR4 on v6.6 nested-ept, and its 320 paths took 419 s in all
    (docs/proving.md).  Initiation and consecution do not depend on the property: once cvc5
    accepted them for an invariant of this relation they are not asked again."""
    t0 = time.perf_counter()
    un = Unroller(rel)
    path = ck.dump("certificate-invariant", invariant)
    cv = Checker("cvc5", None, ck.dump_dir)

    def queries():
        yield "initiation", And(un.init(), Or(un.init_bad(props), un.init_error()))
        if invariant not in rel.rechecked:
            yield "initiation", And(un.init(), Not(invariant))
            for er in un.kinds:
                if er.post:
                    for i, q in enumerate(path_consecution(un, er, invariant)):
                        yield f"consecution-{er.kind.op}-path{i}", q
        for k, er in enumerate(un.kinds):
            yield f"safety-{er.kind.op}", And(invariant, Or(
                un.bad_kind(1, k, props), er.model_error.substitute(un._subst(1, er))))

    asked = 0
    for name, q in queries():
        asked += 1
        if cv.sat(f"recheck-{name}", q):
            times["recheck"] = time.perf_counter() - t0
            return Result("unknown", engine, times=times, reason=(
                f"cvc5 rejects the invariant's certificate: the {name} query is satisfiable"))
    rel.rechecked.add(invariant)
    times["recheck"] = time.perf_counter() - t0
    where = f" (written to {path})" if path else ""
    return Result("proved", engine, times=times, certificate=(
        f"inductive invariant re-checked by cvc5 in {asked} one-shot queries (initiation; "
        f"consecution per path and safety for each of {len(un.kinds)} event kinds){where}: "
        f"{_short(invariant)}"))


def path_consecution(un: Unroller, er: EventRelation, invariant: FNode) -> Iterator[FNode]:
    """Per path of event kind er, one at a time, its consecution query for an invariant over
    s0: the path's condition holds and its successor falsifies the invariant."""
    s0, m = un.state(0), un._subst(1, er)
    for cond, post in er.branches():
        nxt = invariant.substitute({s0[n]: post[n].substitute(m) for n in s0})
        yield And(invariant, cond.substitute(m), Not(nxt))


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
# (formal.roles), and facts such as "no root carries the guest_mode role bit outside nested
# virtualization" are single bits.  Bit templates over every field (cr3, pgd, ...) multiply the
# candidates by ten for no lemma a proof has needed.
BIT_TEMPLATE_FIELDS = ("role",)
# Widths a field may fit in: a PCID (12 bits), a VPID (16, SDM Vol. 3C §25.6.12), a VPID:PCID
# tag (28, formal.arch.tag).  With "the low 12 bits are clear" (a page address): templates for
# every bit-vector field.
WIDTHS = (12, 16, 28)


def candidates(rel: Relation, bit_fields: tuple[str, ...] = BIT_TEMPLATE_FIELDS) -> list[FNode]:
    """Lemma templates over the pre-state: the relation's own lemmas (formal.transition), each
    boolean fixed either way, implications between the booleans of one record (a root, a
    hardware context, the vCPU's own flags: smm, guest_mode, mmu_is_guest), equalities
    between bit-vector fields of one sort, each bit-vector field fitting in each of WIDTHS and
    page-aligned, each bit of the fields named *<one of bit_fields> fixed either way, and per
    event without operands and property, "taking it now violates nothing"."""
    state = {name: var.node for name, var in rel.pre.items()}
    out: list[FNode] = list(rel.lemmas)
    groups: dict[str, list[FNode]] = {}
    words: dict[object, list[FNode]] = {}
    for name, var in state.items():
        if var.symbol_type().is_bool_type():
            out += [var, Not(var)]
            groups.setdefault(name.rsplit(".", 1)[0] if "." in name else "", []).append(var)
            continue
        words.setdefault(var.symbol_type(), []).append(var)
        width = var.symbol_type().width
        out += [EqualsOrIff(BVLShr(var, BV(k, width)), BV(0, width)) for k in WIDTHS
                if k < width]
        out.append(EqualsOrIff(BVAnd(var, BV(0xFFF, width)), BV(0, width)))
        if name.endswith(bit_fields):
            for i in range(width):
                bit = EqualsOrIff(BVAnd(var, BV(1 << i, width)), BV(0, width))
                out += [bit, Not(bit)]
    for group in groups.values():
        out += [Implies(a, b) for a in group for b in group if a is not b]
    # "this event, taken now, violates nothing": for events without operands (a VM exit, RSM,
    # a PV flush) a formula over the state alone.  The VM exit's relates L1's saved registers
    # to root_mmu while L2 runs (not yet enough for a nested proof: see docs/findings.md).
    for er in rel.events:
        if not er.ops:
            out += [Not(And(er.steps, bad)) for bad in er.violated.values()]
    for same in words.values():
        out += [EqualsOrIff(a, b) for i, a in enumerate(same) for b in same[i + 1:]]
    return out


def houdini(rel: Relation, props: tuple[str, ...], checker: Checker | None = None,
            bit_fields: tuple[str, ...] = BIT_TEMPLATE_FIELDS) -> Result:
    """Houdini (Flanagan & Leino, FME 2001): the strongest inductive conjunction of the
    candidate lemmas (inductive_lemmas).  If it excludes every violation and model error it
    is the certificate (re-checked by cvc5 on each event kind)."""
    ck = checker or Checker()
    t0 = time.perf_counter()
    try:
        lemmas = inductive_lemmas(rel, ck, bit_fields)
        invariant = And(lemmas)
        times = {"houdini": time.perf_counter() - t0}
        bad = [And(er.steps, Or([er.violated[p] for p in props])) for er in rel.events] \
            + [er.model_error for er in rel.events]
        if ck.sat("houdini-safety", And(invariant, Or(bad))) or \
                ck.sat("houdini-initial-entry", And(rel.init, Or(
                    [rel.init_violated[p] for p in props] + [rel.init_error]))):
            return Result("unknown", "houdini", times=times, reason=(
                f"the strongest inductive conjunction of the candidate lemmas ({len(lemmas)} "
                "lemmas) does not exclude every violation"))
    except Inconclusive as exc:
        return Result("unknown", "houdini", reason=str(exc),
                      times={"houdini": time.perf_counter() - t0})
    invariant = invariant.substitute(Unroller(rel)._subst(1, None))
    return recheck_invariant(rel, props, invariant, ck, times, "houdini")


def inductive_lemmas(rel: Relation, ck: Checker,
                     bit_fields: tuple[str, ...] = BIT_TEMPLATE_FIELDS) -> list[FNode]:
    """Start from every candidate lemma, drop those some initial state falsifies, then
    repeatedly drop those some step from a state satisfying all of them falsifies, one event
    kind at a time, until no event drops one: what remains is inductive.  Over the pre-state
    variables; independent of the properties, so kept on the relation."""
    if rel.inductive is not None and bit_fields == BIT_TEMPLATE_FIELDS:
        return rel.inductive
    pre = {name: var.node for name, var in rel.pre.items()}
    cands = candidates(rel, bit_fields)
    while cands:
        vals = ck.sat("houdini-init", And(rel.init, Not(And(cands))), cands)
        if not vals:
            break
        cands = [c for c in cands if vals[c]]
    stable = False
    while cands and not stable:
        stable = True
        for er in rel.events:
            post = {pre[name]: term for name, term in er.post.items()}
            while cands:
                nxt = [c.substitute(post) for c in cands]
                vals = ck.sat(f"houdini-step-{er.kind.op}",
                              And([*cands, er.steps, Not(And(nxt))]), nxt)
                if not vals:
                    break
                cands = [c for c, n in zip(cands, nxt, strict=True) if vals[n]]
                stable = False
    if bit_fields == BIT_TEMPLATE_FIELDS:
        rel.inductive = cands
    return cands
