"""The regression corpus: every trace of a directory under every policy, against the verdicts
recorded in its expected.json ("holds", or "PROPERTY@EVENT" for the first violation)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from formal.cli import policies, schemas
from formal.errors import Malformed
from formal.model import jsondoc, trace
from formal.model.simulate import Run
from specs import POLICIES


@dataclass(frozen=True)
class Cell:
    trace: str
    policy: str
    expected: str | None  # None: a policy without expectations (a loaded policy file)
    actual: str

    @property
    def ok(self) -> bool:
        return self.expected is None or self.expected == self.actual


def verdict(out: Run) -> str:
    if out.violation is None:
        return "holds"
    idx, viol = out.violation
    return f"{viol.prop}@{idx}"


def run(directory: Path, only: str | None = None) -> list[Cell]:
    """Every (trace, policy) cell (of the trace file named only, if given), loaded policy files
    included (whose cells have no expectation); raises TraceError for a malformed file or
    expectation (formal/cli/schemas/expected.schema.json), before any trace runs."""
    exp_path = directory / "expected.json"
    try:
        expected = jsondoc.load(exp_path)
        schemas.check(expected, "expected", str(exp_path))
    except Malformed as exc:
        raise trace.TraceError(str(exc)) from None
    traces = []
    for path in sorted(directory.glob("*.json")):
        if path.name == "expected.json" or only is not None and path.name != only:
            continue
        want = expected.get(path.name)
        if not isinstance(want, dict) or set(want) != set(POLICIES):
            raise trace.TraceError(f"{exp_path}: '{path.name}' needs a verdict for every "
                                   f"policy ({', '.join(POLICIES)})")
        traces.append((path, policies.load(path), want))
    cells = []
    for path, t, want in traces:
        for policy in policies.known():
            out = policies.simulate(trace.override(t, policy, None))
            cells.append(Cell(path.name, policy, want.get(policy), verdict(out)))
    return cells
