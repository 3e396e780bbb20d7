"""One proof obligation: a policy, a configuration, properties, an engine and a bound; the
vacuity checks every obligation needs; and the concrete replay of a counterexample."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from pysmt.shortcuts import And, Or

from formal import engines, replay, simulate
from formal import events as ev
from formal.engines import Checker, Inconclusive, Result
from formal.properties import PROPERTIES, ModelError
from formal.state import CONFIGS
from formal.transition import Relation, build, event_kinds
from formal.unroll import Unroller
from specs import POLICIES

DEFAULT_BOUND = 4
DEFAULT_K = 2


class ObligationError(ValueError):
    """A malformed obligation (unknown policy, configuration, property or engine)."""


@dataclass
class Proof:
    policy: str
    config: str
    props: tuple[str, ...]
    engine: str
    result: Result
    paths: dict[str, int] = field(default_factory=dict)
    times: dict[str, float] = field(default_factory=dict)
    vacuity: list[str] = field(default_factory=list)
    replay: str = ""  # what the concrete replay of the counterexample showed
    # The event kinds the environment may issue when not all the configuration's: a verdict
    # then covers executions of these events only.
    events: tuple[str, ...] | None = None


def check_obligation(policy: str, config: str, props: tuple[str, ...], engine: str,
                     bound: int, events: tuple[str, ...] | None = None) -> None:
    if policy not in POLICIES:
        raise ObligationError(f"unknown policy {policy!r} (known: {', '.join(POLICIES)})")
    if config not in CONFIGS:
        raise ObligationError(f"unknown config {config!r} (known: {', '.join(CONFIGS)})")
    for p in props:
        if p not in PROPERTIES:
            raise ObligationError(f"unknown property {p!r} (known: {', '.join(PROPERTIES)})")
    if engine not in engines.ENGINES:
        raise ObligationError(f"unknown engine {engine!r} (known: {', '.join(engines.ENGINES)})")
    if bound < 0:
        raise ObligationError(f"bound must be >= 0, got {bound}")
    if events is not None:
        known = [k.op for k in event_kinds(CONFIGS[config])]
        for op in events:
            if op not in known:
                raise ObligationError(f"event {op!r} is not one of config {config}'s "
                                      f"(known: {', '.join(known)})")
        if not events:
            raise ObligationError("an empty event restriction: name at least one event")


def _kinds(config: str, events: tuple[str, ...] | None) -> list[type[ev.Event]] | None:
    """The event kinds of a restriction, in the configuration's order; None for all."""
    if events is None:
        return None
    return [k for k in event_kinds(CONFIGS[config]) if k.op in events]


def vacuity(rel: Relation, props: tuple[str, ...], bound: int, ck: Checker) -> list[str]:
    """The obligation is not vacuous: its initial states exist, every event is enabled in some
    state reachable within the bound, and each property's violation is expressible (its
    negation is satisfiable in some unconstrained state).  Returns the failures."""
    un = Unroller(rel)
    failures = []
    if not ck.sat("vacuity-init", un.init()):
        return ["no initial state: the initial-state constraint is unsatisfiable"]
    for p in props:
        if not ck.sat(f"vacuity-{p}", Or([er.violated[p] for er in rel.events]
                                         + [rel.init_violated[p]])):
            failures.append(f"property {p} cannot be violated in any state: it checks nothing")
    pending = set(range(len(un.kinds)))
    path = [un.init()]
    for d in range(1, max(bound, 1) + 1):
        for k in sorted(pending):
            er = un.kinds[k]
            enabled = And(un.is_kind(d, k), er.steps.substitute(un._subst(d, er)))
            if ck.sat(f"vacuity-enabled-{er.kind.op}-{d}", And(path + [enabled])):
                pending.discard(k)
        if not pending:
            break
        path.append(un.trans(d))
    failures += [f"event {un.kinds[k].kind.op} is never enabled within {max(bound, 1)} events"
                 for k in sorted(pending)]
    return failures


def run(policy: str, config: str, props: tuple[str, ...] = PROPERTIES, engine: str = "auto",
        bound: int = DEFAULT_BOUND, timeout: float | None = None,
        dump_dir: Path | None = None, events: tuple[str, ...] | None = None) -> Proof:
    """events: restrict the environment to these event kinds (default: every kind the
    configuration has)."""
    check_obligation(policy, config, props, engine, bound, events)
    t0 = time.perf_counter()
    kinds = _kinds(config, events)
    rel = build(POLICIES[policy], CONFIGS[config], kinds, props=props)
    proof = Proof(policy, config, props, engine, Result("unknown", engine),
                  paths={er.kind.op: er.paths for er in rel.events} | {"initial": rel.init_paths},
                  times={"symbolic": time.perf_counter() - t0},
                  events=None if kinds is None else tuple(k.op for k in kinds))
    ck = Checker("z3", timeout, dump_dir)
    try:
        t1 = time.perf_counter()
        proof.vacuity = vacuity(rel, props, bound, ck)
        proof.times["vacuity"] = time.perf_counter() - t1
        if proof.vacuity:
            proof.result = Result("unknown", engine, reason="vacuity check failed: "
                                  + "; ".join(proof.vacuity))
            return proof
        proof.result = _engine(rel, props, engine, bound, ck)
    except Inconclusive as exc:
        proof.result = Result("unknown", engine, reason=str(exc))
    proof.times.update(proof.result.times)
    if proof.result.trace is not None and proof.result.verdict == "refuted":
        proof.replay = _replay(proof.result)
        if proof.replay.startswith("NOT confirmed"):
            # The two levels disagree: a modelling gap in one of them, never a verdict.
            proof.result.verdict = "unknown"
            proof.result.reason = ("the abstract counterexample is not confirmed by the "
                                   "concrete MMU: the two levels disagree (a modelling gap)")
    return proof


def _engine(rel: Relation, props: tuple[str, ...], engine: str, bound: int,
            ck: Checker) -> Result:
    if engine == "bmc":
        return engines.bmc(rel, props, bound, ck)
    if engine == "kind":
        return engines.kind(rel, props, max(bound, 1), ck)
    if engine == "houdini":
        return engines.houdini(rel, props, ck)
    if engine == "pdr":
        return engines.pdr(rel, props, ck)
    # auto: a shortest counterexample within the bound, else an unbounded proof attempt,
    # cheapest engine first.
    first = engines.bmc(rel, props, bound, ck)
    if first.verdict != "bounded":
        return first
    for attempt in (lambda: engines.houdini(rel, props, ck),
                    lambda: engines.kind(rel, props, DEFAULT_K, ck),
                    lambda: engines.pdr(rel, props, ck)):
        r = attempt()
        if r.verdict in ("proved", "refuted"):
            r.times = first.times | r.times
            return r
    first.reason = "no unbounded proof: houdini, k-induction and pdr were inconclusive"
    return first


def _replay(r: Result) -> str:
    """Concretize the counterexample on the concrete MMU (formal.replay)."""
    assert r.trace is not None
    try:
        out = replay.replay(r.trace)
    except (simulate.NotModeled, ModelError) as exc:
        return f"not replayed: {exc}"
    if out.violated:
        return f"confirmed: {out.message}"
    return (f"NOT confirmed: the concrete MMU observed no forbidden access in "
            f"{out.events_run} events")
