"""A proved cell three ways, alternating within each round, in one process: cold (symbolic
execution, vacuity, houdini, the re-check: what `prove --no-cache` does), from the stored
certificate (the relation built, houdini skipped), and from the stored certificate with the
cached relation (what a re-run on unchanged sources does).  Not run by CI.

    python bench/certificates.py --policy v6.6 --config shadow \\
        --property role --property pgd --property metadata [--repeat 3]

Prints the median wall time of each way over --repeat rounds, with its phases, the core count
and the load average before and after."""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from formal.cli import prove
from formal.engines.search import Verdict
from formal.model.properties import PROPERTIES


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--policy", required=True)
    ap.add_argument("--config", required=True)
    ap.add_argument("--property", action="append")
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    ob = prove.Obligation(a.policy, a.config, tuple(a.property or PROPERTIES), "houdini")
    work = Path(tempfile.mkdtemp(prefix="flushproof-bench-"))
    certs, cache = work / "certificates", work / "cache"
    ways = {
        "cold": lambda: prove.run(ob, certificates=certs, use_stored=False, save=True),
        "stored certificate": lambda: prove.run(ob, certificates=certs),
        "stored certificate, cached relation": lambda: prove.run(ob, certificates=certs,
                                                                 relations=cache),
    }
    prove.run(ob, certificates=certs, use_stored=False, save=True, relations=cache)  # fill both
    print(f"{a.policy} {a.config} {','.join(ob.props)}: {os.cpu_count()} cores, load "
          f"{os.getloadavg()[0]:.1f} before")
    times: dict[str, list[float]] = {w: [] for w in ways}
    phases: dict[str, dict[str, float]] = {}
    for _ in range(a.repeat):
        for way, run in ways.items():
            t0 = time.perf_counter()
            proof = run()
            times[way].append(time.perf_counter() - t0)
            assert proof.result.verdict == Verdict.PROVED, proof.result.reason
            phases[way] = proof.times
    for way in ways:
        detail = ", ".join(f"{k} {v:.1f}" for k, v in phases[way].items())
        print(f"  {way:38} median {statistics.median(times[way]):6.1f} s  "
              f"(runs {', '.join(f'{t:.1f}' for t in times[way])}; last: {detail})")
    print(f"  load {os.getloadavg()[0]:.1f} after")


if __name__ == "__main__":
    main()
