"""Issue 19's table, row by row: bad input, faults and long runs give a documented exit status
(docs/exit-codes.md), one line on stderr and never a traceback; outputs are whole or absent."""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import pytest

from formal.cli import main as cli
from formal.cli import output, prove
from formal.engines import search as engines
from formal.engines.checker import Checker
from formal.errors import Malformed
from formal.solvers import Inconclusive
from tests.conftest import TRACES
from tests.test_cli import GOOD
from tests.test_engines import PROP, counter

REFUTED = ["prove", "--policy", "rfc-2022-02", "--config", "tdp", "--property", "freshness",
           "--engine", "bmc", "--bound", "1", "--event", "set_sregs"]  # refuted in about 2 s


def call(capsys, argv: list[str]) -> tuple[int, str, str]:
    """main(argv) in-process: exit status (a usage error's SystemExit included), stdout,
    stderr."""
    try:
        code = cli.main(argv)
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def bad_input(capsys, argv: list[str], needle: str) -> str:
    code, out, err = call(capsys, argv)
    assert code == 3, err
    assert out == ""
    assert err.count("\n") == 1 and needle in err, err
    assert "Traceback" not in err
    return err


def write(tmp_path: Path, name: str, content: str | bytes | dict) -> str:
    path = tmp_path / name
    if isinstance(content, dict):
        content = json.dumps(content)
    if isinstance(content, str):
        content = content.encode()
    path.write_bytes(content)
    return str(path)


def never(*args, **kwargs):
    raise AssertionError("the work started before the input was checked")


SCRIPT = {"format": "flushproof-proofs/1", "obligations": [
    {"name": "a", "policy": "v6.6", "config": "tdp", "engine": "bmc", "expect": "refuted"}]}


def script(**changes) -> dict:
    return dict(SCRIPT, obligations=[dict(SCRIPT["obligations"][0], **changes)])


# -- rows 1-4, 11, 12: trace files and proof scripts --

@pytest.mark.parametrize("command", ["simulate", "replay", "suite"])
def test_row_1_a_file_that_is_not_utf8_is_bad_input(tmp_path, capsys, command):
    path = write(tmp_path, "t.json", json.dumps(GOOD).encode().replace(b"v5.18", b"v5.1\xff"))
    bad_input(capsys, [command, path], f"flushproof: {path}: not UTF-8 text (byte ")


@pytest.mark.parametrize("where", ["top", "event"])
def test_row_2_json_nested_100000_deep_is_bad_input(tmp_path, capsys, where):
    deep = "[" * 100_000 + "]" * 100_000
    text = deep if where == "top" else json.dumps(GOOD).replace('"0x2000"', deep)
    bad_input(capsys, ["simulate", write(tmp_path, "t.json", text)],
              "not valid JSON: nested deeper than 32 levels")


def test_row_3_an_integer_of_5000_digits_is_bad_input_naming_the_field(tmp_path, capsys):
    text = json.dumps(dict(GOOD, events=[{"op": "invpcid", "type": 1, "pcid": 7}]))
    path = write(tmp_path, "t.json", text.replace('"pcid": 7', '"pcid": ' + "9" * 5000))
    bad_input(capsys, ["simulate", path],
              "event 0 (invpcid): field 'pcid': expected an integer or a hex string (at most "
              "64 bits), got a number of 5000 characters (999999999999...)")


def test_row_4_a_policy_that_is_not_a_string_is_bad_input(tmp_path, capsys):
    """At 28339fb a policy list was already refused; a config list still raised TypeError."""
    bad_input(capsys, ["simulate", write(tmp_path, "t.json", dict(GOOD, policy=["v6.6"]))],
              "field 'policy': expected a policy name, got [\"v6.6\"]")
    bad_input(capsys, ["replay", write(tmp_path, "t.json", dict(GOOD, config=["shadow"]))],
              "field 'config': expected a configuration name, got [\"shadow\"]")
    bad_input(capsys, ["suite", write(tmp_path, "s.json", script(policy=["v6.6"]))],
              "obligation 0: field 'policy': expected a policy name, got [\"v6.6\"]")


@pytest.mark.parametrize("text,shown", [("2**70", "1180591620717411303424"), ("-1", "-1")])
def test_row_11_a_json_integer_obeys_the_64_bit_rule_of_hex_strings(tmp_path, capsys, text,
                                                                   shown):
    doc = json.dumps(dict(GOOD, events=[{"op": "invpcid", "type": 1, "pcid": 7}]))
    path = write(tmp_path, "t.json", doc.replace('"pcid": 7', f'"pcid": {eval(text)}'))
    bad_input(capsys, ["simulate", path], "event 0 (invpcid): field 'pcid': expected an integer "
              f"or a hex string (at most 64 bits), got {shown}")


def test_row_11_the_parser_applies_the_same_width_rule(tmp_path):
    from formal.model import trace
    doc = dict(GOOD, events=[{"op": "invpcid", "type": 1, "pcid": 2**64}])
    with pytest.raises(Malformed, match="field 'pcid': expected an integer or a hex string"):
        trace.parse(json.dumps(doc))


def test_row_12_an_op_that_is_not_a_string_says_so(tmp_path, capsys):
    bad_input(capsys, ["simulate", write(tmp_path, "t.json", dict(GOOD, events=[{"op": 5}]))],
              "t.json: event 0: field 'op': expected an event name, got 5")


def test_a_trace_is_read_from_standard_input(capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(
        (TRACES / "lai-jiangshan.json").read_bytes())))
    code, out, _ = call(capsys, ["simulate", "-"])
    assert code == 1 and out.splitlines()[-1].endswith("(at event 4)")
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"{")))
    bad_input(capsys, ["replay", "-"], "flushproof: <stdin>: not valid JSON: ")


# -- rows 8, 9, 15: corpus expectations and proof scripts, checked before anything runs --

def test_row_8_corpus_expectations_that_are_a_list_are_bad_input(tmp_path, capsys):
    write(tmp_path, "expected.json", "[]")
    bad_input(capsys, ["corpus", str(tmp_path)],
              "expected.json: expected an object of trace file names, got []")


def test_row_8_a_corpus_verdict_that_is_not_one_is_bad_input(tmp_path, capsys):
    write(tmp_path, "expected.json", {"t.json": {"v6.6": "fine"}})
    bad_input(capsys, ["corpus", str(tmp_path)],
              "expected.json: \"t.json\": field 'v6.6': expected \"holds\" or PROPERTY@EVENT, "
              "got \"fine\"")


@pytest.mark.parametrize("value,shown", [("NaN", "NaN"), ("Infinity", "Infinity"),
                                         ("1e400", "1e400"), ("0", "0"), ("-1", "-1"),
                                         ('"60"', '"60"')])
def test_rows_9_10_a_script_timeout_must_be_a_positive_number(tmp_path, capsys, monkeypatch,
                                                             value, shown):
    monkeypatch.setattr(prove, "run", never)
    text = json.dumps(script(timeout=60)).replace('"timeout": 60', f'"timeout": {value}')
    bad_input(capsys, ["suite", write(tmp_path, "s.json", text)],
              f"obligation 0: field 'timeout': expected a positive number of seconds, got "
              f"{shown}")


def test_row_15_a_bogus_expectation_is_refused_before_any_proof_runs(tmp_path, capsys,
                                                                     monkeypatch):
    monkeypatch.setattr(prove, "run", never)
    bad_input(capsys, ["suite", write(tmp_path, "s.json", script(expect="bogus"))],
              "obligation 0: field 'expect': expected a verdict: \"proved\", \"refuted\", "
              "\"unknown\" or \"bounded(N)\", got \"bogus\"")


# -- rows 5, 10, 14: the command line --

@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "0", "-1", "1e400", "soon"])
def test_rows_5_10_timeout_must_be_finite_and_positive(capsys, monkeypatch, value):
    monkeypatch.setattr(prove, "run", never)
    bad_input(capsys, ["prove", "--policy", "v6.6", "--config", "tdp", f"--timeout={value}"],
              f"flushproof prove: error: argument --timeout: must be a finite number of "
              f"seconds > 0, got '{value}' (see flushproof prove --help)")


def test_row_14_bound_0_is_bad_input(capsys, monkeypatch):
    monkeypatch.setattr(prove, "run", never)
    bad_input(capsys, ["prove", "--policy", "v6.6", "--config", "tdp", "--bound", "0"],
              "argument --bound: must be an integer >= 1, got '0'")
    with pytest.raises(Malformed, match="bound must be >= 1, got 0"):
        prove.Obligation("v6.6", "tdp", bound=0).check()


@pytest.mark.parametrize("timeout", [0.0, -1.0, math.nan, math.inf])
def test_rows_5_10_an_obligation_checks_its_timeout(timeout):
    with pytest.raises(Malformed, match="timeout must be a finite number of seconds > 0"):
        prove.Obligation("v6.6", "tdp", timeout=timeout).check()


# -- rows 6, 7: outputs --

def test_row_6_dump_smt_naming_a_file_or_an_unwritable_path_is_bad_input(tmp_path, capsys,
                                                                       monkeypatch):
    monkeypatch.setattr(prove, "run", never)
    a_file = write(tmp_path, "f", "x")
    base = ["prove", "--policy", "v6.6", "--config", "tdp", "--dump-smt"]
    bad_input(capsys, base + [a_file], f"--dump-smt {a_file}: exists and is not a directory")
    bad_input(capsys, base + [a_file + "/sub"], f"--dump-smt {a_file}/sub: cannot create: ")


@pytest.mark.parametrize("where,needle", [("missing/c.json", "no directory"),
                                          (".", "is a directory")])
def test_row_7_a_cex_destination_is_checked_before_the_proof(tmp_path, capsys, monkeypatch,
                                                            where, needle):
    monkeypatch.setattr(prove, "run", never)
    dest = str(tmp_path / where)
    bad_input(capsys, REFUTED + ["--cex", dest], f"--cex {dest}: {needle}")


def test_row_7_a_counterexample_that_cannot_be_written_keeps_the_verdict(tmp_path, capsys,
                                                                        monkeypatch):
    """The default destination (in the working directory) is taken: the verdict is printed
    anyway, and one line says what could not be written."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "flushproof-cex-rfc-2022-02-tdp.json").mkdir()
    code, out, err = call(capsys, REFUTED)
    assert code == 1
    assert "verdict: REFUTED by explicit+bmc: freshness violated at event 0" in out
    assert "counterexample: not written to a file" in out
    assert err == ("flushproof: could not write the counterexample to "
                   "flushproof-cex-rfc-2022-02-tdp.json: is a directory\n")


def test_an_interrupted_write_leaves_neither_the_file_nor_a_temporary(tmp_path, monkeypatch):
    target = tmp_path / "c.json"

    def interrupted(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        output.write_atomic(target, "{}")
    assert list(tmp_path.iterdir()) == []


def test_a_dump_that_fails_mid_proof_is_reported_not_fatal(tmp_path):
    from pysmt.shortcuts import TRUE
    ck = Checker(dump_dir=tmp_path / "gone")  # never created: every write fails
    assert ck.sat("q", TRUE()) is True
    assert ck.dump("q2", TRUE()) is None
    assert len(ck.dump_failures) == 1 and ck.dump_failures[0].startswith(str(tmp_path))


# -- row 13: a bmc that times out says how deep it got --

class _TimeoutAt(Checker):
    def __init__(self, name: str) -> None:
        super().__init__()
        self.at = name

    def sat(self, name, formula, model_of=None, solver=None):
        if name == self.at:
            raise Inconclusive("timeout")
        return super().sat(name, formula, model_of, solver)


def test_row_13_a_bmc_timeout_names_the_depth_reached():
    r = engines.bmc(counter(2, -1), PROP, 1000, _TimeoutAt("bmc-7"))
    assert (r.verdict, r.reason) == ("unknown",
                                     "timeout at bmc depth 7 (depths 0-6 have no violation)")
    r = engines.bmc(counter(2, -1), PROP, 1000, _TimeoutAt("bmc-0"))
    assert r.reason == "timeout at bmc depth 0 (no depth finished)"


class _DeciderSaysSat(Checker):
    """A decider that calls every query satisfiable, beside z3 that builds the model."""

    def sat(self, name, formula, model_of=None, solver=None):
        if solver == "bitwuzla":
            return True
        return super().sat(name, formula, model_of, solver)


def test_a_decider_and_z3_that_disagree_give_unknown_naming_both():
    r = engines.bmc(counter(2, -1), PROP, 3, _DeciderSaysSat(decider="bitwuzla"))
    assert (r.verdict, r.reason) == ("unknown", "bitwuzla and z3 disagree on bmc's depth 0: "
                                     "satisfiable to one, not to the other at bmc depth 0 "
                                     "(no depth finished)")


# -- row 16 and internal errors --

def test_row_16_ctrl_c_is_one_line_exit_130_and_writes_nothing(tmp_path, capsys, monkeypatch):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(prove, "run", interrupt)
    monkeypatch.chdir(tmp_path)
    code, out, err = call(capsys, REFUTED + ["--cex", "c.json", "--dump-smt", "smt"])
    assert (code, out, err) == (130, "", "flushproof: interrupted\n")
    assert list(tmp_path.iterdir()) == []  # the dump directory made up front is removed


def test_an_internal_error_is_exit_5_with_one_line_and_a_saved_report(capsys, monkeypatch):
    def bug(*args, **kwargs):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr("formal.cli.policies.simulate", bug)
    code, out, err = call(capsys, ["simulate", str(TRACES / "lai-jiangshan.json")])
    assert code == 5 and out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("flushproof: internal error (a bug in flushproof): "
                          "ZeroDivisionError: division by zero; full report in ")
    report = Path(err.split("full report in ")[1].split(" (or rerun")[0])
    try:
        assert "Traceback" in report.read_text() and "ZeroDivisionError" in report.read_text()
    finally:
        report.unlink()
    code, _, err = call(capsys, ["simulate", "--debug", str(TRACES / "lai-jiangshan.json")])
    assert code == 5 and err.startswith("Traceback (most recent call last):")


# -- solver faults: unknown with the reason, never proved, never a traceback --

class _Broken:
    """A solver that fails on every query, in the way given."""

    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        return None

    def add_assertion(self, formula) -> None:
        return None

    def solve(self, assumptions=None) -> bool:
        raise self.exc


FAULTS = [
    (RuntimeError("cvc5 crashed"), "failed on q: RuntimeError: cvc5 crashed"),
    (__import__("pysmt.exceptions").exceptions.SolverReturnedUnknownResultError(),
     "returned unknown on q"),
]


@pytest.mark.parametrize("exc,reason", FAULTS)
def test_a_solver_fault_is_inconclusive_with_its_reason(monkeypatch, exc, reason):
    monkeypatch.setattr("formal.solvers.make", lambda *a, **k: _Broken(exc))
    from pysmt.shortcuts import TRUE
    with pytest.raises(Inconclusive, match=reason):
        Checker().sat("q", TRUE())


@pytest.mark.parametrize("engine,query,suffix", [
    ("bmc", "bmc-0", " at bmc depth 0 (no depth finished)"),
    ("kind", "bmc-0", " at bmc depth 0 (no depth finished)"),
    ("houdini", "houdini-init", "")])
@pytest.mark.parametrize("exc,reason", FAULTS)
def test_every_engine_gives_unknown_on_a_solver_fault(monkeypatch, engine, query, suffix, exc,
                                                      reason):
    monkeypatch.setattr("formal.solvers.make", lambda *a, **k: _Broken(exc))
    run = {"bmc": lambda: engines.bmc(counter(0, 1), PROP, 3),
           "kind": lambda: engines.kind(counter(0, 1), PROP, 2),
           "houdini": lambda: engines.houdini(counter(0, 1), PROP)}[engine]
    r = run()
    assert (r.verdict, r.reason) == ("unknown", "z3 " + reason.replace(" q", f" {query}")
                                     + suffix)


@pytest.mark.parametrize("answer,reason", [
    ("raise", "z3 failed on a pdr first entry query: Z3Exception: out of memory"),
    ("unknown", "z3 returned unknown on a pdr first entry query (unknown)")])
def test_pdr_gives_unknown_on_a_solver_fault(monkeypatch, answer, reason):
    import z3

    def check(self, *assumptions):
        if answer == "raise":
            raise z3.Z3Exception("out of memory")
        return z3.unknown

    monkeypatch.setattr(z3.Solver, "check", check)
    r = engines.pdr(counter(0, 1), PROP)
    assert (r.verdict, r.reason) == ("unknown", reason)


@pytest.mark.parametrize("exc,reason", [
    (RuntimeError("boom"), "the path oracle's solver failed on a path condition: "
                           "RuntimeError: boom"),
    (FAULTS[1][0], "the path oracle's solver returned unknown on a path condition")])
def test_prove_with_a_faulty_solver_exits_4_with_the_reason(capsys, monkeypatch, exc, reason):
    monkeypatch.setattr("formal.solvers.make", lambda *a, **k: _Broken(exc))
    # --no-cache: symbolic execution runs (an earlier test may have cached the relation).
    code, out, err = call(capsys, REFUTED + ["--json", "--no-cache"])
    assert code == 4 and err == ""
    doc = json.loads(out)
    assert (doc["verdict"], doc["reason"]) == ("unknown", f"symbolic execution: {reason}")


# -- row 17: a long simulation keeps no per-step state --

def test_row_17_simulate_streams_memory_does_not_grow_with_the_trace(tmp_path, monkeypatch):
    """Each step's record used to hold a deep copy of the vCPU (824 MB for 100,000 events);
    now each is written and dropped.  1,500 events: the peak stays what the trace costs."""
    events = json.loads((TRACES / "lai-jiangshan.json").read_text())["events"] * 300
    path = write(tmp_path, "long.json", dict(GOOD, policy="v6.6", events=events))
    with open(os.devnull, "w") as sink:
        monkeypatch.setattr("sys.stdout", sink)
        for extra in ([], ["--json"], ["--quiet"]):
            tracemalloc.start()
            code = cli.main(["simulate", path, *extra])
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            assert code == 0
            assert peak < 4 * 2**20, f"{extra}: {peak / 2**20:.1f} MiB"


def test_a_closed_standard_output_is_exit_4_not_an_internal_error(tmp_path):
    """`flushproof simulate LONG | head -1`: the reader leaves; one line, no report saved."""
    events = json.loads((TRACES / "lai-jiangshan.json").read_text())["events"] * 300
    path = write(tmp_path, "long.json", dict(GOOD, policy="v6.6", events=events))
    proc = subprocess.Popen([sys.executable, "-m", "formal", "simulate", path],
                            cwd=Path(__file__).resolve().parent.parent,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline().startswith(b"policy v6.6, config shadow, 1500 events")
    proc.stdout.close()
    assert proc.wait(timeout=60) == 4
    assert proc.stderr.read() == b"flushproof: standard output was closed before the verdict\n"
