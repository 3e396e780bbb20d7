"""Proof scripts (proofs/*.json): obligations with their expected verdicts, format
"flushproof-proofs/1".

    {"format": "flushproof-proofs/1",
     "obligations": [{"name": "lai/no-pcide-free/shadow", "policy": "509bfe3-no-pcide-free",
                      "config": "shadow", "properties": ["freshness"], "engine": "bmc",
                      "bound": 5, "expect": "refuted", "length": 4}]}

`expect` is a verdict label: "refuted", "proved", "bounded(N)" or "unknown"; `length`, for a
refutation, pins the number of events of the shortest counterexample.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from formal import prove
from formal.properties import PROPERTIES

FORMAT = "flushproof-proofs/1"


class SuiteError(Exception):
    """A malformed proof script; the message names the obligation and field."""


@dataclass(frozen=True)
class Obligation:
    name: str
    policy: str
    config: str
    props: tuple[str, ...]
    engine: str
    bound: int
    expect: str
    length: int | None = None
    timeout: float | None = None


@dataclass(frozen=True)
class Outcome:
    label: str
    detail: str


def load(path: Path) -> list[Obligation]:
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


def _obligation(path: Path, i: int, o: object) -> Obligation:
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
    try:
        prove.check_obligation(o["policy"], o["config"], tuple(props), o["engine"], bound)
    except prove.ObligationError as exc:
        raise SuiteError(f"{where}: {exc}") from None
    return Obligation(o["name"], o["policy"], o["config"], tuple(props), o["engine"], bound,
                      o["expect"], length, timeout)


def run_one(ob: Obligation) -> Outcome:
    proof = prove.run(ob.policy, ob.config, ob.props, ob.engine, ob.bound, ob.timeout)
    r = proof.result
    label = r.label
    if r.verdict == "refuted":
        if ob.length is not None and r.bound != ob.length:
            label = f"refuted@{r.bound}"
        detail = f"{r.violation[1]} at event {r.violation[0]} ({r.bound} events); " \
            f"replay {proof.replay.split(':')[0]}"
    elif r.verdict == "proved":
        detail = r.certificate[:80]
    else:
        detail = r.reason
    total = sum(proof.times.values())
    return Outcome(label, f"{detail} [{total:.0f}s]")
