"""`flushproof diff OLD NEW`: what a patch changes.  Per configuration and property, each
policy's verdict and the differential verdict both ways (prove.run with Obligation.base: the
violations NEW adds over OLD, and those it removes); then the work each does on the same events
(formal.cli.workdiff), on the corpus traces and on random sequences."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from rich import box
from rich.console import Console
from rich.table import Table

from formal.cli import prove, workdiff
from formal.cli.prove import Obligation, Proof
from formal.cli.workdiff import Tallies, Tally
from formal.engines.progress import Progress
from formal.engines.search import Verdict

FORMAT = "flushproof-diff/1"
# The four proofs of a cell, by JSON field.
SIDES = ("old", "new", "new_over_old", "old_over_new")


@dataclass
class Cell:
    """One configuration and property: OLD's and NEW's verdicts, the violations NEW adds over
    OLD (refuted: NEW violates where OLD does not), and those it removes (OLD over NEW)."""

    config: str
    prop: str
    proofs: dict[str, Proof]


def obligations(old: str, new: str, config: str, prop: str, engine: str, bound: int,
                timeout: float | None, events: tuple[str, ...] | None) -> dict[str, Obligation]:
    """The four obligations of a cell; the last is the differential's converse."""
    new_alone = Obligation(new, config, (prop,), engine, bound, timeout, events)
    differential = replace(new_alone, base=old)
    return {"old": replace(new_alone, policy=old), "new": new_alone,
            "new_over_old": differential, "old_over_new": differential.converse()}


def prove_cells(old: str, new: str, configs: tuple[str, ...], props: tuple[str, ...],
                engine: str, bound: int, timeout: float | None, events: tuple[str, ...] | None,
                progress: Progress) -> list[Cell]:
    """The cells of every configuration and property, each of its four proofs by prove.run
    (progress hears what each is doing)."""
    cells = []
    for config in configs:
        for prop in props:
            obs = obligations(old, new, config, prop, engine, bound, timeout, events)
            proofs: dict[str, Proof] = {}
            for side, ob in obs.items():
                progress(f"{config} {prop}: {side}")
                # A differential whose policy is proved alone needs no product (prove.alone),
                # and costs nothing more: that proof's time is counted on its own side.
                single = proofs.get(side.split("_over_")[0]) if ob.base else None
                if single is not None and single.result.verdict == Verdict.PROVED:
                    proofs[side] = replace(prove.alone(ob, single), times={})
                else:
                    proofs[side] = prove.run(ob, progress=progress)
            cells.append(Cell(config, prop, proofs))
    return cells


def label(proof: Proof) -> str:
    """The verdict, with a refutation's length."""
    r = proof.result
    if r.verdict == Verdict.REFUTED:
        return f"refuted ({r.bound} events)"
    return r.label


def exit_verdict(cells: list[Cell]) -> Verdict | None:
    """The verdict the command exits with: the worst of the violations NEW adds over OLD
    (refuted, then unknown, then bounded; proved only if every cell is), None without proofs."""
    if not cells:
        return None
    got = {c.proofs["new_over_old"].result.verdict for c in cells}
    for v in (Verdict.REFUTED, Verdict.UNKNOWN, Verdict.BOUNDED):
        if v in got:
            return v
    return Verdict.PROVED


# -- text --

def _work_cell(row: Tally, key: str) -> str:
    a, b = row.old[key], row.new[key]
    if a == b:
        return str(a) if a else ""
    return f"{a} -> {b} ({b - a:+d})"


def work_table(old: str, new: str, title: str, rows: list[Tally]) -> Table:
    keys = [k for k in workdiff.KEYS if any(r.old[k] or r.new[k] for r in rows)]
    t = Table(title=title, box=box.SIMPLE_HEAD, title_justify="left")
    for name in ("config", "event", "events"):
        t.add_column(name, justify="right" if name == "events" else "left")
    for k in keys:
        t.add_column(f"req {k.removeprefix(workdiff.REQUEST)}" if k.startswith(workdiff.REQUEST)
                     else k.replace("_", " "), justify="right")
    for r in rows:
        t.add_row(r.config, r.event, str(r.events), *(_work_cell(r, k) for k in keys),
                  style="bold" if r.event == "all" else None)
    return t


def print_text(console: Console, old: str, new: str, cells: list[Cell], tallies: Tallies,
               sequences: int, seed: int, corpus: Path | None) -> None:
    if cells:
        t = Table(title=f"verdicts: {old} (old) and {new} (new)", box=box.SIMPLE_HEAD,
                  title_justify="left")
        for name in ("config", "property", old, new, f"{new} adds (new over old)",
                     f"{new} removes (old over new)"):
            t.add_column(name)
        for c in cells:
            t.add_row(c.config, c.prop, *(label(c.proofs[s]) for s in SIDES))
        console.print(t)
    if corpus is None:
        console.print("work on the corpus traces: none (no traces/ here; name a corpus with "
                      "--corpus DIR)")
    for source, title in ((workdiff.CORPUS, "the corpus traces"),
                          (workdiff.RANDOM, f"{sequences} random sequences of "
                           f"{workdiff.LENGTH} events per configuration, seed {seed}")):
        totals = [r for r in tallies.totals() if r.source == source]
        if not totals:
            continue
        rows = []
        for tot in totals:
            rows += [r for r in tallies.rows.values()
                     if r.source == source and r.config == tot.config and r.differs]
            rows.append(tot)
        console.print(work_table(old, new, f"work on {title}: {old} -> {new} (event kinds "
                                 "where they differ, then every kind)", rows))


# -- JSON (formal/cli/schemas/diff-result.schema.json) --

def _proof_json(proof: Proof) -> dict[str, object]:
    r, cex = proof.result, proof.counterexample
    viol = None if cex is None else cex.violation
    return {"verdict": r.label, "engine": r.engine, "bound": r.bound, "reason": r.reason,
            "violation": None if viol is None else {
                "event": viol[0], "property": viol[1], "message": viol[2]},
            "events": None if cex is None else [e.describe() for e in cex.trace.events],
            "seconds": round(sum(proof.times.values()), 3)}


def _tally_json(r: Tally) -> dict[str, object]:
    return {"source": r.source, "config": r.config, "event": r.event, "events": r.events,
            "old": {k: r.old[k] for k in workdiff.KEYS},
            "new": {k: r.new[k] for k in workdiff.KEYS}}


def to_json(old: str, new: str, cells: list[Cell], tallies: Tallies, corpus: Path | None,
            sequences: int, seed: int) -> dict[str, object]:
    ob = cells[0].proofs["new"].obligation if cells else None
    return {
        "format": FORMAT, "old": old, "new": new,
        "proofs": None if ob is None else {
            "engine": ob.engine, "bound": ob.bound,
            "events": None if ob.events is None else list(ob.events),
            "cells": [{"config": c.config, "property": c.prop}
                      | {s: _proof_json(c.proofs[s]) for s in SIDES} for c in cells]},
        "work": {"corpus": None if corpus is None else str(corpus),
                 "sequences": sequences, "length": workdiff.LENGTH, "seed": seed,
                 "keys": list(workdiff.KEYS),
                 "rows": [_tally_json(r) for r in tallies.rows.values()],
                 "totals": [_tally_json(r) for r in tallies.totals()]},
    }
