"""The pytest plugin (formal.cli.pytest_plugin), run with pytester: one item per obligation and
per corpus trace, -k selects, --junitxml reports, a failure shows the rendered proof."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# v5.12's guest TLB flush without a shadow sync (F2): 2 events, on the two events it needs.
F2 = {"policy": "v5.12", "config": "shadow", "properties": ["freshness"], "engine": "bmc",
      "bound": 2, "events": ["guest_pte_write", "pv_tlb_flush"]}


def project(pytester, expect: str, corpus_verdict: str) -> Path:
    """A proof script with one obligation and a corpus of one trace beside it."""
    proofs = pytester.mkdir("proofs")
    script = proofs / "suite.json"
    script.write_text(json.dumps({"format": "flushproof-proofs/1", "obligations": [
        dict(F2, name="f2/v5.12", expect=expect, length=2)]}))
    traces = pytester.mkdir("traces")
    shutil.copy(ROOT / "traces" / "pv-tlb-flush.json", traces)
    want = json.loads((ROOT / "traces" / "expected.json").read_text())["pv-tlb-flush.json"]
    (traces / "expected.json").write_text(json.dumps(
        {"pv-tlb-flush.json": want | {"v6.6": corpus_verdict}}))
    return script


def test_obligations_and_traces_are_items_that_pass(pytester):
    script = project(pytester, "refuted", "holds")
    result = pytester.runpytest("--flushproof", str(script), "-v",
                                "--junitxml", str(pytester.path / "out.xml"))
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*f2/v5.12 PASSED*", "*corpus/pv-tlb-flush PASSED*"])
    xml = (pytester.path / "out.xml").read_text()
    assert xml.count("<testcase ") == 2 and 'name="f2/v5.12"' in xml


def test_a_failing_obligation_shows_the_counterexample(pytester):
    script = project(pytester, "proved", "freshness@1")
    result = pytester.runpytest("--flushproof", str(script))
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines([
        "*expected proved, got refuted*",
        "*verdict: REFUTED by explicit+bmc: freshness violated at event 1, 2 events*",
        "*concrete replay: confirmed: event 1, L1 user read of VA 0x400000*",
        "*v6.6: expected freshness@1, got holds*",
    ])


def test_k_selects_items(pytester):
    script = project(pytester, "refuted", "holds")
    result = pytester.runpytest("--flushproof", str(script), "-k", "corpus")
    result.assert_outcomes(passed=1, deselected=1)
