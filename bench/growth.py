"""Growth curves (issue 17 item 4): bmc's time against its bound, and against the number of event
kinds, on one cell whose property holds (so every depth is searched to the end).  Not run by CI.

    python bench/growth.py --policy v6.6 --config tdp --property metadata --max-bound 6 \\
        --repeat 3 --svg docs/growth.svg

For each bound 1..--max-bound: bmc over every event kind, the relation built once.  For each
prefix of the configuration's event kinds (their order in formal.symbolic.transition
.event_kinds, from 2 kinds up): the relation over those kinds, built anew and timed apart, and
bmc at --kinds-bound.  For each number of cached prev roots in --prev-roots (KVM has 3,
kvm_host.h KVM_MMU_NUM_PREV_ROOTS): the relation with that many, and bmc at --kinds-bound.
Prints medians of --repeat runs with the core count and the load, and writes the three curves
as an SVG (matplotlib, `pip install -e '.[bench]'`).

The model and the specs read KVM's constant as a module global (the kernel's loops run to the
constant, and so do the specs'); the prev-roots curve rebinds it in every module that imports it
for the duration of one build and restores it after, so the shipped sources stay as the kernel
writes them."""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from formal.engines import search as engines
from formal.engines.checker import Checker
from formal.engines.system import Relation
from formal.model.state import CONFIGS
from formal.symbolic.transition import build, event_kinds
from specs import POLICIES

CURVES = ("bounds", "kinds", "prev-roots")


def median_of(repeat: int, run: Callable[[], object]) -> tuple[float, list[float], object]:
    took, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = run()
        took.append(time.perf_counter() - t0)
    return statistics.median(took), took, out


def dag_size(rel: Relation) -> int:
    """Distinct term nodes of every event's step: what bmc hands the solver per unrolled step."""
    seen: set[int] = set()
    stack = [t for e in rel.events for t in (e.steps, *e.post.values(), *e.violated.values())]
    while stack:
        node = stack.pop()
        if id(node) not in seen:
            seen.add(id(node))
            stack.extend(node.args())
    return len(seen)


@contextmanager
def prev_roots(n: int) -> Iterator[None]:
    """KVM_MMU_NUM_PREV_ROOTS = n in the model and the specs, for the duration."""
    mods = [m for name, m in list(sys.modules.items())
            if name.split(".")[0] in ("formal", "specs") and hasattr(m, "KVM_MMU_NUM_PREV_ROOTS")]
    old = {m: m.KVM_MMU_NUM_PREV_ROOTS for m in mods}
    for m in mods:
        m.KVM_MMU_NUM_PREV_ROOTS = n
    try:
        yield
    finally:
        for m, value in old.items():
            m.KVM_MMU_NUM_PREV_ROOTS = value


def built_and_searched(a: argparse.Namespace, props: tuple[str, ...],
                       make: Callable[[], Relation], label: str) -> float:
    """One point of the kinds or prev-roots curve: the relation make() builds, timed once,
    then bmc to --kinds-bound, --repeat times; prints both and returns bmc's median."""
    t0 = time.perf_counter()
    rel = make()
    built = time.perf_counter() - t0
    med, took, r = median_of(a.repeat, lambda: engines.bmc(rel, props, a.kinds_bound, Checker()))
    print(f"{label} ({len(rel.names)} state variables): build {built:5.1f} s, bmc bound "
          f"{a.kinds_bound} median {med:6.2f} s  runs {', '.join(f'{t:.2f}' for t in took)}"
          f"  {r.label}  load {os.getloadavg()[0]:.1f}", flush=True)
    print(f"    paths {sum(e.paths for e in rel.events)}, step terms {dag_size(rel)} DAG nodes; "
          "largest: " + ", ".join(f"{e.name} {e.paths}" for e in sorted(
              rel.events, key=lambda e: -e.paths)[:3]), flush=True)
    return med


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--policy", default="v6.6")
    ap.add_argument("--config", default="tdp")
    ap.add_argument("--property", default="metadata")
    ap.add_argument("--max-bound", type=int, default=6)
    ap.add_argument("--kinds-bound", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--prev-roots", type=int, nargs="*", default=[0, 1, 2, 3, 4, 5])
    ap.add_argument("--svg", default=None)
    ap.add_argument("--curves", nargs="*", choices=CURVES, default=list(CURVES),
                    help="which curves to measure (default: all; --svg needs all)")
    a = ap.parse_args()
    cls, cfg, props = POLICIES[a.policy], CONFIGS[a.config], (a.property,)
    print(f"{a.policy} {a.config} {a.property}: {os.cpu_count()} cores, load "
          f"{os.getloadavg()[0]:.1f}", flush=True)
    by_bound, by_kinds, by_roots = [], [], []
    if "bounds" in a.curves:
        rel = build(cls, cfg, props=props)
        for bound in range(1, a.max_bound + 1):
            med, took, r = median_of(a.repeat,
                                     lambda b=bound: engines.bmc(rel, props, b, Checker()))
            by_bound.append((bound, med))
            print(f"bound {bound}: median {med:7.2f} s  runs "
                  f"{', '.join(f'{t:.2f}' for t in took)}  {r.label}  load "
                  f"{os.getloadavg()[0]:.1f}", flush=True)
    if "kinds" in a.curves:
        kinds = event_kinds(cfg)
        for n in range(2, len(kinds) + 1, 2 if len(kinds) > 8 else 1):
            by_kinds.append((n, built_and_searched(
                a, props, lambda n=n: build(cls, cfg, kinds[:n], props),
                f"{n:2} kinds (to {kinds[n - 1].op})")))
    if "prev-roots" in a.curves:
        for n in a.prev_roots:
            def with_roots(n: int = n) -> Relation:
                with prev_roots(n):
                    return build(cls, cfg, props=props)
            by_roots.append((n, built_and_searched(a, props, with_roots, f"{n} prev roots")))
    if a.svg and len(a.curves) == len(CURVES):
        plot(a, by_bound, by_kinds, by_roots)


def plot(a: argparse.Namespace, by_bound: list[tuple[int, float]],
         by_kinds: list[tuple[int, float]], by_roots: list[tuple[int, float]]) -> None:
    import matplotlib
    matplotlib.use("svg")
    from matplotlib import pyplot as plt
    matplotlib.rcParams["svg.hashsalt"] = "flushproof"  # the same figures give the same file
    fig, (left, right, roots) = plt.subplots(1, 3, figsize=(13, 3.4))
    left.plot(*zip(*by_bound, strict=True), marker="o")
    left.set(xlabel="bmc bound (events)", ylabel="median seconds", yscale="log",
             title="time against the bound")
    right.plot(*zip(*by_kinds, strict=True), marker="o")
    right.set(xlabel="event kinds", ylabel="median seconds",
              title=f"bmc bound {a.kinds_bound} against event kinds")
    roots.plot(*zip(*by_roots, strict=True), marker="o")
    roots.set(xlabel="cached prev roots (KVM: 3)", ylabel="median seconds",
              title=f"bmc bound {a.kinds_bound} against prev roots")
    fig.suptitle(f"{a.policy} {a.config} {a.property}, {os.cpu_count()} cores, "
                 f"median of {a.repeat}")
    fig.tight_layout()
    fig.savefig(a.svg, metadata={"Date": None})
    print(f"wrote {a.svg}")


if __name__ == "__main__":
    main()
