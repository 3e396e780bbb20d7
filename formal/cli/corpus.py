"""The regression corpus: every trace of a directory under every policy, against the verdicts
recorded in its expected.json ("holds", or "PROPERTY@EVENT" for the first violation).

A policy without an expectation for a trace (a policy just added to specs/, or loaded from a
file) gives a cell that is *new*: reported, not failed, until `corpus --update` records it.
Expectations for a policy this run does not have (a policy file not loaded) are kept, unused.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from formal.cli import output, policies, schemas
from formal.cli.status import Status
from formal.errors import Malformed
from formal.model import jsondoc, trace
from formal.model.properties import ModelError
from formal.model.simulate import Run
from specs import POLICIES

EXPECTED = "expected.json"


@dataclass(frozen=True)
class Cell:
    trace: str
    policy: str
    expected: str | None  # None: no expectation yet (a new policy)
    actual: str

    @property
    def new(self) -> bool:
        return self.expected is None

    @property
    def ok(self) -> bool:
        return self.expected is None or self.expected == self.actual


@dataclass(frozen=True)
class Corpus:
    """A corpus directory, read and checked: its expectations and its traces (file name, trace),
    in file-name order."""

    directory: Path
    expected: dict[str, dict[str, str]]
    traces: tuple[tuple[str, trace.Trace], ...]

    @property
    def expected_path(self) -> Path:
        return self.directory / EXPECTED


@dataclass(frozen=True)
class TraceCheck:
    """One trace of the corpus under every policy: its cells, or the model error that stopped it
    (an inconclusive result, never a pass)."""

    file: str
    cells: tuple[Cell, ...]
    seconds: float
    error: str | None = None

    @property
    def name(self) -> str:
        return item_name(self.file)

    @property
    def status(self) -> Status:
        if self.error is not None:
            return Status.UNKNOWN
        return Status.PASSED if all(c.ok for c in self.cells) else Status.FAILED

    @property
    def expected(self) -> str:
        known = sum(not c.new for c in self.cells)
        return f"{known} verdicts" + (f", {len(self.cells) - known} new" if known < len(
            self.cells) else "")

    @property
    def actual(self) -> str:
        if self.error is not None:
            return "unknown"
        bad = [c for c in self.cells if not c.ok]
        if not bad:
            return "as expected"
        return "; ".join(f"{c.policy}: {c.actual}" for c in bad)

    @property
    def detail(self) -> str:
        if self.error is not None:
            return f"model error: {self.error}"
        new = [f"{c.policy}: {c.actual}" for c in self.cells if c.new]
        return f"new: {'; '.join(new)}" if new else ""

    def message(self) -> str:
        """Why the trace fails: each cell that differs, expected against actual."""
        if self.error is not None:
            return f"model error: {self.error}"
        return "\n".join(f"{c.policy}: expected {c.expected}, got {c.actual}"
                         for c in self.cells if not c.ok)

    def report(self) -> str:
        """What a failure shows: the message (a trace's cells need no rendering)."""
        return self.message()


def item_name(file: str) -> str:
    """A trace's name as an item of `check` and of the pytest plugin: corpus/STEM."""
    return f"corpus/{Path(file).stem}"


def default_dir(scripts: list[Path]) -> Path:
    """The corpus that goes with proof scripts: traces/ beside the first script's folder."""
    return scripts[0].resolve().parent.parent / "traces"


def verdict(out: Run) -> str:
    if out.violation is None:
        return "holds"
    idx, viol = out.violation
    return f"{viol.prop}@{idx}"


def load(directory: Path, only: str | None = None, missing_ok: bool = False) -> Corpus:
    """The corpus of directory (only the trace file named only, if given), every file read and
    checked before any trace runs: its expected.json against
    formal/cli/schemas/expected.schema.json, each trace against its own schema and policy.
    missing_ok: a directory without expected.json has no expectations yet.  Raises TraceError."""
    exp_path = directory / EXPECTED
    if missing_ok and not exp_path.exists():
        expected: dict = {}
    else:
        try:
            expected = jsondoc.load(exp_path)
            schemas.check(expected, "expected", str(exp_path))
        except Malformed as exc:
            raise trace.TraceError(str(exc)) from None
    files = [p for p in sorted(directory.glob("*.json"))
             if p.name != EXPECTED and (only is None or p.name == only)]
    return Corpus(directory, expected, tuple((p.name, policies.load(p)) for p in files))


def check_trace(corpus: Corpus, file: str, t: trace.Trace) -> TraceCheck:
    """The trace under every policy the run has (the shipped ones, then the loaded ones), each
    verdict against its expectation."""
    t0 = time.perf_counter()
    want = corpus.expected.get(file, {})
    cells = []
    try:
        for policy in policies.known():
            out = policies.simulate(trace.override(t, policy, None))
            cells.append(Cell(file, policy, want.get(policy), verdict(out)))
    except ModelError as exc:
        return TraceCheck(file, tuple(cells), time.perf_counter() - t0, str(exc))
    return TraceCheck(file, tuple(cells), time.perf_counter() - t0)


def run(directory: Path, only: str | None = None) -> list[TraceCheck]:
    """Every trace of directory (the file named only, if given) checked."""
    corpus = load(directory, only)
    return [check_trace(corpus, file, t) for file, t in corpus.traces]


@dataclass(frozen=True)
class Change:
    trace: str
    policy: str
    old: str | None
    new: str


def report_lines(checks: list[TraceCheck]) -> list[str]:
    """`corpus`'s report: a line per cell (ok, FAIL, or new: no expectation), a line per trace
    a model error stopped, then the totals."""
    lines = []
    for t in checks:
        for c in t.cells:
            mark = "new " if c.new else "ok  " if c.ok else "FAIL"
            extra = "" if c.ok else f" (expected {c.expected})"
            lines.append(f"{mark} {c.trace:32} {c.policy:24} {c.actual}{extra}")
        if t.error is not None:
            lines.append(f"UNKNOWN {t.file}: model error: {t.error}")
    cells = [c for t in checks for c in t.cells]
    bad, new = sum(not c.ok for c in cells), sum(c.new for c in cells)
    stopped = sum(t.error is not None for t in checks)
    lines.append(f"{len(cells) - bad - new} passed, {bad} failed, {new} new"
                 + (f", {stopped} traces stopped by a model error" if stopped else ""))
    return lines


def update(corpus: Corpus, checks: list[TraceCheck], loaded: bool) -> list[str]:
    """Record the verdicts of checks in the corpus's expected.json: the shipped policies', and
    the loaded policy files' too if loaded.  The file keeps a stable order (traces as they were,
    new ones after them; each trace's policies in the registry's order, then the loaded ones,
    then those this run does not have, as they were) and its other entries, and is rewritten
    whole (output.write_atomic), only if something changed.  A trace stopped by a model error
    records nothing.  Returns what it did, as lines: each change (trace, policy, old -> new),
    the file, and the loaded policies it left out."""
    doc = {file: dict(verdicts) for file, verdicts in corpus.expected.items()}
    changes = []
    for check in checks:
        if check.error is not None:
            continue
        row = doc.setdefault(check.file, {})
        for c in check.cells:
            if (c.policy in POLICIES or loaded) and row.get(c.policy) != c.actual:
                changes.append(Change(c.trace, c.policy, row.get(c.policy), c.actual))
                row[c.policy] = c.actual
    if changes:
        order = {name: i for i, name in enumerate(policies.known())}
        doc = {file: dict(sorted(row.items(), key=lambda kv: order.get(kv[0], len(order))))
               for file, row in doc.items()}
        output.write_atomic(corpus.expected_path, json.dumps(doc, indent=1) + "\n")
    lines = [f"{ch.trace:32} {ch.policy:24} {ch.old or '(none)'} -> {ch.new}" for ch in changes]
    lines.append(f"{corpus.expected_path}: {len(changes)} expectations changed" if changes
                 else f"{corpus.expected_path}: unchanged")
    left = sorted({c.policy for t in checks for c in t.cells if c.policy not in POLICIES})
    if left and not loaded:
        lines.append("not recorded (loaded from a file; --update-loaded records them): "
                     + ", ".join(left))
    return lines
