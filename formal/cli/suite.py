"""Proof scripts (proofs/*.json): obligations with their expected verdicts, format
"flushproof-proofs/1".

    {"format": "flushproof-proofs/1",
     "obligations": [{"name": "lai/no-pcide-free/shadow", "policy": "509bfe3-no-pcide-free",
                      "config": "shadow", "properties": ["freshness"], "engine": "bmc",
                      "bound": 5, "expect": "refuted", "length": 4}]}

`expect` is a verdict label: "refuted", "proved", "bounded(N)" or "unknown"; `length`, for a
refutation, pins the number of events of the shortest counterexample; `events` (optional)
restricts the environment to these event kinds, as `prove --event` does; `base` (optional)
makes the obligation differential, as `prove --base` does.  `suite` and `check` select
obligations by name with -k (a case-insensitive substring).  A script's `policy_files`
(optional) are loaded first, as `--policy-file` loads them, each PATH or PATH:CLASS relative to
the script's folder: its obligations can then name their policies.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from formal.cli import policies, prove, render, schemas, store
from formal.cli.prove import Obligation
from formal.cli.status import Status
from formal.engines.progress import Progress
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


def load(path: Path) -> list[Entry]:
    """The entries of a proof script, every one checked before any runs: the schema
    (formal/cli/schemas/proofs.schema.json: fields, types, `expect` a verdict label, `timeout`
    a positive number), then each obligation's policy, configuration and events."""
    try:
        doc = jsondoc.load(path)
        schemas.check(doc, "proofs", str(path))
    except Malformed as exc:
        raise SuiteError(str(exc)) from None
    for spec in doc.get("policy_files", []):
        policies.load_file(str(path.parent / spec))
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


@dataclass(frozen=True)
class Checked:
    """What running an entry gave: the proof, its verdict label as the entry's `expect` spells it
    (refuted@N when the length differs) and the seconds it took."""

    entry: Entry
    proof: prove.Proof
    label: str
    seconds: float

    @property
    def name(self) -> str:
        return self.entry.name

    @property
    def expected(self) -> str:
        return self.entry.expect

    @property
    def actual(self) -> str:
        return self.label

    @property
    def status(self) -> Status:
        if self.label == self.entry.expect:
            return Status.PASSED
        if self.proof.result.verdict == Verdict.UNKNOWN:
            return Status.UNKNOWN
        return Status.FAILED

    @property
    def detail(self) -> str:
        """One line: where the counterexample violates what, the certificate, or the reason."""
        r, cex = self.proof.result, self.proof.counterexample
        if r.verdict == Verdict.REFUTED and cex is not None and cex.violation is not None:
            index, prop, _ = cex.violation
            replay = cex.replay.status if cex.replay is not None else "not replayed"
            return f"{prop} at event {index} ({r.bound} events); replay {replay}"
        if r.verdict == Verdict.PROVED:
            stored = self.proof.stored.startswith("re-checked")
            return ("stored certificate re-checked: " if stored else "") + r.certificate[:80]
        return r.reason

    def message(self) -> str:
        """Why the entry fails: the expected against the actual verdict (and why it is
        unknown)."""
        why = f" ({self.proof.result.reason})" if self.status is Status.UNKNOWN else ""
        return f"expected {self.entry.expect}, got {self.label}{why}"

    def report(self) -> str:
        """The message, then the proof as `prove` prints it (a counterexample as a trace run)."""
        return f"{self.message()}\n\n{render.proof_text(self.proof, None)}"


@dataclass(frozen=True)
class Caches:
    """How `suite`, `check` and the pytest plugin use what a proof keeps between runs
    (formal.cli.store): the certificate store, read unless not use_stored and written when
    save, and the relation cache (None: none)."""

    certificates: Path | None = None  # None: certificates/ beside each proof script
    use_stored: bool = True
    save: bool = False
    relations: Path | None = None

    @classmethod
    def default(cls, cold: bool = False) -> Caches:
        """The stores beside the scripts, the user's relation cache; cold: neither read."""
        return cls(use_stored=not cold, relations=None if cold else store.cache_dir())


def check_one(entry: Entry, script: Path, caches: Caches,
              progress: Progress | None = None) -> Checked:
    """Prove the obligation of entry, from proof script `script`, with caches (progress hears
    what the proof is doing), and compare its verdict with the expected one."""
    t0 = time.perf_counter()
    proof = prove.run(entry.obligation, progress=progress,
                      certificates=caches.certificates or script.parent / store.DEFAULT_DIR.name,
                      use_stored=caches.use_stored, save=caches.save,
                      relations=caches.relations)
    return Checked(entry, proof, label(entry, proof), time.perf_counter() - t0)
