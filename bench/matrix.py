"""The verdict matrix of issue #3: every policy x configuration x property, with the engine that
decided each cell and its wall time.  Not run by CI (it takes tens of minutes on 2 cores).

    python bench/matrix.py [--bound N] [--timeout S] [--jobs J] [--policy P ...] [--out FILE]
                           [--houdini-first] [--houdini-timeout S]

Per (policy, configuration) the relation is built once; per property, bmc to the bound, then,
with --unbounded and if nothing was found, houdini and k-induction for an unbounded proof.
With --houdini-first, houdini first and bmc only where it proves nothing (a proof makes the
bounded search redundant; houdini's invariant is computed once per relation)."""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor

from formal.cli import prove
from formal.cli.prove import vacuity
from formal.engines import search as engines
from formal.model.properties import PROPERTIES
from formal.model.state import CONFIGS
from formal.solvers import Inconclusive
from formal.symbolic.transition import build
from specs import POLICIES


def cell(policy: str, config: str, bound: int, timeout: float, unbounded: bool,
         houdini_first: bool, houdini_timeout: float | None) -> list[dict]:
    t0 = time.perf_counter()
    rel = build(POLICIES[policy], CONFIGS[config])
    built = time.perf_counter() - t0
    # Without a budget: no verdict of the cell counts until its vacuity check has passed.
    # (rfc-2022-02 shadow's took more than 600 s at bound 3 on 2 cores loaded 4.)
    try:
        vac = vacuity(rel, PROPERTIES, bound, engines.Checker())
    except Inconclusive as exc:
        vac = [f"vacuity not decided: {exc}"]
    rows = []
    for prop in PROPERTIES:
        t1 = time.perf_counter()
        r = engines.houdini(rel, (prop,), engines.Checker(timeout=houdini_timeout)) \
            if houdini_first else engines.Result(engines.Verdict.UNKNOWN, "houdini")
        if r.verdict != "proved":
            r = engines.bmc(rel, (prop,), bound, engines.Checker(timeout=timeout),
                            prefer=prove.preferences)
        if r.verdict == "bounded" and unbounded:
            for attempt in (engines.houdini, lambda rl, ps, ck: engines.kind(
                    rl, ps, 1, ck, prefer=prove.preferences)):
                u = attempt(rel, (prop,), engines.Checker(timeout=timeout))
                if u.verdict in ("proved", "refuted"):
                    r = u
                    break
        # A refutation stands once the simulator confirms it and the concrete MMU replays it.
        cex = prove.counterexample(rel, r, (prop,)) if r.witness is not None else None
        rows.append({"policy": policy, "config": config, "property": prop,
                     "verdict": r.label, "engine": r.engine,
                     "length": r.bound if r.verdict == "refuted" else None,
                     "event": cex.violation[0] if cex and cex.violation else None,
                     "reason": r.reason, "seconds": round(time.perf_counter() - t1, 1),
                     "build_seconds": round(built, 1), "vacuity": vac})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bound", type=int, default=4)
    ap.add_argument("--timeout", type=float, default=600, help="seconds for each bmc")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--policy", action="append")
    ap.add_argument("--config", action="append")
    ap.add_argument("--out", default="bench/matrix.json")
    ap.add_argument("--unbounded", action="store_true",
                    help="after a bounded bmc, try houdini and k-induction")
    ap.add_argument("--houdini-first", action="store_true",
                    help="houdini first, bmc only where it proves nothing")
    ap.add_argument("--houdini-timeout", type=float, default=None,
                    help="seconds for houdini's search (default: none; on a nested cell it "
                         "takes 6-11 minutes on the 2-core machine, and a timeout makes each "
                         "property search again)")
    a = ap.parse_args()
    policies = a.policy or list(POLICIES)
    configs = a.config or list(CONFIGS)
    t0 = time.perf_counter()
    with ProcessPoolExecutor(a.jobs) as pool:
        futs = [pool.submit(cell, p, c, a.bound, a.timeout, a.unbounded, a.houdini_first,
                            a.houdini_timeout)
                for p in policies for c in configs]
        rows = [row for f in futs for row in f.result()]
    wall = time.perf_counter() - t0
    with open(a.out, "w") as out:
        json.dump({"bound": a.bound, "timeout": a.timeout, "houdini_timeout": a.houdini_timeout,
                   "jobs": a.jobs,
                   "wall_seconds": round(wall, 1), "cells": rows}, out, indent=1)
    print(f"wall time {wall:.0f}s for {len(rows)} cells")


if __name__ == "__main__":
    main()
