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

import json
from dataclasses import dataclass
from pathlib import Path

from formal.cli import prove
from formal.cli.prove import Obligation
from formal.engines.search import Verdict
from formal.errors import Malformed
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
    try:
        doc = json.loads(path.read_text())
    except OSError as exc:
        raise SuiteError(f"{path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise SuiteError(f"{path}: not JSON: {exc.msg} at line {exc.lineno}") from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise SuiteError(f"{path}: field 'format': expected {FORMAT!r}")
    obs = doc.get("obligations")
    if not isinstance(obs, list):
        raise SuiteError(f"{path}: field 'obligations': expected a list")
    return [_obligation(path, i, o) for i, o in enumerate(obs)]


def _obligation(path: Path, i: int, o: object) -> Entry:
    where = f"{path}: obligation {i}"
    if not isinstance(o, dict):
        raise SuiteError(f"{where}: expected an object")
    for f in ("name", "policy", "config", "engine", "expect"):
        if not isinstance(o.get(f), str):
            raise SuiteError(f"{where}: field '{f}': expected a string")
    props = o.get("properties", list(PROPERTIES))
    if not isinstance(props, list) or not all(isinstance(p, str) for p in props):
        raise SuiteError(f"{where}: field 'properties': expected a list of names")
    bound = o.get("bound", prove.DEFAULT_BOUND)
    if not isinstance(bound, int) or isinstance(bound, bool):
        raise SuiteError(f"{where}: field 'bound': expected an integer")
    length = o.get("length")
    if length is not None and (not isinstance(length, int) or isinstance(length, bool)):
        raise SuiteError(f"{where}: field 'length': expected an integer")
    timeout = o.get("timeout")
    if timeout is not None and not isinstance(timeout, (int, float)):
        raise SuiteError(f"{where}: field 'timeout': expected a number of seconds")
    events = o.get("events")
    if events is not None and (not isinstance(events, list)
                               or not all(isinstance(e, str) for e in events)):
        raise SuiteError(f"{where}: field 'events': expected a list of event names")
    base = o.get("base")
    if base is not None and not isinstance(base, str):
        raise SuiteError(f"{where}: field 'base': expected a policy name")
    ob = Obligation(o["policy"], o["config"], tuple(props), o["engine"], bound, timeout,
                    None if events is None else tuple(events), base)
    try:
        ob.check()
    except Malformed as exc:
        raise SuiteError(f"{where}: {exc}") from None
    return Entry(o["name"], ob, o["expect"], length)


def label(entry: Entry, proof: prove.Proof) -> str:
    """The proof's verdict label, as the entry's `expect` spells it; a refutation of another
    length than the entry pins is refuted@N."""
    r = proof.result
    if r.verdict == Verdict.REFUTED and entry.length is not None and r.bound != entry.length:
        return f"refuted@{r.bound}"
    return r.label


def run_one(entry: Entry) -> Checked:
    proof = prove.run(entry.obligation)
    r = proof.result
    cex = proof.counterexample
    if r.verdict == Verdict.REFUTED and cex is not None and cex.violation is not None:
        index, prop, _ = cex.violation
        replay = cex.replay.status if cex.replay is not None else "not replayed"
        detail = f"{prop} at event {index} ({r.bound} events); replay {replay}"
    elif r.verdict == Verdict.PROVED:
        detail = r.certificate[:80]
    else:
        detail = r.reason
    total = sum(proof.times.values())
    return Checked(label(entry, proof), f"{detail} [{total:.0f}s]")
