"""A shortest counterexample two ways, in the same process: bmc alone (deepening from depth 0)
against the explicit-state search followed by bmc to one event less (formal.cli.prove's
first stage).  Not run by CI.

    python bench/refute.py --policy v5.17 --config shadow --property freshness --bound 4 \\
        [--repeat 3]

Prints, per way, the median of --repeat runs (the relation is built once) and the length."""

from __future__ import annotations

import argparse
import os
import statistics
import time

from formal.cli import prove
from formal.engines import search as engines
from formal.engines.checker import Checker
from formal.model.state import CONFIGS
from formal.symbolic.transition import build
from specs import POLICIES


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--policy", required=True)
    ap.add_argument("--config", required=True)
    ap.add_argument("--property", default="freshness")
    ap.add_argument("--bound", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    props = (a.property,)
    rel = build(POLICIES[a.policy], CONFIGS[a.config], props=props)
    ob = prove.Obligation(a.policy, a.config, props, "bmc", a.bound)
    ways = {
        "bmc": lambda: engines.bmc(rel, props, a.bound, Checker(), prefer=prove.preferences),
        "explicit+bmc": lambda: prove._explicit_first(rel, ob, Checker())[0],
    }
    print(f"{a.policy} {a.config} {a.property}: {os.cpu_count()} cores, load "
          f"{os.getloadavg()[0]:.1f}", flush=True)
    for name, way in ways.items():
        took, lengths = [], set()
        for _ in range(a.repeat):
            t0 = time.perf_counter()
            r = way()
            took.append(time.perf_counter() - t0)
            lengths.add((r.label, r.bound))
        print(f"{name:14} median {statistics.median(took):6.1f} s  runs "
              f"{', '.join(f'{t:.1f}' for t in took)}  {sorted(lengths)}  load "
              f"{os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
