"""`flushproof simulate`: exit codes, the text and JSON reports, and bad input."""

from __future__ import annotations

import json

import pytest
from jsonschema import Draft202012Validator

from formal.cli.main import main
from formal.cli.schemas import schema
from tests.conftest import TRACES

GOOD = {"format": "flushproof-trace/1", "policy": "v5.18", "config": "shadow",
        "initial": {"cr0": "0x80010033", "cr3": "0x1000", "cr4": "0x20", "efer": "0xd00"},
        "events": [{"op": "mov_cr3", "value": "0x2000"}]}


def run(tmp_path, capsys, doc, *extra):
    path = tmp_path / "t.json"
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    code = main(["simulate", str(path), *extra])
    out, err = capsys.readouterr()
    return code, out, err


def with_events(*events):
    return dict(GOOD, events=list(events))


def test_violation_exits_1_and_names_property_event_and_root(capsys):
    code = main(["simulate", str(TRACES / "lai-jiangshan.json")])
    out = capsys.readouterr().out
    assert code == 1
    assert out.splitlines()[-1].startswith(
        "FAIL: freshness: root pgd=0x2000 reused: its out-of-sync shadow entries")
    assert out.splitlines()[-1].endswith("(at event 4)")
    assert "[4] mov_cr3(value=0x8000000000002000)" in out
    assert "    kvm: switch to cached prev_roots[0] pgd=0x2000" in out


def test_holding_trace_exits_0(tmp_path, capsys):
    code, out, _ = run(tmp_path, capsys, GOOD)
    assert code == 0
    assert out.splitlines()[-1] == "PASS: no property violated in 1 events"


def test_json_report_carries_the_verdict_and_violation(capsys):
    code = main(["simulate", str(TRACES / "lai-jiangshan.json"), "--json"])
    doc = json.loads(capsys.readouterr().out)
    assert code == 1
    assert doc["verdict"] == "violated"
    assert doc["page"] == {"size": "4K", "global": False, "user": True, "writable": True,
                           "nx": False}
    assert doc["violation"]["event"] == 4 and doc["violation"]["property"] == "freshness"
    assert [s["index"] for s in doc["steps"]] == [-1, 0, 1, 2, 3, 4]
    assert doc["steps"][5]["event"] == {"op": "mov_cr3", "value": "0x8000000000002000"}


def test_json_report_names_a_global_page(capsys):
    main(["simulate", str(TRACES / "global-invlpg-other-pcid.json"), "--json", "--quiet"])
    assert json.loads(capsys.readouterr().out)["page"] == {
        "size": "4K", "global": True, "user": True, "writable": True, "nx": False}


def test_policy_override(capsys):
    assert main(["simulate", str(TRACES / "lai-jiangshan.json"), "--policy", "v6.6"]) == 0


def test_fault_is_reported_not_fatal(tmp_path, capsys):
    code, out, _ = run(tmp_path, capsys, with_events({"op": "mov_cr4", "value": "0x0"}))
    assert code == 0
    assert "    #GP: clearing CR4.PAE in IA-32e mode (no state change)" in out


BAD = [
    ("unknown_op", with_events({"op": "mov_cr5", "value": "0x0"}),
     "event 0: field 'op': unknown op \"mov_cr5\""),
    ("bad_hex", with_events({"op": "mov_cr3", "value": "0x12g"}),
     "event 0 (mov_cr3): field 'value': expected a hex string like \"0x1000\" (at most 64 "
     "bits), got \"0x12g\""),
    ("too_wide", with_events({"op": "mov_cr3", "value": "0x1" + "0" * 16}),
     "event 0 (mov_cr3): field 'value': expected a hex string"),
    ("missing_field", with_events({"op": "mov_cr3", "value": "0x1000"},
                                  {"op": "guest_pte_write"}),
     "event 1 (guest_pte_write): missing field 'pgd'"),
    ("wrong_type", with_events({"op": "invpcid", "type": "one", "pcid": 0}),
     "event 0 (invpcid): field 'type': expected an integer or a hex string (at most 64 "
     "bits), got \"one\""),
    ("int_register", with_events({"op": "mov_cr0", "value": 5}),
     "event 0 (mov_cr0): field 'value': expected a hex string like \"0x1000\""),
    ("unknown_field", with_events({"op": "smi", "when": "now"}),
     "event 0 (smi): unknown field 'when'"),
    ("event_not_object", with_events(["mov_cr3"]),
     "event 0: expected an object with an 'op', got [\"mov_cr3\"]"),
    ("truncated", json.dumps(GOOD)[:-20], "not valid JSON: "),
    ("bad_format", dict(GOOD, format="flushproof-trace/9"),
     "field 'format': expected 'flushproof-trace/1', got \"flushproof-trace/9\""),
    ("unknown_policy", dict(GOOD, policy="v9.9"), "field 'policy': unknown policy \"v9.9\""),
    ("unknown_config", dict(GOOD, config="ept"), "field 'config': unknown config \"ept\""),
    ("missing_initial_reg", dict(GOOD, initial={"cr0": "0x80010033"}),
     "initial: missing field 'cr3'"),
    ("nested_op_in_flat_config", with_events({"op": "vmexit"}),
     "event 0 (vmexit): config shadow has no nested virtualization"),
    ("illegal_initial_state", dict(GOOD, initial=dict(GOOD["initial"], efer="0x100")),
     "initial: registers are not a legal state: invalid: EFER.LMA must equal"),
]


@pytest.mark.parametrize("name,doc,message", BAD, ids=[b[0] for b in BAD])
def test_bad_trace_is_one_line_naming_event_and_field_exit_3(tmp_path, capsys, name, doc,
                                                             message):
    code, out, err = run(tmp_path, capsys, doc)
    assert code == 3
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("flushproof: ")
    assert message in err
    assert "Traceback" not in err


def test_step_outside_the_model_stops_the_streamed_run_with_exit_3(tmp_path, capsys):
    """The run is printed as it goes (formal.cli.render.simulate_to): a step the model does
    not cover stops it after the steps before it, with no verdict."""
    code, out, err = run(tmp_path, capsys, dict(GOOD, config="nested-npt", events=[
        {"op": "vmentry", "cr0": "0x80010033", "cr3": "0x3000", "cr4": "0x20", "efer": "0xd00",
         "nested_pgd": "0x5000", "vpid": "0x10000"}]))
    assert code == 3
    assert out.startswith("policy v5.18, config nested-npt, 1 events\ninitial\n")
    assert "[0]" not in out and "PASS" not in out
    assert err == ("flushproof: event 0 (vmentry): an L2 ASID above 0xFFFF is not modeled (KVM "
                   "gives L1 8 ASIDs)\n")


def test_missing_file_exit_3(capsys):
    assert main(["simulate", "/nonexistent/trace.json"]) == 3
    assert "cannot read" in capsys.readouterr().err


def test_usage_error_exit_3(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["simulate"])
    assert exc.value.code == 3


def test_corpus_command_passes(capsys, monkeypatch):
    assert main(["corpus", str(TRACES)]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert last == "253 passed, 0 failed, 0 new"  # 23 traces x 11 policies


@pytest.mark.parametrize("argv,needle", [
    (["prove", "--policy", "v9.9", "--config", "shadow"], "unknown policy 'v9.9'"),
    (["prove", "--policy", "v6.6", "--config", "ept"], "unknown config 'ept'"),
    (["prove", "--policy", "v6.6", "--config", "shadow", "--bound", "-1"],
     "argument --bound: must be an integer >= 1, got '-1'"),
    (["prove", "--policy", "v6.6", "--config", "shadow", "--engine", "magic"], "invalid choice"),
    (["prove", "--policy", "v6.6", "--config", "shadow", "--property", "speed"],
     "invalid choice"),
    (["prove", "--policy", "v6.6", "--config", "tdp", "--event", "vmentry"],
     "event 'vmentry' is not one of config tdp's (known: mov_cr0, "),
    (["prove", "--policy", "v6.6", "--config", "nested-npt", "--event", "invvpid"],
     "event 'invvpid' is not one of config nested-npt's"),
])
def test_prove_rejects_bad_obligations_with_exit_3(argv, needle, capsys):
    with pytest.raises(SystemExit) as exc:
        raise SystemExit(main(argv))
    assert exc.value.code == 3
    assert needle in capsys.readouterr().err


RESTRICTED = ["prove", "--policy", "v6.6", "--config", "tdp", "--property", "pgd", "--engine",
              "houdini", "--bound", "1", "--event", "invlpg", "--event", "mov_cr3"]


def test_prove_restricted_to_some_events_says_so_in_text_and_json(capsys):
    """--event builds the relation of those kinds only (in the configuration's order); the
    verdict names the restriction, since it covers executions of those events only."""
    assert main(RESTRICTED + ["--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    Draft202012Validator(schema("prove-result")).validate(doc)  # docs/schemas.md
    assert (doc["verdict"], doc["events"]) == ("proved", ["mov_cr3", "invlpg"])
    assert set(doc["paths"]) == {"mov_cr3", "invlpg", "initial"}
    assert "safety for each of 2 event kinds" in doc["certificate"]
    assert doc["vacuity"] == {"ok": True, "failures": []}
    assert main(RESTRICTED) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1] == ("events: only mov_cr3, invlpg (the environment is restricted: a verdict "
                        "covers executions of these events only)")
    assert lines[4].startswith("verdict: PROVED by houdini (for executions of mov_cr3, invlpg "
                               "only): ")


@pytest.mark.parametrize("doc,needle", [
    ("{", "not valid JSON"),
    ('{"format": "x"}', "field 'format'"),
    ('{"format": "flushproof-proofs/1", "obligations": [{"name": "a"}]}',
     "obligation 0: missing field 'policy'"),
    ('{"format": "flushproof-proofs/1", "obligations": [{"name": "a", "policy": "v6.6", '
     '"config": "shadow", "engine": "bmc", "expect": "refuted", "bound": "3"}]}',
     "obligation 0: field 'bound'"),
    ('{"format": "flushproof-proofs/1", "obligations": [{"name": "a", "policy": "v6.6", '
     '"config": "shadow", "engine": "bmc", "expect": "refuted", "properties": ["x"]}]}',
     "obligation 0: field 'properties[0]': unknown property \"x\" (known: role, pgd, "
     "freshness, metadata)"),
])
def test_suite_rejects_malformed_proof_scripts_with_exit_3(tmp_path, doc, needle, capsys):
    f = tmp_path / "suite.json"
    f.write_text(doc)
    assert main(["suite", str(f)]) == 3
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1
