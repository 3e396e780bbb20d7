"""The `flushproof` command.  Exit status, for every subcommand (docs/exit-codes.md):
0 holds / proved, 1 violated / refuted (for corpus, suite and check: a verdict differs from
the expected one; 4 if none differs but one is unknown), 2 bounded (no violation within the
bound; not a proof), 3 bad input, 4 unknown (timeout, solver unknown or failure, model error),
5 internal error (a bug in flushproof), 130 interrupted (Ctrl-C)."""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import sys
import tempfile
import traceback
from dataclasses import replace
from pathlib import Path

from rich.console import Console

from formal.cli import (
    check,
    corpus,
    diff,
    matrix,
    matrix_render,
    output,
    policies,
    prove,
    render,
    store,
    suite,
    workdiff,
)
from formal.cli.status import Status, matches, overall
from formal.concrete import replay
from formal.engines import search as engines
from formal.engines.checker import CHECKERS
from formal.engines.progress import Progress
from formal.errors import InputError, Malformed
from formal.model import trace
from formal.model.properties import PROPERTIES, ModelError
from formal.model.state import CONFIGS
from specs import POLICIES

EXIT_HOLDS, EXIT_VIOLATED, EXIT_BOUNDED, EXIT_BAD_INPUT, EXIT_UNKNOWN, EXIT_INTERNAL = range(6)
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it
EXIT_CODES = (EXIT_HOLDS, EXIT_VIOLATED, EXIT_BOUNDED, EXIT_BAD_INPUT, EXIT_UNKNOWN,
              EXIT_INTERNAL, EXIT_INTERRUPTED)
DEFAULT_SCRIPT = "proofs/suite.json"
VERDICT_EXIT = {engines.Verdict.PROVED: EXIT_HOLDS, engines.Verdict.REFUTED: EXIT_VIOLATED,
                engines.Verdict.BOUNDED: EXIT_BOUNDED, engines.Verdict.UNKNOWN: EXIT_UNKNOWN}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse exits 2, with usage, by default
        print(f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(EXIT_BAD_INPUT)


def _seconds(text: str) -> float:
    """--timeout: a finite number of seconds > 0 (0 is not "no timeout", nan never passes)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number of seconds > 0, got {text!r}")
    return value


def _at_least(least: int):
    """An argparse type: an integer >= least."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = least - 1
        if value < least:
            raise argparse.ArgumentTypeError(f"must be an integer >= {least}, got {text!r}")
        return value
    return parse


_jobs = _at_least(1)  # --jobs
_count = _at_least(0)  # --sequences
# --bound: depth 0 is the first guest entry alone, where no event runs.
_bound = _at_least(1)


def _trace(args: argparse.Namespace) -> trace.Trace:
    policy = args.policy or (args.loaded[-1] if args.loaded else None)
    return policies.override(policies.load(args.trace), policy, args.config)


def _simulate(args: argparse.Namespace) -> int:
    out = render.simulate_to(_trace(args), sys.stdout, args.json, steps=not args.quiet)
    return EXIT_VIOLATED if out.violated else EXIT_HOLDS


STATUS_EXIT = {Status.PASSED: EXIT_HOLDS, Status.FAILED: EXIT_VIOLATED,
               Status.UNKNOWN: EXIT_UNKNOWN}


def _corpus(args: argparse.Namespace) -> int:
    update = args.update or args.update_loaded
    c = corpus.load(Path(args.dir), missing_ok=update)
    checks = [corpus.check_trace(c, file, t) for file, t in c.traces]
    print("\n".join(corpus.report_lines(checks)))
    if not update:
        return STATUS_EXIT[overall(t.status for t in checks)]
    print("\n".join(corpus.update(c, checks, loaded=args.update_loaded)))
    # The verdicts are now the expectations; a trace a model error stopped recorded nothing.
    return STATUS_EXIT[overall(Status.UNKNOWN if t.error else Status.PASSED for t in checks)]


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
    policy = args.policy or (args.loaded[-1] if args.loaded else None)
    if policy is None:
        raise Malformed("prove needs --policy or --policy-file")
    ob = prove.Obligation(policy, args.config,
                          tuple(args.property) if args.property else PROPERTIES, args.engine,
                          args.bound, args.timeout, tuple(args.event) if args.event else None,
                          args.base)
    ob.check()
    # Every destination is checked before the proof starts (it may take hours).
    cex_path = Path(args.cex or f"flushproof-cex-{policy}-{args.config}.json")
    if args.cex:
        output.check_file(cex_path, "--cex")
    dump = Path(args.dump_smt) if args.dump_smt else None
    created = dump is not None and output.prepare_dir(dump, "--dump-smt")
    # Progress on stderr only for a person at a terminal, never into --json's consumer.
    live = sys.stderr.isatty() and not args.json
    progress = Progress(sys.stderr if live else None, live=True)
    try:
        stored = dict(certificates=Path(args.certificates), use_stored=not args.no_cache,
                      save=args.save_certificate,
                      relations=None if args.no_cache else store.cache_dir())
        proof = prove.run(ob, dump, args.checker, args.jobs, progress, **stored)
        converse = prove.run(proof.obligation.converse(), None, args.checker, args.jobs,
                             progress, **stored) if ob.base is not None else None
    except KeyboardInterrupt:  # leave nothing behind: the directory, if made now and empty
        if created and not any(dump.iterdir()):
            dump.rmdir()
        raise
    finally:
        progress.done()
    unwritten = [f"--dump-smt: {f}" for f in proof.dump_failures[:1]]
    written = None
    if proof.counterexample is not None:
        why = output.file_problem(cex_path)
        if why is None:
            try:
                output.write_atomic(cex_path, trace.dumps(proof.counterexample.trace))
                written = cex_path
            except OSError as exc:
                why = exc.strerror or str(exc)
        if why is not None:
            unwritten.append(f"the counterexample to {cex_path}: {why}")
    if args.json:
        doc = render.proof_json(proof, written)
        if converse is not None:
            doc["converse"] = render.proof_json(converse, None)
        print(json.dumps(doc, indent=1))
    else:
        print(render.proof_text(proof, written), end="")
        if converse is not None:
            print(render.converse_text(converse), end="")
    for what in unwritten:  # the verdict stands: say what is missing, in one line each
        print(f"flushproof: could not write {what}", file=sys.stderr)
    return VERDICT_EXIT[proof.result.verdict]


def _caches(args: argparse.Namespace) -> suite.Caches:
    return replace(suite.Caches.default(cold=args.no_cache), save=args.save_certificates,
                   certificates=Path(args.certificates) if args.certificates else None)


def _diff(args: argparse.Namespace) -> int:
    configs = tuple(dict.fromkeys(args.config or CONFIGS))
    props = tuple(dict.fromkeys(args.property or PROPERTIES))
    for name in (args.old, args.new):
        policies.resolve(name)
    for config in configs:
        if config not in CONFIGS:
            raise Malformed(f"unknown config {config!r} (known: {', '.join(CONFIGS)})")
    # Without --corpus, traces/ of the working directory when there is one (a checkout of
    # flushproof), else none: the command runs from a kernel tree as well.
    corpus_dir: Path | None = Path(args.corpus or "traces")
    if not corpus_dir.is_dir():
        if args.corpus:
            raise Malformed(f"--corpus {corpus_dir}: no such directory")
        corpus_dir = None
    events = tuple(args.event) if args.event else None
    if not args.no_proofs:  # every obligation checked before the first proof starts
        for config in configs:
            for ob in diff.obligations(args.old, args.new, config, props[0], args.engine,
                                       args.bound, args.timeout, events).values():
                ob.check()
    live = sys.stderr.isatty() and not args.json
    progress = Progress(sys.stderr if live else None, live=True)
    try:
        cells = [] if args.no_proofs else diff.prove_cells(
            args.old, args.new, configs, props, args.engine, args.bound, args.timeout, events,
            progress)
        tallies = workdiff.work(args.old, args.new, configs, corpus_dir, args.sequences,
                                args.seed, progress)
    finally:
        progress.done()
    if args.json:
        print(json.dumps(diff.to_json(args.old, args.new, cells, tallies, corpus_dir,
                                      args.sequences, args.seed), indent=1))
    else:
        console = Console(width=None if sys.stdout.isatty() else 200)
        diff.print_text(console, args.old, args.new, cells, tallies, args.sequences, args.seed,
                        corpus_dir)
    verdict = diff.exit_verdict(cells)
    return EXIT_HOLDS if verdict is None else VERDICT_EXIT[verdict]


def _suite(args: argparse.Namespace) -> int:
    script = Path(args.file)
    entries = [e for e in suite.load(script) if matches(e.name, args.k)]
    if not entries:
        raise Malformed(f"{args.file}: -k {args.k!r} selects no obligation")
    caches = _caches(args)
    done = []
    for entry in entries:
        got = suite.check_one(entry, script, caches)
        done.append(got.status)
        mark = {Status.PASSED: "ok  ", Status.FAILED: "FAIL", Status.UNKNOWN: "UNKN"}[got.status]
        extra = "" if got.status is Status.PASSED else f" (expected {entry.expect})"
        print(f"{mark} {entry.name:44} {got.label:12} {got.detail} [{got.seconds:.0f}s]{extra}",
              flush=True)
    print(f"{done.count(Status.PASSED)} passed, {done.count(Status.FAILED)} failed, "
          f"{done.count(Status.UNKNOWN)} unknown")
    return STATUS_EXIT[overall(done)]


def _check(args: argparse.Namespace) -> int:
    scripts = [Path(s) for s in args.scripts or [DEFAULT_SCRIPT]]
    folder = None
    if not args.no_corpus:
        folder = Path(args.corpus) if args.corpus else corpus.default_dir(scripts)
        if not (folder / corpus.EXPECTED).is_file():
            raise Malformed(f"no corpus: {folder / corpus.EXPECTED} is missing (name one with "
                            "--corpus DIR, or check none with --no-corpus)")
    to_stdout = args.json == "-"
    json_path = None if args.json in (None, "-") else Path(args.json)
    junit_path = None if args.junit_xml is None else Path(args.junit_xml)
    # Every destination and input is checked before the first proof starts (minutes).
    if json_path is not None:
        output.check_file(json_path, "--json")
    if junit_path is not None:
        output.check_file(junit_path, "--junit-xml")
    p = check.plan(scripts, folder, args.k)
    out = check.run(p, _caches(args), sys.stderr if sys.stderr.isatty() else None)
    if to_stdout:
        print(json.dumps(check.to_json(out), indent=1))
    else:
        # Not a terminal (a CI log): rich's 80 columns, unless COLUMNS says otherwise, would
        # cut the details short.
        wide = sys.stdout.isatty() or "COLUMNS" in os.environ
        check.print_text(out, Console(highlight=False, width=None if wide else 120))
    for problem in check.write(out, json_path, junit_path):  # the verdicts stand regardless
        print(f"flushproof: could not write {problem}", file=sys.stderr)
    return STATUS_EXIT[out.status]


def _matrix(args: argparse.Namespace) -> int:
    names = list(dict.fromkeys((args.policy or []) + args.loaded)) or list(POLICIES)
    for name in names:
        if name not in policies.known():
            raise Malformed(f"unknown policy {name!r} (known: {', '.join(policies.known())})")
    # A loaded policy travels to the workers as its file, loaded there again.
    files = {name: f"{policies.source(name)}:{policies.known()[name].__name__}"
             for name in names if policies.source(name) is not None}
    props = tuple(dict.fromkeys(args.property or PROPERTIES))
    stores = {} if args.no_cache else {"certificates": args.certificates,
                                       "relations": str(store.cache_dir())}
    tasks = [matrix.Task(p, c, props, args.engine, args.bound, args.timeout, files.get(p),
                         **stores)
             for p in names for c in dict.fromkeys(args.config or CONFIGS)]
    scheduler = None if args.scheduler is None else matrix.check_scheduler(args.scheduler)
    if scheduler is not None and args.jobs is not None:
        raise Malformed("--jobs sizes the local pool; on a Dask cluster the workers do "
                        "(drop --jobs or --scheduler)")
    for path, option in ((args.json, "--json"), (args.html, "--html")):
        if path is not None:
            output.check_file(Path(path), option)
    total = len(tasks) * len(props)
    finished = 0
    progress = Progress(sys.stderr if sys.stderr.isatty() else None, live=True)

    def done(cells: int) -> None:
        nonlocal finished
        finished += cells
        progress(f"matrix: {finished} of {total} cells done")

    progress(f"matrix: 0 of {total} cells done")
    try:
        doc = matrix.run(tasks, args.jobs, scheduler, done)
    finally:
        progress.done()
    matrix_render.table(doc, Console(width=None if sys.stdout.isatty() else 160))
    if args.json is not None:
        output.write_atomic(Path(args.json), json.dumps(doc, indent=1) + "\n")
    if args.html is not None:
        command = shlex.join(["flushproof", *args.words])
        output.write_atomic(Path(args.html), matrix_render.html(doc, command))
    verdict = matrix.exit_verdict(doc)
    return EXIT_HOLDS if verdict is None else VERDICT_EXIT[verdict]


def parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="on an internal error, print the traceback")
    p = _Parser(prog="flushproof", description=__doc__, parents=[common])
    sub = p.add_subparsers(dest="cmd", required=True, parser_class=_Parser)
    s = sub.add_parser("simulate", parents=[common],
                       help="run a trace file on the model with concrete values")
    s.add_argument("trace", help="trace file (format flushproof-trace/1); - reads standard input")
    s.add_argument("--policy", help="run under this policy instead of the trace's")
    s.add_argument("--config", help="run in this configuration instead of the trace's")
    s.add_argument("--json", action="store_true", help="print the run as JSON")
    s.add_argument("--quiet", action="store_true",
                   help="print the verdict only, not every step")
    s.set_defaults(func=_simulate)
    c = sub.add_parser("corpus", parents=[common],
                       help="run the regression corpus against its expectations")
    c.add_argument("dir", nargs="?", default="traces", help="directory of traces (traces/)")
    c.add_argument("--update", action="store_true",
                   help="record the verdicts of the shipped policies as the expectations "
                        "(DIR/expected.json, rewritten in its own order) and print what changed")
    c.add_argument("--update-loaded", action="store_true",
                   help="--update, and record the --policy-file policies' verdicts too")
    c.set_defaults(func=_corpus)
    r = sub.add_parser("replay", parents=[common],
                       help="replay a trace on the concrete shadow MMU and report the first "
                       "access the architecture forbids")
    r.add_argument("trace", help="trace file (format flushproof-trace/1); - reads standard input")
    r.add_argument("--policy", help="replay under this policy instead of the trace's")
    r.add_argument("--config", help="replay in this configuration instead of the trace's")
    r.add_argument("--json", action="store_true", help="print the outcome as JSON")
    r.set_defaults(func=_replay)
    v = sub.add_parser("prove", parents=[common],
                       help="prove or refute a policy's properties in a configuration")
    v.add_argument("--policy", help=f"one of {', '.join(POLICIES)}, or a loaded policy file's "
                   "(default: the --policy-file's)")
    v.add_argument("--config", required=True, help=f"one of {', '.join(CONFIGS)}")
    v.add_argument("--property", action="append", choices=PROPERTIES,
                   help="a property to check (repeatable; default: all four)")
    v.add_argument("--engine", default="auto", choices=engines.ENGINES)
    v.add_argument("--base", metavar="POLICY",
                   help="differential: only the violations the policy has at an event where "
                        "this base policy has none (and, reported too, the converse)")
    v.add_argument("--event", action="append", metavar="OP",
                   help="restrict the events to this kind (repeatable, e.g. --event mov_cr3 "
                        "--event invlpg; default: all the configuration's); a verdict then "
                        "covers only executions of these events")
    v.add_argument("--bound", type=_bound, default=prove.DEFAULT_BOUND, metavar="N",
                   help="events explored by bmc, or the largest k of kind: an integer >= 1 "
                        f"(default {prove.DEFAULT_BOUND})")
    v.add_argument("--timeout", type=_seconds, metavar="SECONDS",
                   help="wall-clock limit of the proof, a finite number > 0 (default: none)")
    v.add_argument("--checker", default=CHECKERS[0], choices=CHECKERS,
                   help="the solver that re-checks a certificate (default: %(default)s, the "
                        "fastest measured; never z3, the search's)")
    v.add_argument("--jobs", type=_jobs, metavar="N",
                   help="processes for the re-check's queries, an integer >= 1 (default: one "
                        "per core)")
    v.add_argument("--dump-smt", metavar="DIR",
                   help="write every query as an SMT-LIB 2 file (created if missing)")
    v.add_argument("--certificates", metavar="DIR", default=str(store.DEFAULT_DIR),
                   help="the certificate store: a stored certificate of the cell is re-checked "
                        "instead of searching (default: %(default)s)")
    v.add_argument("--save-certificate", action="store_true",
                   help="write (refresh) houdini's certificate to the store when proved")
    v.add_argument("--no-cache", action="store_true",
                   help="read no stored certificate and no cached relation: build and search "
                        "anew")
    v.add_argument("--cex", metavar="FILE", help="where to write a counterexample trace")
    v.add_argument("--json", action="store_true", help="print the result as JSON")
    v.set_defaults(func=_prove)
    u = sub.add_parser("suite", parents=[common],
                       help="run the proof obligations of a proof script")
    u.add_argument("file", nargs="?", default=DEFAULT_SCRIPT, help=DEFAULT_SCRIPT)
    u.add_argument("-k", metavar="TEXT",
                   help="only the obligations whose name contains TEXT (ignoring case)")
    u.set_defaults(func=_suite)
    m = sub.add_parser("matrix", parents=[common],
                       help="decide every (policy, configuration, property) cell, on local "
                            "processes or a Dask cluster (docs/matrix.md)")
    m.add_argument("--policy", action="append", metavar="POLICY",
                   help="a policy (repeatable; default: every shipped one, or only the "
                        "--policy-file ones if any)")
    m.add_argument("--config", action="append", choices=list(CONFIGS),
                   help="a configuration (repeatable; default: all five)")
    m.add_argument("--property", action="append", choices=PROPERTIES,
                   help="a property (repeatable; default: all four)")
    m.add_argument("--engine", default="auto", choices=engines.ENGINES)
    m.add_argument("--bound", type=_bound, default=prove.DEFAULT_BOUND, metavar="N",
                   help=f"as prove's (default {prove.DEFAULT_BOUND})")
    m.add_argument("--timeout", type=_seconds, metavar="SECONDS",
                   help="wall-clock limit of each cell's proof, and of each shared relation's "
                        "symbolic execution (default: none)")
    m.add_argument("--jobs", type=_jobs, metavar="N",
                   help="local worker processes, an integer >= 1 (default: one per core)")
    m.add_argument("--scheduler", metavar="ADDRESS",
                   help="run the cells on the Dask cluster whose scheduler is at ADDRESS "
                        "(tcp://HOST:PORT) instead of local processes")
    m.add_argument("--certificates", metavar="DIR", default=str(store.DEFAULT_DIR),
                   help="the certificate store: a cell's stored certificate is re-checked "
                        "instead of searching (default: %(default)s)")
    m.add_argument("--no-cache", action="store_true",
                   help="read no stored certificate and no cached relation")
    m.add_argument("--json", metavar="OUT", help="write the matrix as JSON to OUT")
    m.add_argument("--html", metavar="OUT",
                   help="write the matrix as a self-contained HTML page to OUT")
    m.set_defaults(func=_matrix)
    k = sub.add_parser("check", parents=[common],
                       help="run proof scripts and the regression corpus, with a summary "
                            "table, --json and --junit-xml")
    k.add_argument("scripts", nargs="*", metavar="SCRIPT",
                   help=f"proof scripts (default: {DEFAULT_SCRIPT})")
    where = k.add_mutually_exclusive_group()
    where.add_argument("--corpus", metavar="DIR",
                       help="the corpus (default: traces/ beside the first script's folder)")
    where.add_argument("--no-corpus", action="store_true", help="run the proof scripts only")
    k.add_argument("-k", metavar="TEXT",
                   help="only the obligations and corpus traces (named corpus/STEM) whose "
                        "name contains TEXT (ignoring case)")
    k.add_argument("--json", metavar="OUT",
                   help="write the results as JSON to OUT (- for standard output, instead of "
                        "the table)")
    k.add_argument("--junit-xml", metavar="PATH",
                   help="write a JUnit XML report: one testcase per obligation and trace")
    k.set_defaults(func=_check)
    for cmd in (u, k):
        cmd.add_argument("--certificates", metavar="DIR",
                         help="the certificate store (default: certificates/ beside each "
                              "script)")
        cmd.add_argument("--save-certificates", action="store_true",
                         help="write (refresh) the certificate of every obligation houdini "
                              "proves")
        cmd.add_argument("--no-cache", action="store_true",
                         help="read no stored certificate and no cached relation: build and "
                              "search every proof anew")
    d = sub.add_parser("diff", parents=[common],
                       help="what a patch changes: verdicts both ways, and the work done")
    d.add_argument("old", help="the base policy (a shipped one, or a loaded file's)")
    d.add_argument("new", help="the patched policy")
    d.add_argument("--config", action="append",
                   help=f"one of {', '.join(CONFIGS)} (repeatable; default: all)")
    d.add_argument("--property", action="append", choices=PROPERTIES,
                   help="a property to check (repeatable; default: all four)")
    d.add_argument("--engine", default="auto", choices=engines.ENGINES)
    d.add_argument("--event", action="append", metavar="OP",
                   help="restrict the proofs' events to this kind, as for prove (repeatable)")
    d.add_argument("--bound", type=_bound, default=prove.DEFAULT_BOUND, metavar="N",
                   help=f"as for prove (default {prove.DEFAULT_BOUND})")
    d.add_argument("--timeout", type=_seconds, metavar="SECONDS",
                   help="wall-clock limit of each proof (default: none)")
    d.add_argument("--no-proofs", action="store_true",
                   help="only the work difference (fast: no solver runs)")
    d.add_argument("--sequences", type=_count, default=100, metavar="N",
                   help="random event sequences per configuration (default: %(default)s)")
    d.add_argument("--seed", type=int, default=0, help="their seed (default: %(default)s)")
    d.add_argument("--corpus", metavar="DIR",
                   help="the corpus traces (default: traces/ if the working directory has one, "
                        "else none)")
    d.add_argument("--json", action="store_true", help="print the result as JSON")
    d.set_defaults(func=_diff)
    for cmd in (s, c, r, v, u, k, m, d):
        cmd.add_argument("--policy-file", action="append", default=[], metavar="PATH[:CLASS]",
                         help="load a policy from a Python file (a subclass of a shipped "
                              "policy; repeatable). It is code: loading it runs it")
    return p


def _run(argv: list[str] | None) -> int:
    args = parser().parse_args(argv)
    args.words = sys.argv[1:] if argv is None else argv
    # The one place errors become exit statuses: bad input (formal.errors) is 3, a model that
    # contradicts itself is inconclusive; anything else is a bug (main).
    try:
        args.loaded = [policies.load_file(spec) for spec in args.policy_file]
        return args.func(args)
    except InputError as exc:
        print(f"flushproof: {_one_line(str(exc))}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ModelError as exc:
        print(f"flushproof: model error: {_one_line(str(exc))}", file=sys.stderr)
        return EXIT_UNKNOWN
    except Exception as exc:
        # A loaded policy's own code failing is bad input, named by file and line.
        where = policies.blame(exc)
        if where is None:
            raise
        print(f"flushproof: {where}", file=sys.stderr)
        return EXIT_BAD_INPUT


def main(argv: list[str] | None = None) -> int:
    """Run the command; return its exit status (argparse raises SystemExit on a usage error,
    with status 3, and on --help)."""
    words = sys.argv[1:] if argv is None else argv
    try:
        return _run(argv)
    except KeyboardInterrupt:
        print("flushproof: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # the reader left (`| head`): no verdict was delivered, not a bug
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing left to flush
        print("flushproof: standard output was closed before the verdict", file=sys.stderr)
        return EXIT_UNKNOWN
    except Exception as exc:  # a bug in flushproof, never reported as a verdict or bad input
        if "--debug" in words:
            traceback.print_exc()
            print("flushproof: internal error (a bug in flushproof): the traceback is above",
                  file=sys.stderr)
            return EXIT_INTERNAL
        where = _save_report(words)
        print(f"flushproof: internal error (a bug in flushproof): {type(exc).__name__}: "
              f"{_one_line(str(exc), 120)}; {where}", file=sys.stderr)
        return EXIT_INTERNAL


def _one_line(text: str, limit: int = 2000) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."


def _save_report(words: list[str]) -> str:
    """The traceback being handled, saved in the system's temporary directory; says where."""
    try:
        with tempfile.NamedTemporaryFile("w", prefix="flushproof-crash-", suffix=".txt",
                                         delete=False) as f:
            f.write(f"flushproof internal error\nargv: {words!r}\n"
                    f"python: {platform.python_version()} ({platform.platform()})\n\n")
            f.write(traceback.format_exc())
        return f"full report in {f.name} (or rerun with --debug)"
    except OSError as exc:
        return f"no report saved ({exc.strerror or exc}): rerun with --debug for the traceback"


def entry() -> None:
    sys.exit(main())
