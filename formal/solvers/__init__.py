"""The one place a solver is made (after pySMT's factory): every solver instance of flushproof,
symbolic execution's path oracle included, comes from `make`, with the run's `Deadline`; every
one-shot answer to an SMT-LIB 2 script comes from `answer`.

A backend is one module of this package that defines `BACKEND` and `answer(script, seconds)`
(formal.solvers.z3, cvc5, yices, bitwuzla); adding one is adding its module to `BACKENDS`
below.  The backends pySMT lacks (yices, bitwuzla) answer SMT-LIB 2 scripts only.
"""

from __future__ import annotations

import importlib
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum

from pysmt.exceptions import SolverReturnedUnknownResultError
from pysmt.shortcuts import Solver

from formal.errors import Malformed

BACKENDS = ("z3", "cvc5", "yices", "bitwuzla")


class Inconclusive(Exception):
    """The solver could not answer (deadline, `unknown`, a solver that failed): the verdict is
    `unknown` with this cause."""


# z3's reasons for `unknown` after Ctrl-C: z3 catches SIGINT itself while it searches, so
# Python sees no KeyboardInterrupt; the interrupt is raised again from its answer.
INTERRUPTED = ("interrupted from keyboard", "canceled")


@contextmanager
def answering(name: str, query: str, deadline: Deadline | None = None,
              solver: object = None) -> Iterator[None]:
    """Solver calls inside give an answer or raise Inconclusive with the cause: "timeout" once
    the deadline has passed, else the solver's `unknown` (with z3's reason, from solver, a
    pySMT or z3 solver) or its failure (any exception a backend raises: a crash, a missing
    library), never a verdict or a traceback.  A z3 search cut short by Ctrl-C raises
    KeyboardInterrupt."""
    try:
        yield
    except Inconclusive:
        raise
    except SolverReturnedUnknownResultError:
        raise unknown(name, query, deadline, reason_unknown(solver)) from None
    except Exception as exc:
        raise Inconclusive(f"{name} failed on {query}: {type(exc).__name__}: "
                           f"{str(exc).splitlines()[0] if str(exc) else 'no message'}") from None


def reason_unknown(solver: object) -> str:
    """z3's reason for its last `unknown` ("" for another backend)."""
    z3_solver = getattr(solver, "z3", solver)
    try:
        return z3_solver.reason_unknown() if hasattr(z3_solver, "reason_unknown") else ""
    except Exception:  # a solver that cannot say: its answer stays `unknown`
        return ""


def unknown(name: str, query: str, deadline: Deadline | None, reason: str) -> Inconclusive:
    """The Inconclusive for an `unknown` answer; raises Inconclusive("timeout") once the
    deadline has passed, and KeyboardInterrupt for a search cut short by Ctrl-C."""
    if deadline is not None:
        deadline.remaining()
    if reason in INTERRUPTED:
        raise KeyboardInterrupt
    return Inconclusive(f"{name} returned unknown on {query}" + (f" ({reason})" if reason else ""))


class Answer(StrEnum):
    SAT = "sat"
    UNSAT = "unsat"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Backend:
    """What flushproof needs to know of a backend."""

    name: str
    timeout_option: str  # the solver option that bounds one query, in milliseconds
    options: dict[str, object] = field(default_factory=dict)
    version: str = "?"
    pysmt: bool = True  # pySMT has it: `make` gives one; else it answers SMT-LIB 2 text only
    # its solvers live in one context (z3's main context), so one term converter serves all
    one_context: bool = False


def backend(name: str) -> Backend:
    return _module(name).BACKEND


def _module(name: str):
    if name not in BACKENDS:
        raise Malformed(f"unknown solver {name!r} (known: {', '.join(BACKENDS)})")
    return importlib.import_module(f"formal.solvers.{name}")


@dataclass
class Deadline:
    """The run's wall-clock limit (None: none), shared by every solver it makes."""

    at: float | None = None

    @classmethod
    def after(cls, seconds: float | None) -> Deadline:
        """seconds from now (None: no deadline; 0 or less has already passed)."""
        return cls(None if seconds is None else time.monotonic() + seconds)

    def remaining(self) -> float | None:
        """Seconds left, None without a deadline; raises Inconclusive once it has passed."""
        if self.at is None:
            return None
        left = self.at - time.monotonic()
        if left <= 0:
            raise Inconclusive("timeout")
        return left


def make(name: str = "z3", deadline: Deadline | None = None, logic: str | None = "QF_BV",
         converters: dict[str, object] | None = None):
    """A pySMT solver of backend `name` with its options; each query it answers is bounded by
    what is left of the deadline when it is made (callers that keep a solver across queries
    check `Deadline.remaining` between them).  Solvers made with one `converters` dict (which
    the caller keeps) share the term converter of a one-context backend, and with it what it
    has converted: queries that share terms (a relation's, an unrolling's prefix) convert them
    once.  The solver itself is fresh: no assertion or learnt clause carries over."""
    b = backend(name)
    if not b.pysmt:
        raise ValueError(f"{name} answers SMT-LIB 2 scripts only (solvers.answer)")
    opts = dict(b.options)
    left = deadline.remaining() if deadline is not None else None
    if left is not None:  # rounded up: the solver gives up after the deadline, not before
        opts[b.timeout_option] = math.ceil(left * 1000)
    solver = Solver(name=name, logic=logic, solver_options=opts)
    if converters is not None and b.one_context:
        solver.converter = converters.setdefault(name, solver.converter)
    return solver


def answer(name: str, script: str, seconds: float | None = None) -> Answer:
    """Backend `name`'s answer to one SMT-LIB 2 script (declarations, assertions, one
    check-sat), in a fresh solver with the backend's options, within `seconds` (None: no
    limit).  Raises Inconclusive when the solver fails (a parse error, a crash)."""
    return _module(name).answer(script, seconds)


def versions() -> dict[str, str]:
    import pysmt
    return {name: backend(name).version for name in BACKENDS} | {"pysmt": pysmt.__version__}


__all__ = ["BACKENDS", "Answer", "Backend", "Deadline", "Inconclusive",
           "SolverReturnedUnknownResultError", "answer", "answering", "backend", "make",
           "reason_unknown", "unknown", "versions"]
