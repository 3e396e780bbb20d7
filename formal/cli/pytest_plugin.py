"""A pytest plugin (entry point `pytest11`): `pytest --flushproof proofs/suite.json` collects one
item per proof obligation and one per corpus trace, so -k, -x, --junitxml and pytest-xdist work
as for any test.  A failing obligation shows the rendered proof (the counterexample as a trace
run); a failing trace the cells that differ from their expectations.

--flushproof-corpus DIR names the corpus (default: `traces/` beside the proof script's folder,
if there is one); --flushproof-policy-file PATH[:CLASS] loads a policy file first.  An
obligation re-checks the stored certificate of its cell (`certificates/` beside its script,
docs/proving.md) and loads cached relations; --flushproof-no-cache searches and builds anew.
"""

from __future__ import annotations

from pathlib import Path

import pytest

# The flushproof modules (and the solvers behind them) are imported only when a session asks for
# flushproof items: the plugin is loaded by every pytest session of an environment that has it.


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("flushproof")
    group.addoption("--flushproof", action="append", default=[], metavar="SCRIPT",
                    help="collect the obligations of this proof script (repeatable)")
    group.addoption("--flushproof-corpus", metavar="DIR",
                    help="collect the traces of this corpus (default: traces/ beside the "
                         "script's folder)")
    group.addoption("--flushproof-no-cache", action="store_true",
                    help="read no stored certificate and no cached relation")
    group.addoption("--flushproof-policy-file", action="append", default=[],
                    metavar="PATH[:CLASS]", help="load a policy file (it is code: loading it "
                                                 "runs it)")


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config,
                                  items: list[pytest.Item]) -> None:
    scripts = [Path(s) for s in config.getoption("flushproof")]
    if not scripts:
        return
    from formal.cli import policies, suite

    for spec in config.getoption("flushproof_policy_file"):
        policies.load_file(spec)
    for script in scripts:
        for entry in suite.load(script):
            items.append(ObligationItem.from_parent(
                session, name=entry.name, entry=entry,
                certificates=script.parent / "certificates"))
    traces = config.getoption("flushproof_corpus")
    folder = Path(traces) if traces else scripts[0].resolve().parent.parent / "traces"
    if (folder / "expected.json").is_file():
        for path in sorted(folder.glob("*.json")):
            if path.name != "expected.json":
                items.append(TraceItem.from_parent(session, name=f"corpus/{path.stem}",
                                                   folder=folder, trace=path.name))


class Mismatch(Exception):
    """What an item shows when it fails."""


class ObligationItem(pytest.Item):
    def __init__(self, *, entry, certificates: Path, **kwargs) -> None:
        super().__init__(**kwargs)
        self.entry = entry  # formal.cli.suite.Entry
        self.certificates = certificates

    def runtest(self) -> None:
        from formal.cli import prove, render, store, suite

        cold = self.config.getoption("flushproof_no_cache")
        proof = prove.run(self.entry.obligation, certificates=self.certificates,
                          use_stored=not cold, relations=None if cold else store.cache_dir())
        label = suite.label(self.entry, proof)
        if label != self.entry.expect:
            raise Mismatch(f"expected {self.entry.expect}, got {label}\n\n"
                           + render.proof_text(proof, None))

    def repr_failure(self, excinfo, style=None) -> str:
        if isinstance(excinfo.value, Mismatch):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style)

    def reportinfo(self) -> tuple[str, int, str]:
        return "flushproof", 0, f"obligation {self.name}"


class TraceItem(pytest.Item):
    def __init__(self, *, folder: Path, trace: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.folder, self.trace = folder, trace

    def runtest(self) -> None:
        from formal.cli import corpus

        bad = [c for c in corpus.run(self.folder, only=self.trace) if not c.ok]
        if bad:
            raise Mismatch("\n".join(f"{c.policy}: expected {c.expected}, got {c.actual}"
                                     for c in bad))

    def repr_failure(self, excinfo, style=None) -> str:
        if isinstance(excinfo.value, Mismatch):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style)

    def reportinfo(self) -> tuple[str, int, str]:
        return "flushproof", 0, self.name
