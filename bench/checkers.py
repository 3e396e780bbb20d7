"""The certificate re-check, old against new, and the candidate re-checkers on the same
queries.  Not run by CI; figures go to docs/performance.md.

    python bench/checkers.py recheck --policy v6.6 --config shadow [--repeat 3] [--jobs N]
    python bench/checkers.py queries DIR [--solver yices --solver bitwuzla ...] [--repeat 3]

`recheck` builds the relation (all events; the safety queries of --property, default
metadata, as in issue 15's figures), computes houdini's invariant with z3 once, then
re-checks it (formal.engines.search.recheck_invariant: initiation, consecution per path,
safety per event kind) three ways, alternating, in the same process: the old way (cvc5
through pySMT, one query after another in this process, as before issue 15), yices in this
process, and the new default (yices on --jobs forked workers, default one per core).  Prints
each run and the medians, with the core count and the load average.

`queries` gives every recheck-*.smt2 file of DIR (written by `flushproof prove --dump-smt
DIR`) to each solver through formal.solvers.answer, one after another, and prints each
solver's total (median of --repeat) and whether the answers agree."""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from pysmt.shortcuts import And

from formal import solvers
from formal.engines import search as engines
from formal.engines.checker import Checker
from formal.engines.unroll import Unroller
from formal.model.properties import PROPERTIES
from formal.model.state import CONFIGS
from formal.symbolic.transition import build
from specs import POLICIES


def _load() -> str:
    return f"load {os.getloadavg()[0]:.1f}"


def recheck(a: argparse.Namespace) -> None:
    props = tuple(a.property or ["metadata"])
    rel = build(POLICIES[a.policy], CONFIGS[a.config], props=props)
    lemmas = engines.inductive_lemmas(rel, Checker())
    inv = And(lemmas).substitute(Unroller(rel).substitution(1, None))
    jobs = a.jobs or os.cpu_count() or 1
    print(f"{a.policy} {a.config}: invariant of {len(lemmas)} lemmas; nproc {os.cpu_count()}, "
          f"{_load()}", flush=True)
    ways = {"old: cvc5, 1 process": ("cvc5", 1), "yices, 1 process": ("yices", 1),
            f"new: yices, {jobs} processes": ("yices", jobs)}
    took: dict[str, list[float]] = {w: [] for w in ways}
    for run in range(a.repeat):
        for way, (checker, n) in ways.items():
            rel.rechecked.clear()  # else initiation and consecution are not asked again
            t0 = time.perf_counter()
            r = engines.recheck_invariant(rel, props, inv,
                                          Checker(checker=checker, jobs=n), {}, "houdini")
            took[way].append(time.perf_counter() - t0)
            print(f"  run {run + 1} {way:24} {took[way][-1]:7.1f} s  {r.label} "
                  f"({r.checked} queries) {r.reason} {_load()}", flush=True)
    for way, ts in took.items():
        print(f"{way:26} median {statistics.median(ts):7.1f} s  "
              f"(runs {', '.join(f'{t:.1f}' for t in ts)})")
    print(f"after: {_load()}")


def queries(a: argparse.Namespace) -> None:
    files = sorted(Path(a.dir).glob("*recheck-*.smt2"))
    texts = [f.read_text() for f in files]
    print(f"{a.dir}: {len(files)} queries; nproc {os.cpu_count()}, {_load()}", flush=True)
    answers: dict[str, list[str]] = {}
    for name in a.solver or ["yices", "bitwuzla", "z3", "cvc5"]:
        took = []
        for _ in range(a.repeat):
            t0 = time.perf_counter()
            got, each = [], []
            for t in texts:
                t1 = time.perf_counter()
                got.append(str(solvers.answer(name, t, a.timeout)))
                each.append(time.perf_counter() - t1)
            answers[name] = got
            took.append(time.perf_counter() - t0)
        print(f"{name:10} median {statistics.median(took):7.1f} s  (runs "
              f"{', '.join(f'{t:.1f}' for t in took)})  answers {sorted(set(answers[name]))} "
              f"{_load()}", flush=True)
        # the last run's per-query spread, which the re-check's first slice is chosen by
        slow = sorted(zip(each, (f.name for f in files), strict=True), reverse=True)
        print(f"{'':10} per query: median {statistics.median(each):.3f} s, "
              + ", ".join(f"{sum(e > c for e in each)} over {c:g} s" for c in (0.5, 1, 2, 5))
              + "; slowest " + ", ".join(f"{n} {e:.2f} s" for e, n in slow[:3]), flush=True)
    first = next(iter(answers.values()))
    print("answers agree" if all(v == first for v in answers.values()) else "ANSWERS DIFFER")


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("recheck")
    r.add_argument("--policy", required=True)
    r.add_argument("--config", required=True)
    r.add_argument("--property", action="append", choices=PROPERTIES,
                   help="the properties of the safety queries (default: metadata)")
    r.add_argument("--repeat", type=int, default=3)
    r.add_argument("--jobs", type=int)
    r.set_defaults(func=recheck)
    q = sub.add_parser("queries")
    q.add_argument("dir")
    q.add_argument("--solver", action="append", choices=solvers.BACKENDS)
    q.add_argument("--repeat", type=int, default=3)
    q.add_argument("--timeout", type=float, default=600)
    q.set_defaults(func=queries)
    a = ap.parse_args()
    a.func(a)


if __name__ == "__main__":
    main()
