"""Fuzzing the command in-process (hypothesis): mutated trace files, mutated proof scripts and
command lines built from the options' words.  Whatever the input, the exit status is a
documented one (docs/exit-codes.md) and not 5 (an internal error is a bug), stderr holds no
traceback, and exit 3 comes with exactly one line on stderr.

Each test runs FLUSHPROOF_FUZZ_EXAMPLES examples (default 100: a few seconds in CI); the long
run of docs/exit-codes.md sets it to 3,400 (over 10,000 cases in all).  Proofs are not run:
the relation build is replaced by an `unknown`, so a well-formed obligation costs nothing."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import tempfile
from pathlib import Path
from unittest import mock

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from formal.cli import main as cli
from formal.solvers import Inconclusive
from tests.conftest import TRACES

EXAMPLES = int(os.environ.get("FLUSHPROOF_FUZZ_EXAMPLES", "100"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, database=None,
                suppress_health_check=list(HealthCheck))

TRACE = json.loads((TRACES / "lai-jiangshan.json").read_text())
NESTED = json.loads((TRACES / "nested-new-vpid12-without-sync.json").read_text())
SCRIPT = json.loads((Path(__file__).resolve().parent.parent / "proofs" / "suite.json")
                    .read_text())

WORDS = ["0x0", "0x1000", "0x8000000000002000", "0x1" + "0" * 16, "0x", "v6.6", "v9.9",
         "shadow", "nested-npt", "mov_cr3", "smi", "vmentry", "refuted", "bounded(2)", "bogus",
         "freshness", "bmc", "-1", ""]
SCALARS = (st.none() | st.booleans() | st.integers(-5, 2**64 + 5)
           | st.integers(2**64, 10**50) | st.floats() | st.text(max_size=6)
           | st.sampled_from(WORDS))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3)
                      | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=6)
# Well-formed operands too, so that mutated traces also run: registers with bits that matter
# (PG, PAE, PCIDE, LME, NOFLUSH, ...) or any 64-bit value.
OPERANDS = st.one_of(st.integers(0, 2**64 - 1),
                     st.sets(st.sampled_from([0, 5, 7, 8, 10, 12, 13, 16, 17, 31, 63]))
                     .map(lambda bits: sum(1 << b for b in bits) | 0x1000)).map(hex)


def _slots(doc: object, out: list) -> list:
    """Every (container, key) of doc, depth first."""
    items = doc.items() if isinstance(doc, dict) else enumerate(doc) \
        if isinstance(doc, list) else []
    for key, value in items:
        out.append((doc, key))
        _slots(value, out)
    return out


def mutate(data: st.DataObject, doc: dict) -> bytes:
    """doc with one to three values replaced, deleted or added, then as bytes, which may be
    cut short or have a byte replaced."""
    doc = copy.deepcopy(doc)
    for _ in range(data.draw(st.integers(1, 3))):
        slots = _slots(doc, [])
        operands = [(c, k) for c, k in slots if isinstance(c, dict) and "op" in c and k != "op"]
        if operands and data.draw(st.booleans()):  # half the time an event's operand
            slots = operands
        if not slots:
            break
        container, key = data.draw(st.sampled_from(slots))
        how = data.draw(st.sampled_from(["replace", "delete", "add"]))
        if how == "replace":
            container[key] = data.draw(OPERANDS if data.draw(st.booleans()) else VALUES)
        elif how == "delete":
            del container[key]
        elif isinstance(container, dict):
            container[data.draw(st.sampled_from(WORDS + ["op", "pcid", "events"]))] = \
                data.draw(VALUES)
        else:
            container.insert(key, copy.deepcopy(data.draw(st.sampled_from(container))))
    raw = json.dumps(doc).encode()
    cut = data.draw(st.sampled_from(["none", "none", "none", "truncate", "byte"]))
    if cut == "truncate":
        raw = raw[:data.draw(st.integers(0, len(raw)))]
    elif cut == "byte" and raw:
        at = data.draw(st.integers(0, len(raw) - 1))
        raw = raw[:at] + bytes([data.draw(st.integers(0, 255))]) + raw[at + 1:]
    return raw


def _no_proof(*args, **kwargs):
    raise Inconclusive("fuzz: the relation is not built")


def run(argv: list[str]) -> tuple[int, str]:
    """main(argv) in-process, in a fresh working directory, without proofs: (status, stderr)."""
    err = io.StringIO()
    with tempfile.TemporaryDirectory() as wd, contextlib.chdir(wd), \
            mock.patch("formal.cli.prove.build", _no_proof), \
            contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err), \
            mock.patch("sys.stdin", io.TextIOWrapper(io.BytesIO(b""))):
        try:
            code = cli.main(argv)
        except SystemExit as exc:
            code = exc.code
    return code, err.getvalue()


def check(argv: list[str]) -> None:
    code, err = run(argv)
    assert code in cli.EXIT_CODES and code != cli.EXIT_INTERNAL, (argv, code, err)
    assert "Traceback" not in err, (argv, err)
    if code == cli.EXIT_BAD_INPUT:
        assert err.count("\n") == 1 and err.endswith("\n"), (argv, err)


@FUZZ
@given(st.data())
def test_mutated_traces(data):
    base = data.draw(st.sampled_from([TRACE, NESTED]))
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "t.json"
        path.write_bytes(mutate(data, base))
        command = data.draw(st.sampled_from([["simulate"], ["simulate", "--json"],
                                             ["simulate", "--quiet"], ["replay"]]))
        check([*command, str(path)])


@FUZZ
@given(st.data())
def test_mutated_proof_scripts(data):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "s.json"
        path.write_bytes(mutate(data, SCRIPT))
        check(["suite", str(path)])


OPTION_VALUES = {
    "--policy": ["v6.6", "v5.12", "v9.9", "", "509bfe3-no-pcide-free"],
    "--config": ["tdp", "shadow", "nested-npt", "ept", ""],
    "--property": ["freshness", "pgd", "speed"],
    "--engine": ["bmc", "auto", "pdr", "magic"],
    "--event": ["mov_cr3", "invlpg", "vmentry", "smi", "x"],
    "--bound": ["1", "0", "-1", "3", "x", "1e3", "99999999999999999999999"],
    "--timeout": ["1", "0", "-1", "nan", "inf", "1e-9", "x", "0.5"],
    "--dump-smt": ["smt", ".", "a/b", "t.json"],
    "--cex": ["c.json", ".", "missing/c.json", ""],
}
ARGS = [str(TRACES / "lai-jiangshan.json"), str(TRACES), "-", "missing.json", ".",
        str(TRACES / "expected.json")]


@FUZZ
@given(st.data())
def test_command_lines(data):
    argv = [data.draw(st.sampled_from(["simulate", "replay", "prove", "corpus", "suite", "x"]))]
    if argv[0] == "prove" and data.draw(st.booleans()):
        argv += ["--policy", "v6.6", "--config", "tdp"]
    for _ in range(data.draw(st.integers(0, 6))):
        kind = data.draw(st.sampled_from(["option", "option", "flag", "arg"]))
        if kind == "option":
            option = data.draw(st.sampled_from(sorted(OPTION_VALUES)))
            argv += [option, data.draw(st.sampled_from(OPTION_VALUES[option]))]
        elif kind == "flag":
            argv.append(data.draw(st.sampled_from(["--json", "--quiet", "--debug", "--x"])))
        else:
            argv.append(data.draw(st.sampled_from(ARGS)))
    if argv[0] == "corpus" and str(TRACES) in argv:
        argv.remove(str(TRACES))  # the real corpus is test_cli's (and slow for a fuzz case)
    check(argv)
