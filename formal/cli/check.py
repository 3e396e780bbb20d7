"""`flushproof check`: proof scripts and the regression corpus in one run, each obligation and
each corpus trace an item checked against its expectation (formal.cli.suite.check_one,
formal.cli.corpus.check_trace, as `suite`, `corpus` and the pytest plugin check them), then one
summary: a table, a JSON document (formal/cli/schemas/check-result.schema.json) and a JUnit XML
file (one testcase per item; a failure's message is the expected against the actual verdict,
its text the rendered counterexample)."""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from rich import box
from rich.console import Console
from rich.table import Table

from formal.cli import corpus, output, render, suite
from formal.cli.status import Status, matches, overall
from formal.engines.progress import Progress
from formal.errors import Malformed

FORMAT = "flushproof-check/1"


class CheckError(Malformed):
    """A check that would check nothing (-k selects no item)."""


@dataclass(frozen=True)
class Plan:
    """What a check runs, every input read and checked first: the selected entries of each
    proof script, and the selected traces of the corpus (None: no corpus)."""

    scripts: tuple[tuple[Path, tuple[suite.Entry, ...]], ...]
    corpus: corpus.Corpus | None

    @property
    def size(self) -> int:
        traces = 0 if self.corpus is None else len(self.corpus.traces)
        return sum(len(entries) for _, entries in self.scripts) + traces


def plan(scripts: list[Path], corpus_dir: Path | None, pattern: str | None) -> Plan:
    """Load the scripts and the corpus (raising Malformed for any malformed one before anything
    runs) and keep the items whose name contains pattern (-k)."""
    loaded = tuple((path, tuple(e for e in suite.load(path) if matches(e.name, pattern)))
                   for path in scripts)
    c = None
    if corpus_dir is not None:
        c = corpus.load(corpus_dir)
        kept = tuple((f, t) for f, t in c.traces if matches(corpus.item_name(f), pattern))
        c = corpus.Corpus(c.directory, c.expected, kept)
    p = Plan(loaded, c)
    if p.size == 0:
        raise CheckError(f"-k {pattern!r} selects no obligation and no corpus trace"
                         if pattern is not None else "nothing to check: no obligation and no "
                         "corpus trace")
    return p


class _Step(Progress):
    """Progress lines that name the item being checked, and its place in the run."""

    item = ""

    def __call__(self, text: str) -> None:
        super().__call__(f"{self.item}: {text}")


@dataclass
class Outcome:
    """The run's items, each with where it came from (a proof script, the corpus directory)."""

    obligations: list[tuple[Path, suite.Checked]] = field(default_factory=list)
    traces: list[tuple[Path, corpus.TraceCheck]] = field(default_factory=list)
    seconds: float = 0.0

    def items(self) -> list[tuple[Path, suite.Checked | corpus.TraceCheck]]:
        return [*self.obligations, *self.traces]

    @property
    def status(self) -> Status:
        return overall(item.status for _, item in self.items())

    def count(self, status: Status) -> int:
        return sum(item.status is status for _, item in self.items())

    @property
    def new(self) -> int:
        """Corpus cells without an expectation (a new policy's)."""
        return sum(c.new for _, t in self.traces for c in t.cells)


def run(p: Plan, caches: suite.Caches, stream: TextIO | None = None) -> Outcome:
    """Check every item of p in order, obligations first, proofs with caches; progress (the
    item, what its proof is doing) on stream, one line rewritten in place."""
    progress = _Step(stream, live=True)
    out = Outcome()
    t0 = time.perf_counter()
    done = 0
    try:
        for path, entries in p.scripts:
            for entry in entries:
                done += 1
                progress.item = f"[{done}/{p.size}] {entry.name}"
                out.obligations.append((path, suite.check_one(entry, path, caches, progress)))
        if p.corpus is not None:
            for file, t in p.corpus.traces:
                done += 1
                progress.item = f"[{done}/{p.size}] {corpus.item_name(file)}"
                progress("simulating under every policy")
                out.traces.append((p.corpus.directory, corpus.check_trace(p.corpus, file, t)))
    finally:
        progress.done()
    out.seconds = time.perf_counter() - t0
    return out


_MARK = {Status.PASSED: "ok", Status.FAILED: "FAIL", Status.UNKNOWN: "UNKNOWN"}


def summary_line(out: Outcome) -> str:
    line = (f"{out.count(Status.PASSED)} passed, {out.count(Status.FAILED)} failed, "
            f"{out.count(Status.UNKNOWN)} unknown in {out.seconds:.0f}s")
    if out.new:
        line += (f"; {out.new} corpus verdicts of policies without expectations (new: "
                 "`flushproof corpus --update` records them)")
    return line


def print_text(out: Outcome, console: Console) -> None:
    """Each item that did not pass, its report in full (the counterexample as a trace run),
    then the table of every item and the totals."""
    for _, item in out.items():
        if item.status is not Status.PASSED:
            console.print(f"{_MARK[item.status]} {item.name}", style="bold", markup=False,
                          highlight=False)
            console.print(item.report(), markup=False, highlight=False, soft_wrap=True)
    table = Table(box=box.SIMPLE_HEAD, show_edge=False)
    items = [item for _, item in out.items()]
    # Names and verdicts whole, at any width; the detail wrapped (a failure's is printed in
    # full above).
    for name, cells in (("", [_MARK[i.status] for i in items]), ("item", [i.name for i in items]),
                        ("expected", [i.expected for i in items]),
                        ("got", [i.actual for i in items])):
        table.add_column(name, no_wrap=True, min_width=max(map(len, cells), default=0))
    table.add_column("s", justify="right", no_wrap=True)
    table.add_column("detail", overflow="fold")
    for _, item in out.items():
        style = {Status.FAILED: "red", Status.UNKNOWN: "yellow"}.get(item.status)
        table.add_row(_MARK[item.status], item.name, item.expected, item.actual,
                      f"{item.seconds:.1f}", item.detail, style=style)
    console.print(table)
    console.print(summary_line(out), markup=False, highlight=False)


def to_json(out: Outcome) -> dict[str, object]:
    """The run as data (formal/cli/schemas/check-result.schema.json)."""
    return {
        "format": FORMAT,
        "status": str(out.status),
        "counts": {"passed": out.count(Status.PASSED), "failed": out.count(Status.FAILED),
                   "unknown": out.count(Status.UNKNOWN), "new": out.new},
        "seconds": round(out.seconds, 3),
        "obligations": [{
            "name": c.name, "script": str(path), "status": str(c.status),
            "expect": c.expected, "actual": c.actual, "detail": c.detail,
            "message": None if c.status is Status.PASSED else c.message(),
            "seconds": round(c.seconds, 3), "result": render.proof_json(c.proof, None),
        } for path, c in out.obligations],
        "traces": [{
            "name": t.name, "file": t.file, "corpus": str(path), "status": str(t.status),
            "error": t.error, "seconds": round(t.seconds, 3),
            "cells": [{"policy": c.policy, "expected": c.expected, "actual": c.actual,
                       "status": "new" if c.new else "passed" if c.ok else "failed"}
                      for c in t.cells],
        } for path, t in out.traces],
    }


def to_junit(out: Outcome) -> str:
    """The run as JUnit XML: a testsuite per proof script and one for the corpus, a testcase per
    item; another verdict than the expected one is a <failure> (message: expected against
    actual; text: the rendered proof, a counterexample as a trace run), an unknown an <error>."""
    root = ET.Element("testsuites", name="flushproof check")
    suites: dict[Path, ET.Element] = {}
    for path, item in out.items():
        ts = suites.get(path)
        if ts is None:
            ts = suites[path] = ET.SubElement(root, "testsuite", name=str(path))
        kind = "obligation" if isinstance(item, suite.Checked) else "corpus"
        tc = ET.SubElement(ts, "testcase", classname=f"flushproof.{kind}", name=item.name,
                           time=f"{item.seconds:.3f}")
        if item.status is not Status.PASSED:
            tag = "failure" if item.status is Status.FAILED else "error"
            bad = ET.SubElement(tc, tag, message=item.message().splitlines()[0],
                                type=f"flushproof.{item.status}")
            bad.text = item.report()
        elif item.detail:
            ET.SubElement(tc, "system-out").text = item.detail
    for ts in [root, *suites.values()]:
        cases = list(ts.iter("testcase"))
        ts.set("tests", str(len(cases)))
        ts.set("failures", str(sum(c.find("failure") is not None for c in cases)))
        ts.set("errors", str(sum(c.find("error") is not None for c in cases)))
        ts.set("time", f"{sum(float(c.get('time')) for c in cases):.3f}")
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def write(out: Outcome, json_path: Path | None, junit_path: Path | None) -> list[str]:
    """Write --json OUT and --junit-xml PATH, each whole or not at all (output.write_atomic);
    returns, for each file not written, its path and why."""
    problems = []
    for path, text in ((json_path, lambda: json.dumps(to_json(out), indent=1) + "\n"),
                       (junit_path, lambda: to_junit(out))):
        if path is not None:
            try:
                output.write_atomic(path, text())
            except OSError as exc:
                problems.append(f"{path}: {exc.strerror or exc}")
    return problems
