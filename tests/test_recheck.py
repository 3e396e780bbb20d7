"""The re-check of a certificate (formal.engines.checker.Checker.recheck): every query asked of
a solver of another code base than the search's, in one process or on several, and nothing
but unsat from all of them is a pass; and the progress a long run reports."""

from __future__ import annotations

import importlib
import io
import os

import pytest
from pysmt.shortcuts import BV, BVULT, FALSE, TRUE, And, BVAdd, EqualsOrIff, Not, Symbol
from pysmt.typing import BVType

from formal import solvers
from formal.cli.main import main
from formal.engines import checker, parallel
from formal.engines import search as engines
from formal.engines.checker import CHECKERS, Checker
from formal.engines.progress import Progress
from formal.errors import Malformed
from formal.solvers import Answer, Inconclusive
from formal.solvers import yices as yices_backend

X = Symbol("x", BVType(8))
UNSAT = EqualsOrIff(BV(1, 8), BV(2, 8))


def queries(*formulas):
    return [(f"q{i}", lambda f=f: f) for i, f in enumerate(formulas)]


def test_the_search_solver_cannot_re_check_its_own_certificates():
    assert CHECKERS == ("yices", "bitwuzla", "cvc5")
    with pytest.raises(Malformed, match="'z3' cannot re-check certificates"):
        Checker(checker="z3")


@pytest.mark.parametrize("jobs", [1, 2])
def test_recheck_names_the_satisfiable_query_and_passes_only_all_unsat(jobs):
    ck = Checker(jobs=jobs)
    assert ck.recheck(queries(UNSAT, FALSE(), BVULT(X, BV(0, 8)))) is None
    assert ck.recheck(queries(UNSAT, BVULT(X, BV(3, 8)), FALSE())) == "q1"


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_query_the_checker_does_not_answer_goes_to_the_next(jobs, monkeypatch):
    # The forked workers inherit the patched backend.
    monkeypatch.setattr(yices_backend, "answer", lambda script, seconds: Answer.UNKNOWN)
    ck = Checker(jobs=jobs)
    assert ck.recheck(queries(UNSAT, UNSAT)) is None
    assert ck.rechecked_by == {"bitwuzla": 2}
    assert ck.answered_by() == "bitwuzla (2 queries)"
    assert ck.recheck(queries(UNSAT, BVULT(X, BV(3, 8)))) == "q1"  # bitwuzla's sat rejects


@pytest.mark.parametrize("jobs", [1, 2])
def test_an_unknown_of_every_checker_is_inconclusive_never_a_pass(jobs, monkeypatch):
    for name in CHECKERS:
        module = importlib.import_module(f"formal.solvers.{name}")
        monkeypatch.setattr(module, "answer", lambda script, seconds: Answer.UNKNOWN)
    # One process asks q0 first; two workers answer in either order, the first one reported.
    first = "q0" if jobs == 1 else "q[01]"
    with pytest.raises(Inconclusive,
                       match=f"^yices, bitwuzla, cvc5 returned unknown on recheck-{first}$"):
        Checker(jobs=jobs).recheck(queries(UNSAT, UNSAT))


def test_each_checker_but_the_last_gets_a_slice_of_the_deadline(monkeypatch):
    asked = []

    def slow(name):
        def answer(script, seconds):
            asked.append((name, seconds))
            return Answer.UNKNOWN if name != "cvc5" else Answer.UNSAT
        return answer
    for name in CHECKERS:
        module = importlib.import_module(f"formal.solvers.{name}")
        monkeypatch.setattr(module, "answer", slow(name))
    ck = Checker(jobs=1)
    assert ck.recheck(queries(UNSAT)) is None
    assert asked == [("yices", checker.RECHECK_SLICE), ("bitwuzla", checker.RECHECK_SLICE),
                     ("cvc5", None)]
    assert ck.rechecked_by == {"cvc5": 1}


def test_a_worker_that_dies_is_inconclusive_never_a_pass():
    def die():
        os._exit(3)
    with pytest.raises(Inconclusive, match="a re-check worker died"):
        Checker(jobs=2).recheck([("q0", lambda: UNSAT), ("dies", die), ("q2", lambda: UNSAT)])


def test_the_recheck_stops_at_the_deadline():
    with pytest.raises(Inconclusive, match="^timeout$"):
        Checker(timeout=1e-9, jobs=2).recheck(queries(UNSAT, UNSAT))


def test_progress_names_the_phase_and_the_recheck_count():
    out = io.StringIO()
    ck = Checker(jobs=2, progress=Progress(out))
    assert ck.recheck(queries(UNSAT, UNSAT, UNSAT)) is None
    ck.progress.done()  # nothing to clear when not live
    lines = [line.split("] ", 1)[1] for line in out.getvalue().splitlines()]
    assert lines == [f"re-check by yices (2 workers): {n} of 3 queries" for n in range(4)]
    assert all(line.startswith("[") and "s] " in line for line in out.getvalue().splitlines())


def test_progress_reports_houdini_rounds_and_bmc_depths():
    from tests.test_engines import PROP, counter
    out = io.StringIO()
    engines.bmc(counter(2, -1), PROP, 2, Checker(progress=Progress(out)))
    engines.houdini(counter(2, -1), PROP, Checker(jobs=1, progress=Progress(out)),
                    bit_fields=("cr0",))
    lines = [line.split("] ", 1)[1] for line in out.getvalue().splitlines()]
    assert lines[:3] == ["bmc depth 0 of 2", "bmc depth 1 of 2", "bmc depth 2 of 2"]
    assert lines[3].startswith("houdini initiation: ")
    assert any(line.startswith("houdini round 1: ") and line.endswith(" lemmas, mov_cr3")
               for line in lines)
    assert lines[-4:] == [f"re-check by yices: {n} of 4 queries" for n in range(4)]


def test_live_progress_rewrites_one_line_and_clears_it():
    out = io.StringIO()
    p = Progress(out, live=True)
    p("bmc depth 1 of 4")
    p.done()
    assert out.getvalue().startswith("\r[") and out.getvalue().endswith("\r\x1b[K")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


PGD_MOV_CR3 = ["prove", "--policy", "v6.6", "--config", "tdp", "--property", "pgd", "--engine",
               "houdini", "--event", "mov_cr3"]


@pytest.mark.parametrize("terminal,json,shown", [(True, False, True), (True, True, False),
                                                  (False, False, False)])
def test_prove_reports_progress_only_on_a_terminal_and_never_with_json(
        terminal, json, shown, monkeypatch, capsys):
    err = Terminal() if terminal else io.StringIO()
    monkeypatch.setattr("sys.stderr", err)
    assert main(PGD_MOV_CR3 + ["--jobs", "2"] + (["--json"] if json else [])) == 0
    text = err.getvalue()
    assert ("\r[" in text) == shown
    if shown:
        for phase in ("symbolic execution: mov_cr3", "vacuity: ", "houdini round 1: ",
                      "re-check by yices (2 workers): 6 of 6 queries"):
            assert phase in text
        assert text.endswith("\r\x1b[K")  # cleared before the result is printed
    capsys.readouterr()


def test_prove_with_the_cvc5_checker_names_it_and_its_query_count(capsys):
    assert main(PGD_MOV_CR3 + ["--checker", "cvc5", "--jobs", "1", "--json"]) == 0
    doc = __import__("json").loads(capsys.readouterr().out)
    assert doc["checker"] == {"solver": "cvc5", "queries": 6, "by": {"cvc5": 6}}
    assert doc["certificate"].startswith("inductive invariant re-checked by cvc5 in 6 one-shot "
                                         "queries (initiation; consecution per path and safety "
                                         "for each of 1 event kinds)")


@pytest.mark.parametrize("solver", CHECKERS)
def test_a_macro_is_defined_once_and_answers_as_its_expansion(solver):
    """A certificate's invariant is a define-fun applied to the state and to its successor:
    each re-checker answers the query as it answers the query with the invariant substituted
    (sat where the successor breaks it, unsat where it is kept).  Two macros of one name over
    other sorts get names of their own (pySMT's symbols are global)."""
    y = Symbol("y", BVType(8))
    body = And(BVULT(X, y), BVULT(X, BV(10, 8)))
    m = parallel.macro("invariant", [X, y], body)
    other = parallel.macro("invariant", [Symbol("z", BVType(4))], TRUE())
    assert m.symbol != other.symbol
    a, b = Symbol("a", BVType(8)), Symbol("b", BVType(8))
    for step, expected in ((BVAdd(a, BV(1, 8)), Answer.SAT), (a, Answer.UNSAT)):
        query = And(m.apply([a, b]), Not(m.apply([step, b])), BVULT(b, BV(5, 8)))
        text = parallel.script(query, [m])
        assert text.count("(define-fun ") == 1 and m.symbol.symbol_name() in text
        expanded = And(body.substitute({X: a, y: b}), Not(body.substitute({X: step, y: b})),
                       BVULT(b, BV(5, 8)))
        assert solvers.answer(solver, text, 30) == expected
        assert solvers.answer(solver, parallel.script(expanded), 30) == expected
