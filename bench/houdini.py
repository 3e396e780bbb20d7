"""Houdini's fixpoint alone on one cell: the relation is built first (not timed), then
formal.engines.search.inductive_lemmas runs once.  Prints its time, the lemma count and a
hash of the sorted lemmas, so two checkouts' runs show whether they found the same set.
Not run by CI.

    PYTHONPATH=<checkout> python bench/houdini.py --policy v6.6 --config shadow
"""

from __future__ import annotations

import argparse
import hashlib
import time

from formal.cli import prove
from formal.engines.checker import Checker
from formal.engines.search import inductive_lemmas


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--policy", required=True)
    ap.add_argument("--config", required=True)
    a = ap.parse_args()
    ob = prove.Obligation(a.policy, a.config, ("role", "pgd", "freshness", "metadata"),
                          "houdini", 4)
    rel = prove.relation(ob)
    t0 = time.perf_counter()
    lemmas = inductive_lemmas(rel, Checker())
    took = time.perf_counter() - t0
    digest = hashlib.sha256("\n".join(sorted(x.serialize() for x in lemmas)).encode())
    print(f"{a.policy} {a.config}: houdini {took:.1f} s, {len(lemmas)} lemmas, "
          f"sha256 {digest.hexdigest()[:12]}")


if __name__ == "__main__":
    main()
