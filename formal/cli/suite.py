"""Proof scripts (proofs/*.json): obligations with their expected verdicts, format
"flushproof-proofs/1".

    {"format": "flushproof-proofs/1",
     "obligations": [{"name": "lai/no-pcide-free/shadow", "policy": "509bfe3-no-pcide-free",
                      "config": "shadow", "properties": ["freshness"], "engine": "bmc",
                      "bound": 5, "expect": "refuted", "length": 4}]}

`expect` is a verdict label: "refuted", "proved", "bounded(N)" or "unknown"; `length`, for a
refutation, pins the number of events of the shortest counterexample; `events` (optional)
restricts the environment to these event kinds, as `prove --event` does; `base` (optional)
makes the obligation differential, as `prove --base` does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from formal.cli import prove, schemas
from formal.cli.prove import Obligation
from formal.engines.search import Verdict
from formal.errors import Malformed
from formal.model import jsondoc
from formal.model.properties import PROPERTIES

FORMAT = "flushproof-proofs/1"


class SuiteError(Malformed):
    """A malformed proof script; the message names the obligation and field."""


@dataclass(frozen=True)
class Entry:
    """A named obligation of a proof script with its expected verdict."""

    name: str
    obligation: Obligation
    expect: str
    length: int | None = None


@dataclass(frozen=True)
class Checked:
    """What running an entry gave: its verdict label (refuted@N when the length differs) and a
    line of detail."""

    label: str
    detail: str


def load(path: Path) -> list[Entry]:
    """The entries of a proof script, every one checked before any runs: the schema
    (formal/cli/schemas/proofs.schema.json: fields, types, `expect` a verdict label, `timeout`
    a positive number), then each obligation's policy, configuration and events."""
    try:
        doc = jsondoc.load(path)
        schemas.check(doc, "proofs", str(path))
    except Malformed as exc:
        raise SuiteError(str(exc)) from None
    return [_obligation(path, i, o) for i, o in enumerate(doc["obligations"])]


def _obligation(path: Path, i: int, o: dict) -> Entry:
    events = o.get("events")
    ob = Obligation(o["policy"], o["config"], tuple(o.get("properties", PROPERTIES)),
                    o["engine"], o.get("bound", prove.DEFAULT_BOUND), o.get("timeout"),
                    None if events is None else tuple(events), o.get("base"))
    try:
        ob.check()
    except Malformed as exc:
        raise SuiteError(f"{path}: obligation {i}: {exc}") from None
    return Entry(o["name"], ob, o["expect"], o.get("length"))


def label(entry: Entry, proof: prove.Proof) -> str:
    """The proof's verdict label, as the entry's `expect` spells it; a refutation of another
    length than the entry pins is refuted@N."""
    r = proof.result
    if r.verdict == Verdict.REFUTED and entry.length is not None and r.bound != entry.length:
        return f"refuted@{r.bound}"
    return r.label


def run_one(entry: Entry, certificates: Path | None = None, use_stored: bool = True,
            save: bool = False, relations: Path | None = None) -> Checked:
    """Run an entry's obligation, with the certificate store `certificates` (None: none;
    formal.cli.store) read unless not use_stored and written when save, and the relation
    cache `relations` (None: none)."""
    proof = prove.run(entry.obligation, certificates=certificates, use_stored=use_stored,
                      save=save, relations=relations)
    r = proof.result
    cex = proof.counterexample
    if r.verdict == Verdict.REFUTED and cex is not None and cex.violation is not None:
        index, prop, _ = cex.violation
        replay = cex.replay.status if cex.replay is not None else "not replayed"
        detail = f"{prop} at event {index} ({r.bound} events); replay {replay}"
    elif r.verdict == Verdict.PROVED:
        detail = ("stored certificate re-checked: " if proof.stored.startswith("re-checked")
                  else "") + r.certificate[:80]
    else:
        detail = r.reason
    total = sum(proof.times.values())
    return Checked(label(entry, proof), f"{detail} [{total:.0f}s]")
