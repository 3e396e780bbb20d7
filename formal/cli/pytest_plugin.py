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
    from formal.cli import corpus, policies, suite

    for spec in config.getoption("flushproof_policy_file"):
        policies.load_file(spec)
    for script in scripts:
        for entry in suite.load(script):
            items.append(ObligationItem.from_parent(session, name=entry.name, entry=entry,
                                                    script=script))
    traces = config.getoption("flushproof_corpus")
    folder = Path(traces) if traces else corpus.default_dir(scripts)
    if (folder / corpus.EXPECTED).is_file():
        for path in sorted(folder.glob("*.json")):
            if path.name != corpus.EXPECTED:
                items.append(TraceItem.from_parent(session, name=corpus.item_name(path.name),
                                                   folder=folder, trace=path.name))


class Mismatch(Exception):
    """What an item shows when it fails."""


class ObligationItem(pytest.Item):
    def __init__(self, *, entry, script: Path, **kwargs) -> None:
        super().__init__(**kwargs)
        self.entry = entry  # formal.cli.suite.Entry
        self.script = script

    def runtest(self) -> None:
        from formal.cli import suite
        from formal.cli.status import Status

        cold = self.config.getoption("flushproof_no_cache")
        checked = suite.check_one(self.entry, self.script, suite.Caches.default(cold))
        if checked.status is not Status.PASSED:
            raise Mismatch(checked.report())

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
        from formal.cli.status import Status

        (checked,) = corpus.run(self.folder, only=self.trace)
        if checked.status is not Status.PASSED:
            raise Mismatch(checked.message())

    def repr_failure(self, excinfo, style=None) -> str:
        if isinstance(excinfo.value, Mismatch):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style)

    def reportinfo(self) -> tuple[str, int, str]:
        return "flushproof", 0, self.name
