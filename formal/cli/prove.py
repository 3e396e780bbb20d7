"""One proof obligation: a policy, a configuration, properties, an engine, a bound and an
optional event restriction; the vacuity checks every obligation needs; the counterexample as a
trace, confirmed on the simulator and replayed on the concrete MMU."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path

from pysmt.fnode import FNode
from pysmt.shortcuts import BV, And, BVAnd, EqualsOrIff, Not, Or

from formal.cli import policies, store
from formal.concrete.replay import ReplayOutcome
from formal.engines import parallel
from formal.engines import search as engines
from formal.engines.checker import CHECKERS, SEARCH, Checker
from formal.engines.progress import Progress
from formal.engines.search import Result, Verdict
from formal.engines.system import Relation
from formal.engines.unroll import Unroller
from formal.errors import Malformed, NotModeled
from formal.model import arch, explore
from formal.model import events as ev
from formal.model import simulate as model_simulate
from formal.model.bits import CR4_LA57
from formal.model.properties import PROPERTIES, ModelError
from formal.model.simulate import Run
from formal.model.state import CONFIGS, Page, Regs
from formal.model.trace import Trace
from formal.solvers import Deadline, Inconclusive
from formal.symbolic import product
from formal.symbolic.transition import build, event_kinds

DEFAULT_BOUND = 4
DEFAULT_K = 2
# bmc's depths on a product relation (--base) are answered by bitwuzla; a depth it finds
# satisfiable is solved again by z3 for the model.  On the product of 509bfe3 over v5.18
# (shadow, freshness) bitwuzla answers depth 3 in 31 s where z3 takes 51 s, and the converse's
# depth 4 in 121 s where z3 had no answer after 15 minutes (docs/performance.md).  A single
# policy's relation stays with z3, the faster there (v5.17 shadow depth 3: 2.5 s, bitwuzla 5.4).
PRODUCT_DECIDER = "bitwuzla"


class ObligationError(Malformed):
    """A malformed obligation (unknown policy, configuration, property or engine)."""


@dataclass(frozen=True)
class Obligation:
    """What to prove, as the command line, a proof script and the benchmarks say it."""

    policy: str
    config: str
    props: tuple[str, ...] = PROPERTIES
    engine: str = "auto"
    bound: int = DEFAULT_BOUND
    timeout: float | None = None
    # The event kinds the environment may issue when not all the configuration's: a verdict
    # then covers executions of these events only.
    events: tuple[str, ...] | None = None
    # Differential: the base policy the patch applies to.  The obligation is then about the
    # violations `policy` has at an event where `base` has none (formal.symbolic.product).
    base: str | None = None
    # Engine auto goes on after bmc's bound (k-induction, then pdr) for a verdict; the converse
    # of a differential is a line of the report, and stops at the bound.
    past_bound: bool = True

    def converse(self) -> Obligation:
        """The violations the patch removes: the base's that the patched policy does not have.
        Under engine auto: its policy's stored certificate alone, the explicit search, houdini
        and bmc to the bound; not k-induction or pdr (on the product of 509bfe3 over v5.18,
        shadow, houdini fails in 88 s and the whole chain took 52 minutes)."""
        assert self.base is not None
        return replace(self, policy=self.base, base=self.policy, past_bound=False)

    def check(self) -> None:
        """Raises ObligationError naming the first field that is not well formed."""
        for name in (self.policy, self.base):
            if name is not None and name not in policies.known():
                raise ObligationError(f"unknown policy {name!r} "
                                      f"(known: {', '.join(policies.known())})")
        if self.config not in CONFIGS:
            raise ObligationError(f"unknown config {self.config!r} (known: {', '.join(CONFIGS)})")
        for p in self.props:
            if p not in PROPERTIES:
                raise ObligationError(f"unknown property {p!r} (known: {', '.join(PROPERTIES)})")
        if self.engine not in engines.ENGINES:
            raise ObligationError(f"unknown engine {self.engine!r} "
                                  f"(known: {', '.join(engines.ENGINES)})")
        if self.bound < 1:  # bmc at depth 0 sees only the first guest entry: no event runs
            raise ObligationError(f"bound must be >= 1, got {self.bound}")
        if self.timeout is not None and not (math.isfinite(self.timeout) and self.timeout > 0):
            raise ObligationError(f"timeout must be a finite number of seconds > 0, "
                                  f"got {self.timeout}")
        if self.events is not None:
            known = [k.op for k in event_kinds(CONFIGS[self.config])]
            for op in self.events:
                if op not in known:
                    raise ObligationError(f"event {op!r} is not one of config {self.config}'s "
                                          f"(known: {', '.join(known)})")
            if not self.events:
                raise ObligationError("an empty event restriction: name at least one event")

    def kinds(self) -> list[type[ev.Event]] | None:
        """The event kinds of the restriction, in the configuration's order; None for all."""
        if self.events is None:
            return None
        return [k for k in event_kinds(CONFIGS[self.config]) if k.op in self.events]


class ReplayStatus(StrEnum):
    CONFIRMED = "confirmed"
    NOT_CONFIRMED = "NOT confirmed"
    NOT_REPLAYED = "not replayed"


@dataclass
class Replay:
    """What the concrete replay of a counterexample showed."""

    status: ReplayStatus
    detail: str
    outcome: ReplayOutcome | None = None

    def __str__(self) -> str:
        return f"{self.status}: {self.detail}"


@dataclass
class Counterexample:
    """A counterexample as a trace file, with the simulator's run that confirms it (or not)
    and, for a refutation, its concrete replay."""

    trace: Trace
    run: Run | None  # None: the simulator could not run it (the reason is the result's)
    base_run: Run | None = None  # differential: the same events under the base policy
    # (event index, property, message): the confirmed violation of one of the properties asked
    violation: tuple[int, str, str] | None = None
    replay: Replay | None = None


@dataclass
class Proof:
    obligation: Obligation
    result: Result
    paths: dict[str, int] = field(default_factory=dict)
    times: dict[str, float] = field(default_factory=dict)
    vacuity: list[str] = field(default_factory=list)
    counterexample: Counterexample | None = None
    # SMT dumps that could not be written (--dump-smt): the proof went on without them.
    dump_failures: list[str] = field(default_factory=list)
    # What the certificate store did for this proof ("" when it was not asked): re-checked a
    # stored certificate, warm-started houdini from one, or wrote one.
    stored: str = ""
    cached: bool = False  # the relation came from the relation cache, not symbolic execution
    # The properties of a differential that its policy's own proof decided (alone, partly_alone):
    # when all of them, paths and times are that proof's; else the product decided the rest.
    alone: tuple[str, ...] = ()


def vacuity(rel: Relation, props: tuple[str, ...], bound: int, ck: Checker,
            enabled: list[str] | None = None) -> list[str]:
    """The obligation is not vacuous: its initial states exist, every event is enabled in some
    state reachable within the bound, and each property's violation is expressible (its
    negation is satisfiable in some unconstrained state).  Returns the failures.  enabled:
    events_enabled's failures, already found for rel and bound (they do not depend on the
    property: the matrix checks them once per relation)."""
    un = Unroller(rel)
    failures = []
    ck.progress("vacuity: initial states, properties")
    if not ck.sat("vacuity-init", un.init()):
        return ["no initial state: the initial-state constraint is unsatisfiable"]
    for p in props:
        if not ck.sat(f"vacuity-{p}", Or([er.violated[p] for er in rel.events]
                                         + [rel.init_violated[p]])):
            failures.append(f"property {p} cannot be violated in any state: it checks nothing")
    return failures + (events_enabled(rel, bound, ck) if enabled is None else enabled)


def events_enabled(rel: Relation, bound: int, ck: Checker) -> list[str]:
    """The events not enabled in any state reachable within bound events (from the initial
    states), as vacuity failures."""
    un = Unroller(rel)
    pending = set(range(len(un.events)))
    path = [un.init()]
    for d in range(1, bound + 1):
        ck.progress(f"vacuity: events enabled within {d} events")
        for k in sorted(pending):
            er = un.events[k]
            enabled = And(un.is_event(d, k), er.steps.substitute(un.substitution(d, er)))
            if ck.sat(f"vacuity-enabled-{er.name}-{d}", And(path + [enabled])):
                pending.discard(k)
        if not pending:
            break
        path.append(un.trans(d))
    return [f"event {un.events[k].name} is never enabled within {bound} events"
            for k in sorted(pending)]


def run(ob: Obligation, dump_dir: Path | None = None, checker: str = CHECKERS[0],
        jobs: int | None = None, progress: Progress | None = None,
        certificates: Path | None = None, use_stored: bool = True,
        save: bool = False, relations: Path | None = None,
        rel: Relation | None = None, enabled: list[str] | None = None) -> Proof:
    """Decide ob: build the relation, check vacuity, run the engine (a certificate re-checked
    by `checker` on `jobs` processes, default one per core), and turn a counterexample into a
    trace that the simulator confirms and the concrete MMU replays.  With a certificate store
    (`certificates`, formal.cli.store) a stored certificate of the cell is re-checked first
    (or warm-starts houdini) unless not `use_stored`, and `save` writes a houdini proof's.
    With a relation cache (`relations`, formal.cli.store.cache_dir()) the relation of unchanged
    sources is loaded instead of built.  progress hears what the run is doing.  rel: the
    relation of ob's policy and configuration over all its event kinds, built with at least
    ob's properties (the matrix builds one per policy and configuration for all its
    properties, formal.cli.matrix); None builds (or loads) ob's own.  enabled: the failures of
    events_enabled(rel, ob.bound), already found (vacuity)."""
    ob.check()
    progress = progress or Progress()
    if ob.events is not None:  # in the configuration's order, as the relation has them
        ob = replace(ob, events=tuple(k.op for k in ob.kinds()))
    single = _alone_stored(ob, certificates) if ob.base is not None and certificates is not \
        None and use_stored and rel is None and ob.engine in ("auto", "houdini") else None
    if single is not None:
        started = time.perf_counter()
        proof = run(single, dump_dir, checker, jobs, progress, certificates,
                    relations=relations)
        rest = tuple(p for p in ob.props if p not in single.props)
        if proof.result.verdict == Verdict.PROVED and not rest:
            return alone(ob, proof)
        # the product has what is left of the timeout
        left = None if ob.timeout is None else \
            max(ob.timeout - (time.perf_counter() - started), 1e-6)
        if proof.result.verdict == Verdict.PROVED:
            return partly_alone(ob, proof, run(replace(ob, props=rest, timeout=left), dump_dir,
                                               checker, jobs, progress, certificates, use_stored,
                                               save, relations))
        ob = replace(ob, timeout=left)
    t0 = time.perf_counter()
    deadline = Deadline.after(ob.timeout)
    proof = Proof(ob, Result(Verdict.UNKNOWN, ob.engine))
    ck = Checker(dump_dir=dump_dir, deadline=deadline, checker=checker, jobs=jobs,
                 progress=progress, dump_failures=proof.dump_failures,
                 decider=SEARCH if ob.base is None else PRODUCT_DECIDER)
    if rel is None:
        try:
            rel = _relation(ob, deadline, progress, relations, proof)
        except Inconclusive as exc:
            proof.result.reason = f"symbolic execution: {exc}"
            proof.times["cache" if proof.cached else "symbolic"] = time.perf_counter() - t0
            return proof
        proof.times["cache" if proof.cached else "symbolic"] = time.perf_counter() - t0
    else:
        assert ob.base is None and ob.events is None and (rel.policy, rel.config) == (
            ob.policy, ob.config), "a shared relation is a plain obligation's, over all events"
    proof.paths = {er.name: er.paths for er in rel.events} | {"initial": rel.init_paths}
    try:
        t1 = time.perf_counter()
        proof.vacuity = vacuity(rel, ob.props, ob.bound, ck, enabled)
        proof.times["vacuity"] = time.perf_counter() - t1
        if proof.vacuity:
            proof.result = Result(Verdict.UNKNOWN, ob.engine, reason="vacuity check failed: "
                                  + "; ".join(proof.vacuity))
            return proof
        if certificates is not None and use_stored and ob.engine in ("auto", "houdini"):
            proof.result = _stored(rel, ob, ck, certificates, proof)
            if proof.result.verdict == Verdict.PROVED or proof.stored.startswith("rejected"):
                proof.times.update(proof.result.times)
                _save(rel, ob, proof, certificates, save)
                return proof
        found = _explicit_first(rel, ob, ck) if ob.engine in ("bmc", "auto") else None
        if found is not None:
            proof.result, t = found
            proof.times.update(proof.result.times)
            proof.counterexample = confirm(t, proof.result, ob.props) if ob.base is None \
                else confirm_differential(t, proof.result, ob)
            return proof
        proof.result = _engine(rel, ob, ck)
    except Inconclusive as exc:
        proof.result = Result(Verdict.UNKNOWN, ob.engine, reason=str(exc))
    proof.times.update(proof.result.times)
    if proof.result.witness is not None:
        proof.counterexample = counterexample(rel, proof.result, ob.props) if ob.base is None \
            else differential_counterexample(rel, proof.result, ob)
    if certificates is not None:
        _save(rel, ob, proof, certificates, save)
    return proof


def alone(ob: Obligation, single: Proof) -> Proof:
    """ob, a differential obligation, decided by `single`, the proof that ob's policy alone
    violates none of ob's properties in ob's configuration (over ob's event kinds or more).
    The product's policy side takes the same events from the same states as the policy alone,
    so a violation there is a violation of the policy alone: with none of those, the policy
    has none that its base lacks."""
    assert ob.base is not None and single.result.verdict == Verdict.PROVED
    r = single.result
    return replace(single, obligation=ob, alone=ob.props, result=replace(r, certificate=(
        f"{ob.policy} alone has no violation of {', '.join(ob.props)} (so none {ob.base} "
        f"lacks): {r.certificate}")))


def partly_alone(ob: Obligation, single: Proof, rest: Proof) -> Proof:
    """ob, a differential obligation, decided for some of its properties by `single` (ob's
    policy alone violates none of them, as in `alone`) and for the others by `rest`, the
    proof of ob over those on the product: ob's verdict is rest's (a counterexample of rest is
    a shortest one of ob, as ob's policy has none of single's properties at all), its times
    both proofs'."""
    assert ob.base is not None and single.result.verdict == Verdict.PROVED
    done = single.obligation.props
    r = rest.result
    why = (f"{ob.policy} alone has no violation of {', '.join(done)} (so none {ob.base} "
           f"lacks): {single.result.certificate}")
    return replace(rest, obligation=ob, alone=done,
                   times={f"alone {k}": v for k, v in single.times.items()} | rest.times,
                   stored="; ".join(s for s in (single.stored, rest.stored) if s),
                   result=replace(r, certificate=f"{why}; on the product, {r.certificate}")
                   if r.verdict == Verdict.PROVED else r)


def _alone_stored(ob: Obligation, certificates: Path) -> Obligation | None:
    """ob's policy alone, over ob's event kinds or else over all, and over those of ob's
    properties that a stored certificate found from today's sources covers (the most of
    them), as an obligation (re-checking the certificate decides the differential ob for
    those: alone, partly_alone); None when no such certificate covers any."""
    best: Obligation | None = None
    for events in dict.fromkeys((ob.events, None)):
        single = replace(ob, base=None, events=events, engine="houdini")
        try:
            found = store.load(certificates, _cell(single))
        except store.Corrupt:
            continue  # not used: the product is searched as without a store
        if found is None or not found.current:
            continue
        covered = tuple(p for p in ob.props if p in found.properties)
        if covered and (best is None or len(covered) > len(best.props)):
            best = replace(single, props=covered)
    return best


def relation(ob: Obligation, deadline: Deadline | None = None,
             progress: Progress | None = None) -> Relation:
    """The relation ob is decided on (its policy's, or the product with its base's);
    Inconclusive once deadline has passed."""
    if ob.base is None:
        return build(policies.resolve(ob.policy), CONFIGS[ob.config], ob.kinds(), ob.props,
                     deadline, progress)
    return product.build(policies.resolve(ob.policy), policies.resolve(ob.base),
                         CONFIGS[ob.config], ob.kinds(), ob.props, deadline, progress)


def _relation(ob: Obligation, deadline: Deadline, progress: Progress,
              relations: Path | None, proof: Proof) -> Relation:
    rel, proof.cached = load_or_build(ob, deadline, progress, relations)
    return rel


def load_or_build(ob: Obligation, deadline: Deadline | None, progress: Progress,
                  relations: Path | None) -> tuple[Relation, bool]:
    """ob's relation, and whether it came from the relation cache `relations` (None: no
    cache): loaded when the cache has it, else built by symbolic execution (and cached)."""
    cell = _cell(ob)
    if relations is not None:
        progress("loading the cached relation")
        rel, why = store.load_relation(relations, cell, ob.props)
        if rel is not None:
            return rel, True
        if why:  # never used: rebuilt, and overwritten below
            progress(f"relation cache entry ignored: {why}")
    rel = relation(ob, deadline, progress)
    if relations is not None:
        store.save_relation(relations, cell, ob.props, rel)
    return rel, False


def _cell(ob: Obligation) -> store.Cell:
    return store.Cell(ob.policy, ob.config, ob.base, ob.events)


def _stored(rel: Relation, ob: Obligation, ck: Checker, certificates: Path,
            proof: Proof) -> Result:
    """The cell's stored certificate, if it covers ob's properties: re-checked as it is when
    the sources it was found from are today's, else a warm start of houdini from its lemmas.
    Anything but `proved` lets the caller search as without a store, except a corrupted or
    rejected current certificate, which is `unknown` (proof.stored says which)."""
    try:
        found = store.load(certificates, _cell(ob))
    except store.Corrupt as exc:
        proof.stored = f"rejected: {exc}"
        return Result(Verdict.UNKNOWN, ob.engine, reason=(
            f"stored certificate is corrupted: {exc} (delete it, refresh it with "
            "--save-certificate, or run with --no-cache)"))
    if found is None or not set(ob.props) <= set(found.properties):
        return Result(Verdict.UNKNOWN, ob.engine)
    known = set(rel.pre.values())
    lemmas = [t for _, t in found.lemmas if t.get_free_variables() <= known]
    if found.current:
        ck.progress(f"re-check of the stored certificate ({len(lemmas)} lemmas)")
        r = engines.recheck_lemmas(rel, ob.props, lemmas, ck, {})
        if r.verdict == Verdict.PROVED:
            proof.stored = f"re-checked the stored certificate {found.path} (sources unchanged)"
            r.certificate = f"stored certificate {found.path}, {r.certificate}"
        else:
            proof.stored = f"rejected: {found.path}: {r.reason}"
            r.reason = (f"the stored certificate {found.path} is not a certificate of this "
                        f"relation: {r.reason} (refresh it with --save-certificate, or run "
                        "with --no-cache)")
        return r
    ck.progress(f"houdini, warm start from the stored certificate's {len(lemmas)} lemmas")
    r = engines.houdini(rel, ob.props, ck, seed=lemmas)
    how = (f"houdini warm-started from the stored certificate {found.path}'s {len(lemmas)} "
           "lemmas (the sources it was found from have changed)")
    if r.verdict == Verdict.PROVED:
        proof.stored = how
        r.certificate = f"{how}: {r.certificate}"
    else:
        proof.stored = f"{how}: {r.reason}; searched from every candidate"
    return r


def _save(rel: Relation, ob: Obligation, proof: Proof, certificates: Path, save: bool) -> None:
    """Writes houdini's certificate of a proof to the store when asked (`save`)."""
    r = proof.result
    if not save or r.verdict != Verdict.PROVED or not r.lemmas:
        return
    names = engines.candidates(rel)
    path = store.save(certificates, _cell(ob), r.lemmas, names, ob.props)
    proof.stored = (proof.stored + "; " if proof.stored else "") + f"certificate saved to {path}"


# Seconds the explicit-state search may take before bmc searches on its own.
EXPLICIT_SECONDS = 20.0


def _explicit_first(rel: Relation, ob: Obligation, ck: Checker) -> tuple[Result, Trace] | None:
    """Explicit-state search for a violation within the bound (formal.model.explore) and bmc's
    depths below the bound (engines.depths), side by side on two cores when the machine has
    them: once bmc finds nothing reachable in fewer events than the search's trace has, that
    trace is a shortest counterexample.  None when the search finds nothing in time, or when
    bmc's answer (a shorter counterexample, unknown) is the result."""
    t0 = time.perf_counter()
    kinds = {er.name for er in rel.events}
    left = ck.remaining()  # the run's deadline bounds the search too
    seconds = EXPLICIT_SECONDS if left is None else min(left, EXPLICIT_SECONDS)
    policy = policies.resolve(ob.policy)
    base = None if ob.base is None else policies.resolve(ob.base)
    # the worker's: its progress would garble ours
    quiet = Checker(deadline=ck.deadline, decider=ck.decider)

    def search() -> Trace | None:
        ck.progress(f"explicit search to {ob.bound} events")
        return explore.search(policy, CONFIGS[ob.config], ob.props, kinds, ob.bound, seconds,
                              base)

    if ck.jobs > 1 and parallel.AVAILABLE and ob.bound:
        # The forked worker's z3 starts without this process's converted terms: with them
        # alive, v6.6 shadow's depth-3 query took 62-66 s in the worker, without 30-34 s
        # (docs/performance.md; z3's search depends on what its context holds).
        ck.converters.clear()
        with parallel.beside(lambda: engines.depths(rel, ob.props, ob.bound - 1, quiet)) \
                as depth:
            t = search()
            searched = time.perf_counter() - t0
            if t is None:
                return None
            ck.progress(f"bmc below {len(t.events)} events")
            for _ in range(len(t.events)):
                got = depth()
                if got is None or got[1]:
                    return None  # _engine asks bmc again, which then finds the shorter one
    else:
        t = search()
        searched = time.perf_counter() - t0
        if t is None:
            return None
        if t.events and engines.bmc(rel, ob.props, len(t.events) - 1, ck,
                                    prefer=preferences).verdict != Verdict.BOUNDED:
            return None
    depth_n = len(t.events)
    times = {"explicit": searched, "bmc": time.perf_counter() - t0 - searched}
    return Result(Verdict.REFUTED, "explicit+bmc", depth_n, times=times), replace(
        t, description=f"shortest counterexample found by flushproof's explicit search"
                       f"{'' if base is None else f' against base {base.name}'}, none shorter "
                       f"by bmc ({depth_n} events)")


def _engine(rel: Relation, ob: Obligation, ck: Checker) -> Result:
    props = ob.props
    if ob.engine == "bmc":
        return engines.bmc(rel, props, ob.bound, ck, prefer=preferences)
    if ob.engine == "kind":
        return engines.kind(rel, props, ob.bound, ck, prefer=preferences)
    if ob.engine == "houdini":
        return engines.houdini(rel, props, ck)
    if ob.engine == "pdr":
        return engines.pdr(rel, props, ck)
    # auto (after the explicit search for a short counterexample, run): houdini, whose proof
    # means no counterexample exists at any depth; else bmc, a shortest counterexample within
    # the bound; else the other unbounded engines.  houdini goes before bmc because bmc's
    # unsatisfiable depths cost the most on a cell that holds: v6.12 shadow's role, pgd and
    # metadata were unfinished at bmc depth 4 after 1,500 s, and houdini proves them in 155 s
    # (docs/findings.md).
    first = engines.houdini(rel, props, ck)
    if first.verdict == Verdict.PROVED:
        return first
    bounded = engines.bmc(rel, props, ob.bound, ck, prefer=preferences)
    bounded.times = first.times | bounded.times
    if bounded.verdict != Verdict.BOUNDED or not ob.past_bound:
        return bounded
    for attempt in (lambda: engines.kind(rel, props, DEFAULT_K, ck, prefer=preferences),
                    lambda: engines.pdr(rel, props, ck)):
        r = attempt()
        if r.verdict in (Verdict.PROVED, Verdict.REFUTED):
            r.times = bounded.times | r.times
            return r
    bounded.reason = "no unbounded proof: houdini, k-induction and pdr were inconclusive"
    return bounded


# -- counterexamples --

# Operands that hold guest addresses or page-table pointers, and those that hold CR4.
_ADDRESSES = {("mov_cr3", "value"), ("guest_pte_write", "pgd"), ("guest_pte_write_other", "pgd"),
              ("invlpg", "va"), ("invpcid", "va"), ("set_sregs", "cr3"), ("vmentry", "cr3"),
              ("vmentry", "nested_pgd"), ("invvpid", "va"), ("invlpga", "va")}
_CR4S = {("mov_cr4", "value"), ("set_sregs", "cr4"), ("vmentry", "cr4")}


def preferences(un: Unroller, depth: int) -> list[FNode]:
    """What makes a counterexample readable (and replayable on the concrete MMU), tried in
    order as one extra constraint, the first satisfiable one kept: a plain watched page (user,
    writable, executable: its rights change no step, docs/model.md "Page rights"), addresses
    below 16 MiB (CR3's bit 63, NOFLUSH, left free) and no 5-level paging; first also with CR3
    bits 11:5 clear, so a PAE PDPT reads as a page address (the concrete level replays either:
    formal.concrete.paging.pdpt_address)."""
    s0 = un.state(0)
    plain = [var if n.endswith(("page_user", "page_writable")) else Not(var)
             for n, var in s0.items() if n.endswith(("page_user", "page_writable", "page_nx"))]
    addrs = [var for n, var in s0.items() if n.endswith("regs.cr3")]
    cr4s = [var for n, var in s0.items() if n.endswith("regs.cr4")]
    for i in range(1, depth + 1):
        for er in un.events:
            for f, var in un.ops(i, er).items():
                if (er.name, f) in _ADDRESSES:
                    addrs.append(var)
                elif (er.name, f) in _CR4S:
                    cr4s.append(var)
    zero = BV(0, 64)
    small = [EqualsOrIff(BVAnd(a, BV(0x7FFF_FFFF_FF00_0000, 64)), zero) for a in addrs]
    no_la57 = [EqualsOrIff(BVAnd(c, BV(CR4_LA57, 64)), zero) for c in cr4s]
    page_aligned = [EqualsOrIff(BVAnd(a, BV(0xFE0, 64)), zero) for a in addrs]
    return [And(plain + small + no_la57 + page_aligned), And(plain + small + no_la57)]


def extract_trace(rel: Relation, w: engines.Witness, how: str) -> Trace:
    """The events and initial registers the solver chose, as a trace file."""
    un = Unroller(rel)
    s0 = un.state(0)
    side = "" if "regs.cr0" in s0 else "new."  # a product's registers: the new policy's
    regs = Regs(*(w.values[s0[f"{side}regs.{r}"]] for r in ("cr0", "cr3", "cr4", "efer")))
    page = {a: bool(w.values[s0[f"{side}page_{a}"]])
            for a in ("global", "large", "1g", "4m", "user", "writable", "nx")}
    events = []
    for i in range(1, w.depth + 1):
        er = un.events[w.values[un.sel(i)]]
        ops = {f: w.values[var] for f, var in un.ops(i, er).items()}
        events.append(ev.EVENT_TYPES[er.name](**ops))
    return Trace(rel.policy, rel.config, regs, tuple(events), how, Page(
        page["global"], arch.page_size(page["large"], page["1g"], page["4m"]), page["user"],
        page["writable"], page["nx"]))


def counterexample(rel: Relation, r: Result, props: tuple[str, ...]) -> Counterexample:
    """The witness as a trace.  A refutation stands only if the simulator violates one of props
    at the same event (else symbolic and concrete execution disagree: a bug, never a verdict)
    and the concrete MMU replays it (else the two levels disagree: a modelling gap)."""
    w = r.witness
    assert w is not None
    if w.model_error:
        t = extract_trace(rel, w, f"model error reached by flushproof {r.engine} "
                          f"({w.depth} events)")
        return Counterexample(t, None)
    t = extract_trace(rel, w, f"shortest counterexample found by flushproof {r.engine} "
                      f"({w.depth} events)")
    return confirm(t, r, props)


def confirm(t: Trace, r: Result, props: tuple[str, ...]) -> Counterexample:
    """t as the counterexample of r, confirmed on the simulator and the concrete MMU (r is
    demoted to unknown where either disagrees)."""
    out = policies.simulate(t)
    cex = Counterexample(t, out)
    want = len(t.events) - 1  # the initial entry is index -1
    if out.violation is None or out.violation[0] != want:
        got = "no violation" if out.violation is None else f"a violation at {out.violation[0]}"
        _demote(r, f"the counterexample ({len(t.events)} events) gives {got} on the "
                "concrete simulator: symbolic and concrete execution disagree")
        return cex
    mine = [x for x in out.records[-1].violations if x.prop in props]
    if not mine:
        _demote(r, f"the concrete simulator violates {out.violation[1].prop}, not "
                f"{', '.join(props)}: symbolic and concrete execution disagree")
        return cex
    cex.violation = (want, mine[0].prop, mine[0].message)
    cex.replay = _replay(t)
    if cex.replay.status is ReplayStatus.NOT_CONFIRMED:
        # The two levels disagree: a modelling gap in one of them, never a verdict.
        _demote(r, "the abstract counterexample is not confirmed by the concrete MMU: the two "
                "levels disagree (a modelling gap)")
    return cex


def differential_counterexample(rel: Relation, r: Result, ob: Obligation) -> Counterexample:
    """A product's witness as a trace of the new policy, confirmed (confirm_differential)."""
    w = r.witness
    assert w is not None and ob.base is not None
    how = "model error reached" if w.model_error else "shortest counterexample found"
    t = extract_trace(rel, w, f"{how} by flushproof {r.engine} against base {ob.base} "
                      f"({w.depth} events)")
    if w.model_error:
        return Counterexample(t, None)
    return confirm_differential(t, r, ob)


def confirm_differential(t: Trace, r: Result, ob: Obligation) -> Counterexample:
    """t, a trace of the new policy, with the base's run of the same events.  It stands only if
    the simulator gives the new policy a violation of one of the properties at the last event
    where the base has none, and the concrete MMU shows the new policy's forbidden access there
    and none for the base up to it (r is demoted to unknown where either disagrees)."""
    assert ob.base is not None
    tb = replace(t, policy=ob.base)
    new = model_simulate.run(t, policies.resolve(ob.policy), stop_at_violation=False)
    base = model_simulate.run(tb, policies.resolve(ob.base), stop_at_violation=False)
    cex = Counterexample(t, new, base_run=base)
    want = len(t.events) - 1
    had = {x.prop for x in base.records[-1].violations}
    added = [x for x in new.records[-1].violations if x.prop in ob.props and x.prop not in had]
    if not added:
        _demote(r, f"the concrete simulator does not give {ob.policy} a violation of "
                f"{', '.join(ob.props)} at event {want} that {ob.base} lacks: symbolic and "
                "concrete execution disagree")
        return cex
    cex.violation = (want, added[0].prop, added[0].message)
    try:
        mine, theirs = policies.replay(t), policies.replay(tb)
    except (NotModeled, ModelError) as exc:
        cex.replay = Replay(ReplayStatus.NOT_REPLAYED, str(exc))
        return cex
    if mine.event is not None and mine.event < want:
        cex.replay = Replay(ReplayStatus.NOT_REPLAYED, f"the replay stops at an earlier "
                            f"forbidden access (event {mine.event}): {mine.message}", mine)
    elif mine.event == want and (theirs.event is None or theirs.event > want):
        cex.replay = Replay(ReplayStatus.CONFIRMED, f"{mine.message}; under {ob.base} no "
                            f"forbidden access through event {want}", mine)
    else:
        cex.replay = Replay(ReplayStatus.NOT_CONFIRMED, f"{ob.policy}: "
                            f"{mine.message or 'no forbidden access'}; {ob.base}: "
                            f"{theirs.message or 'no forbidden access'}", mine)
        _demote(r, "the differential counterexample is not confirmed by the concrete MMU: the "
                "two levels disagree (a modelling gap)")
    return cex


def _demote(r: Result, reason: str) -> None:
    r.verdict = Verdict.UNKNOWN
    r.reason = reason


def _replay(t: Trace) -> Replay:
    """Concretize the counterexample on the concrete MMU (formal.concrete.replay)."""
    try:
        out = policies.replay(t)
    except (NotModeled, ModelError) as exc:
        return Replay(ReplayStatus.NOT_REPLAYED, str(exc))
    if out.violated:
        return Replay(ReplayStatus.CONFIRMED, out.message, out)
    return Replay(ReplayStatus.NOT_CONFIRMED, f"the concrete MMU observed no forbidden access "
                  f"in {out.events_run} events", out)
