"""One flushproof command run by two checkouts in turn, in the same session: this tree and an
older one (a git worktree), medians of --repeat runs.  Not run by CI.

    git worktree add /tmp/old <commit>
    python bench/sidebyside.py --old /tmp/old --repeat 3 -- \\
        prove --policy v6.6 --config shadow --no-cache

Each run is `python -c 'from formal.cli.main import entry; entry()' ARGS` with PYTHONPATH set
to the checkout, so each tree runs its own code; prints each run's wall time, exit status and
load average, then the medians.  Pass --no-cache in ARGS for cold runs (relation caches are
keyed by fingerprint, so the two trees never share an entry anyway).  Each run's working
directory is its tree, so relative defaults (proofs/certificates) are that tree's, and what
the command writes (a refutation's flushproof-cex-*.json, git-ignored) lands there."""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

NEW = Path(__file__).resolve().parent.parent


def once(tree: Path, args: list[str]) -> tuple[float, int]:
    env = dict(os.environ, PYTHONPATH=str(tree))
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", "from formal.cli.main import entry; entry()",
                           *args], cwd=tree, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - t0, done.returncode


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--old", type=Path, required=True, help="the older checkout")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("args", nargs=argparse.REMAINDER, help="-- then flushproof's arguments")
    a = ap.parse_args()
    args = a.args[1:] if a.args[:1] == ["--"] else a.args
    trees = {"old": a.old.resolve(), "new": NEW}
    took: dict[str, list[float]] = {name: [] for name in trees}
    print(f"flushproof {' '.join(args)}: {os.cpu_count()} cores", flush=True)
    for r in range(a.repeat):
        for name, tree in trees.items():
            seconds, status = once(tree, args)
            took[name].append(seconds)
            print(f"run {r + 1} {name}: {seconds:.1f} s, exit {status}, load "
                  f"{os.getloadavg()[0]:.1f}", flush=True)
    for name, runs in took.items():
        print(f"{name}: median {statistics.median(runs):.1f} s  runs "
              f"{', '.join(f'{t:.1f}' for t in runs)}")


if __name__ == "__main__":
    main()
