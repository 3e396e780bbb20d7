"""`flushproof check` (proof scripts and the corpus in one run: exit status, -k, --json against
its schema, --junit-xml) and `flushproof corpus --update`.  The obligations are v5.12's guest TLB
flush without a shadow sync (F2) on the two events it needs: under a second each."""

from __future__ import annotations

import json
import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from formal.cli import policies
from formal.cli.main import main
from formal.cli.schemas import schema
from specs import POLICIES
from tests.conftest import TRACES

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "v6_6_no_smap_reset.py"

F2 = {"policy": "v5.12", "config": "shadow", "properties": ["freshness"], "engine": "bmc",
      "events": ["guest_pte_write", "pv_tlb_flush"]}
REFUTED = dict(F2, name="f2/v5.12", bound=2, expect="refuted", length=2)
WITHIN_1 = dict(F2, name="f2/v5.12 within 1", bound=1, expect="bounded(1)")
# The relation cannot be built in a microsecond: unknown (a timeout), never a pass.
TIMEOUT = dict(F2, name="f2/timeout", bound=2, expect="refuted", timeout=1e-6)


@pytest.fixture(autouse=True)
def forget_loaded_policies(monkeypatch):
    """A policy file loaded in-process stays registered: each test starts without one."""
    monkeypatch.setattr(policies, "_LOADED", {})
    monkeypatch.setattr(policies, "_FILES", {})


def project(tmp_path: Path, obligations: list[dict], v66: str = "holds") -> Path:
    """proofs/suite.json with these obligations and traces/ beside it with one trace, whose
    expectation for v6.6 is v66 (holds is right)."""
    (tmp_path / "proofs").mkdir(parents=True)
    script = tmp_path / "proofs" / "suite.json"
    script.write_text(json.dumps({"format": "flushproof-proofs/1", "obligations": obligations}))
    traces = tmp_path / "traces"
    traces.mkdir()
    shutil.copy(TRACES / "pv-tlb-flush.json", traces)
    want = json.loads((TRACES / "expected.json").read_text())["pv-tlb-flush.json"]
    (traces / "expected.json").write_text(json.dumps({"pv-tlb-flush.json":
                                                      want | {"v6.6": v66}}))
    return script


def junit(path: Path) -> dict[str, ET.Element]:
    root = ET.parse(path).getroot()
    assert root.tag == "testsuites"
    return {tc.get("name"): tc for tc in root.iter("testcase")}


def test_check_runs_the_scripts_and_the_corpus_beside_them(tmp_path, capsys):
    script = project(tmp_path, [REFUTED, WITHIN_1])
    assert main(["check", str(script)]) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = [line.split()[:2] for line in lines if line.split()[:1] == ["ok"]]
    assert rows == [["ok", "f2/v5.12"], ["ok", "f2/v5.12"], ["ok", "corpus/pv-tlb-flush"]]
    assert lines[-1].startswith("3 passed, 0 failed, 0 unknown in ")


def test_a_wrong_expectation_exits_1_and_is_a_junit_failure_with_the_trace(tmp_path, capsys):
    script = project(tmp_path, [dict(REFUTED, expect="proved"), WITHIN_1], v66="freshness@1")
    xml = tmp_path / "out.xml"
    assert main(["check", str(script), "--junit-xml", str(xml)]) == 1
    out = capsys.readouterr().out
    assert "FAIL f2/v5.12\nexpected proved, got refuted\n" in out
    assert out.splitlines()[-1].startswith("1 passed, 2 failed, 0 unknown in ")
    cases = junit(xml)
    assert list(cases) == ["f2/v5.12", "f2/v5.12 within 1", "corpus/pv-tlb-flush"]
    failure = cases["f2/v5.12"].find("failure")
    assert failure.get("message") == "expected proved, got refuted"
    assert "VIOLATION freshness: root pgd=0x1000 reused" in failure.text  # the rendered trace
    assert "[1] pv_tlb_flush" in failure.text
    assert cases["f2/v5.12 within 1"].find("failure") is None
    assert cases["corpus/pv-tlb-flush"].find("failure").get("message") == \
        "v6.6: expected freshness@1, got holds"
    root = ET.parse(xml).getroot()
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("3", "2", "0")


def test_an_unknown_verdict_exits_4_unless_another_differs(tmp_path, capsys):
    script = project(tmp_path, [REFUTED, TIMEOUT])
    xml = tmp_path / "out.xml"
    assert main(["check", str(script), "--junit-xml", str(xml)]) == 4
    # The reason: a timeout in symbolic execution, or later if the relation was cached.
    assert re.search(r"^UNKNOWN f2/timeout\nexpected refuted, got unknown \(.*timeout\)$",
                     capsys.readouterr().out, re.M)
    error = junit(xml)["f2/timeout"].find("error")
    assert re.fullmatch(r"expected refuted, got unknown \(.*timeout\)", error.get("message"))
    assert main(["suite", str(script)]) == 4  # suite exits as check does
    script = project(tmp_path / "b", [TIMEOUT], v66="freshness@1")
    assert main(["check", str(script)]) == 1  # a definite wrong verdict says more


def test_k_selects_items_by_name(tmp_path, capsys):
    script = project(tmp_path, [REFUTED, WITHIN_1, TIMEOUT])
    assert main(["check", str(script), "-k", "WITHIN", "--json", "-"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [o["name"] for o in doc["obligations"]] == ["f2/v5.12 within 1"]
    assert doc["traces"] == []
    assert main(["check", str(script), "-k", "corpus/", "--json", "-"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["obligations"], [t["name"] for t in doc["traces"]]) == \
        ([], ["corpus/pv-tlb-flush"])
    assert main(["suite", str(script), "-k", "within"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "1 passed, 0 failed, 0 unknown"
    assert main(["check", str(script), "-k", "nothing"]) == 3
    assert capsys.readouterr().err == \
        "flushproof: -k 'nothing' selects no obligation and no corpus trace\n"


def test_json_is_valid_against_its_schema(tmp_path, capsys):
    script = project(tmp_path, [REFUTED, dict(WITHIN_1, expect="refuted")])
    out = tmp_path / "check.json"
    assert main(["check", str(script), "--json", str(out)]) == 1
    assert "corpus/pv-tlb-flush" in capsys.readouterr().out  # the table, not the JSON
    doc = json.loads(out.read_text())
    Draft202012Validator(schema("check-result")).validate(doc)
    for o in doc["obligations"]:
        Draft202012Validator(schema("prove-result")).validate(o["result"])
    assert (doc["status"], doc["counts"]) == \
        ("failed", {"passed": 2, "failed": 1, "unknown": 0, "new": 0})
    first, second = doc["obligations"]
    assert (first["actual"], first["result"]["violation"]["event"]) == ("refuted", 1)
    assert (second["status"], second["message"]) == \
        ("failed", "expected refuted, got bounded(1)")
    (trace,) = doc["traces"]
    assert {c["policy"]: c["actual"] for c in trace["cells"]}["v5.12"] == "freshness@1"


def test_outputs_and_the_corpus_are_checked_before_anything_runs(tmp_path, capsys):
    script = project(tmp_path, [TIMEOUT])
    assert main(["check", str(script), "--junit-xml", str(tmp_path / "no" / "x.xml")]) == 3
    assert capsys.readouterr().err.startswith(f"flushproof: --junit-xml {tmp_path}/no/x.xml: "
                                              "no directory")
    assert main(["check", str(script), "--corpus", str(tmp_path)]) == 3
    assert "no corpus: " in capsys.readouterr().err
    assert main(["check", str(script), "--no-corpus"]) == 4


def corpus_copy(tmp_path: Path) -> Path:
    """traces/ with one expectation wrong (pv-tlb-flush under v6.6) and one missing (v6.7 on
    lai-jiangshan)."""
    d = tmp_path / "traces"
    shutil.copytree(TRACES, d)
    doc = json.loads((d / "expected.json").read_text())
    doc["pv-tlb-flush.json"]["v6.6"] = "freshness@1"
    del doc["lai-jiangshan.json"]["v6.7"]
    (d / "expected.json").write_text(json.dumps(doc, indent=1) + "\n")
    return d


def test_a_policy_without_expectations_is_new_not_bad_input(tmp_path, capsys):
    d = corpus_copy(tmp_path)
    assert main(["corpus", str(d)]) == 1  # the wrong one fails; the missing one is new
    out = capsys.readouterr().out
    assert "new  lai-jiangshan.json               v6.7                     holds\n" in out
    cells = len(json.loads((TRACES / "expected.json").read_text())) * len(POLICIES)
    assert out.splitlines()[-1] == f"{cells - 2} passed, 1 failed, 1 new"


def test_corpus_update_records_the_verdicts_and_says_what_changed(tmp_path, capsys):
    d = corpus_copy(tmp_path)
    assert main(["corpus", str(d), "--update", "--policy-file", str(EXAMPLE)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[-4:] == [
        "lai-jiangshan.json               v6.7                     (none) -> holds",
        "pv-tlb-flush.json                v6.6                     freshness@1 -> holds",
        f"{d}/expected.json: 2 expectations changed",
        "not recorded (loaded from a file; --update-loaded records them): v6.6-no-smap-reset"]
    # Rewritten in the shipped order: the same bytes as the repository's.
    assert (d / "expected.json").read_bytes() == (TRACES / "expected.json").read_bytes()
    assert main(["corpus", str(d), "--update", "--policy-file", str(EXAMPLE)]) == 0
    assert capsys.readouterr().out.splitlines()[-2] == f"{d}/expected.json: unchanged"
    assert main(["corpus", str(d), "--update-loaded", "--policy-file", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out
    assert "lai-jiangshan.json               v6.6-no-smap-reset       (none) -> holds\n" in out
    traces = len(json.loads((TRACES / "expected.json").read_text()))  # one per trace
    assert out.splitlines()[-1] == f"{d}/expected.json: {traces} expectations changed"
    doc = json.loads((d / "expected.json").read_text())
    assert list(doc["lai-jiangshan.json"])[-2:] == ["509bfe3-no-pcide-free",
                                                    "v6.6-no-smap-reset"]
    assert main(["corpus", str(d), "--policy-file", str(EXAMPLE)]) == 0
    cells = traces * (len(POLICIES) + 1)  # the loaded policy's too
    assert capsys.readouterr().out.splitlines()[-1] == f"{cells} passed, 0 failed, 0 new"
