"""cvc5's consecution re-check of houdini's invariant: one query per path of each event kind
(formal.engines.search.recheck_invariant) against one query per event kind over the merged successor
(the baseline, how the re-check asked before), in the same process.  Not run by CI.

    python bench/recheck.py --policy v6.6 --config tdp [--kind mov_cr4 ...] [--repeat 3]
                            [--timeout S]

Prints, per event kind, the median wall time of each way over --repeat runs and their ratio.
A baseline query that exceeds --timeout (cvc5's per-query limit) is reported as such, and
counts as the limit in the median (so the ratio is a lower bound)."""

from __future__ import annotations

import argparse
import statistics
import time

from pysmt.shortcuts import And, Not

from formal.engines import search as engines
from formal.engines.unroll import Unroller
from formal.model.state import CONFIGS
from formal.solvers import Inconclusive
from formal.symbolic.transition import build
from specs import POLICIES


def _timed(ck: engines.Checker, name: str, query) -> tuple[float, str]:
    t0 = time.perf_counter()
    try:
        answer = "sat" if ck.sat(name, query) else "unsat"
    except Inconclusive:
        answer = "timeout"
    return time.perf_counter() - t0, answer


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--policy", required=True)
    ap.add_argument("--config", required=True)
    ap.add_argument("--kind", action="append", help="event kinds (default: all)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--timeout", type=float, default=1800)
    a = ap.parse_args()
    rel = build(POLICIES[a.policy], CONFIGS[a.config])
    lemmas = engines.inductive_lemmas(rel, engines.Checker())
    un = Unroller(rel)
    inv = And(lemmas).substitute(un.substitution(1, None))
    s0 = un.state(0)
    inv1 = inv.substitute({s0[n]: un.state(1)[n] for n in s0})

    def holds(values: list) -> object:
        return inv.substitute(dict(zip(s0.values(), values, strict=True)))

    print(f"{a.policy} {a.config}: invariant of {len(lemmas)} lemmas", flush=True)
    for k, er in enumerate(un.events):
        if not er.post or (a.kind and er.name not in a.kind):
            continue
        merged, split, answers = [], [], set()
        for _ in range(a.repeat):
            ck = engines.Checker("cvc5", a.timeout)
            took, answer = _timed(ck, "kind", And(inv, un.trans_event(1, k), Not(inv1)))
            merged.append(took)
            answers.add(answer)
            t0 = time.perf_counter()
            for i in range(len(er.branches())):
                query = engines.path_consecution(un, er, holds, i)
                _, answer = _timed(engines.Checker("cvc5", a.timeout), "path", query)
                answers.add(answer)
            split.append(time.perf_counter() - t0)
        mm, ms = statistics.median(merged), statistics.median(split)
        print(f"{er.name:16} paths {len(er.branches()):4}  per kind {mm:8.1f} s  "
              f"per path {ms:8.1f} s  ratio {mm / ms:6.2f}  answers {sorted(answers)}",
              flush=True)


if __name__ == "__main__":
    main()
