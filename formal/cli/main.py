"""The `flushproof` command.  Exit status, for every subcommand: 0 holds, 1 violated,
2 inconclusive, 3 bad input."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from formal.cli import corpus, policies, prove, render, suite
from formal.concrete import replay
from formal.engines import search as engines
from formal.engines.checker import CHECKERS
from formal.engines.progress import Progress
from formal.errors import InputError
from formal.model import trace
from formal.model.properties import PROPERTIES, ModelError
from formal.model.state import CONFIGS
from specs import POLICIES

EXIT_HOLDS, EXIT_VIOLATED, EXIT_INCONCLUSIVE, EXIT_BAD_INPUT = 0, 1, 2, 3


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse exits 2 by default; we say 3
        self.print_usage(sys.stderr)
        print(f"flushproof: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT)


def _trace(args: argparse.Namespace) -> trace.Trace:
    return policies.override(policies.load(args.trace), args.policy, args.config)


def _simulate(args: argparse.Namespace) -> int:
    out = policies.simulate(_trace(args))
    if args.json:
        print(json.dumps(render.outcome_json(out), indent=1))
    else:
        print(render.outcome_text(out), end="")
    return EXIT_VIOLATED if out.violated else EXIT_HOLDS


def _corpus(args: argparse.Namespace) -> int:
    cells = corpus.run(Path(args.dir))
    for c in cells:
        mark = "ok  " if c.ok else "FAIL"
        extra = "" if c.ok else f" (expected {c.expected})"
        print(f"{mark} {c.trace:32} {c.policy:24} {c.actual}{extra}")
    bad = sum(not c.ok for c in cells)
    print(f"{len(cells) - bad} passed, {bad} failed")
    return EXIT_VIOLATED if bad else EXIT_HOLDS


def _replay(args: argparse.Namespace) -> int:
    out = policies.replay(_trace(args))
    t = out.trace
    if args.json:
        print(json.dumps(replay.outcome_json(out), indent=1))
    elif out.violated:
        print(f"FORBIDDEN: {out.message}")
    else:
        print(f"PASS: no forbidden access in {out.events_run} events "
              f"(policy {t.policy}, config {t.config})")
    return EXIT_VIOLATED if out.violated else EXIT_HOLDS


def _prove(args: argparse.Namespace) -> int:
    ob = prove.Obligation(args.policy, args.config,
                          tuple(args.property) if args.property else PROPERTIES, args.engine,
                          args.bound, args.timeout, tuple(args.event) if args.event else None)
    # Progress on stderr only for a person at a terminal, never into --json's consumer.
    live = sys.stderr.isatty() and not args.json
    progress = Progress(sys.stderr if live else None, live=True)
    try:
        proof = prove.run(ob, Path(args.dump_smt) if args.dump_smt else None, args.checker,
                          args.jobs, progress)
    finally:
        progress.done()
    r = proof.result
    cex_path = None
    if proof.counterexample is not None:
        cex_path = Path(args.cex or f"flushproof-cex-{args.policy}-{args.config}.json")
        cex_path.write_text(trace.dumps(proof.counterexample.trace))
    if args.json:
        print(json.dumps(render.proof_json(proof, cex_path), indent=1))
    else:
        print(render.proof_text(proof, cex_path), end="")
    return {engines.Verdict.PROVED: EXIT_HOLDS,
            engines.Verdict.REFUTED: EXIT_VIOLATED}.get(r.verdict, EXIT_INCONCLUSIVE)


def _suite(args: argparse.Namespace) -> int:
    entries = suite.load(Path(args.file))
    bad = 0
    for entry in entries:
        got = suite.run_one(entry)
        ok = got.label == entry.expect
        bad += not ok
        mark = "ok  " if ok else "FAIL"
        extra = "" if ok else f" (expected {entry.expect})"
        print(f"{mark} {entry.name:44} {got.label:12} {got.detail}{extra}", flush=True)
    print(f"{len(entries) - bad} passed, {bad} failed")
    return EXIT_VIOLATED if bad else EXIT_HOLDS


def main(argv: list[str] | None = None) -> int:
    p = _Parser(prog="flushproof", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=_Parser)
    s = sub.add_parser("simulate", help="run a trace file on the model with concrete values")
    s.add_argument("trace", help="trace file (format flushproof-trace/1)")
    s.add_argument("--policy", help="run under this policy instead of the trace's")
    s.add_argument("--config", help="run in this configuration instead of the trace's")
    s.add_argument("--json", action="store_true", help="print the run as JSON")
    s.set_defaults(func=_simulate)
    c = sub.add_parser("corpus", help="run the regression corpus against its expectations")
    c.add_argument("dir", nargs="?", default="traces", help="directory of traces (traces/)")
    c.set_defaults(func=_corpus)
    r = sub.add_parser("replay", help="replay a trace on the concrete shadow MMU and report the "
                       "first access the architecture forbids")
    r.add_argument("trace", help="trace file (format flushproof-trace/1)")
    r.add_argument("--policy", help="replay under this policy instead of the trace's")
    r.add_argument("--config", help="replay in this configuration instead of the trace's")
    r.add_argument("--json", action="store_true", help="print the outcome as JSON")
    r.set_defaults(func=_replay)
    v = sub.add_parser("prove", help="prove or refute a policy's properties in a configuration")
    v.add_argument("--policy", required=True, help=f"one of {', '.join(POLICIES)}")
    v.add_argument("--config", required=True, help=f"one of {', '.join(CONFIGS)}")
    v.add_argument("--property", action="append", choices=PROPERTIES,
                   help="a property to check (repeatable; default: all four)")
    v.add_argument("--engine", default="auto", choices=engines.ENGINES)
    v.add_argument("--event", action="append", metavar="OP",
                   help="restrict the events to this kind (repeatable, e.g. --event smi "
                        "--event rsm; default: all the configuration's); a verdict then covers "
                        "only executions of these events")
    v.add_argument("--bound", type=int, default=prove.DEFAULT_BOUND,
                   help="events explored by bmc, or the largest k of kind")
    v.add_argument("--timeout", type=float, help="seconds for the solver queries")
    v.add_argument("--checker", default=CHECKERS[0], choices=CHECKERS,
                   help="the solver that re-checks a certificate (default: %(default)s, the "
                        "fastest measured; never z3, the search's)")
    v.add_argument("--jobs", type=int, metavar="N",
                   help="processes for the re-check's queries (default: one per core)")
    v.add_argument("--dump-smt", metavar="DIR", help="write every query as an SMT-LIB 2 file")
    v.add_argument("--cex", metavar="FILE", help="where to write a counterexample trace")
    v.add_argument("--json", action="store_true", help="print the result as JSON")
    v.set_defaults(func=_prove)
    u = sub.add_parser("suite", help="run the proof obligations of a proof script")
    u.add_argument("file", nargs="?", default="proofs/suite.json", help="proofs/suite.json")
    u.set_defaults(func=_suite)
    args = p.parse_args(argv)
    if getattr(args, "bound", 0) < 0:
        p.error(f"--bound must be >= 0, got {args.bound}")
    if (getattr(args, "jobs", None) or 1) < 1:
        p.error(f"--jobs must be >= 1, got {args.jobs}")
    # The one place errors become exit statuses: bad input (formal.errors) is 3, a model that
    # contradicts itself is inconclusive; anything else is a bug and propagates.
    try:
        return args.func(args)
    except InputError as exc:
        print(f"flushproof: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ModelError as exc:
        print(f"flushproof: model error: {exc}", file=sys.stderr)
        return EXIT_INCONCLUSIVE


def entry() -> None:
    sys.exit(main())
