"""The one place a solver is made (after pySMT's factory): every solver instance of flushproof,
symbolic execution's path oracle included, comes from `make`, with the run's `Deadline`; every
one-shot answer to an SMT-LIB 2 script comes from `answer`.

A backend is one module of this package that defines `BACKEND` and `answer(script, seconds)`
(formal.solvers.z3, cvc5, yices, bitwuzla); adding one is adding its module to `BACKENDS`
below.  The backends pySMT lacks (yices, bitwuzla) answer SMT-LIB 2 scripts only.
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass, field
from enum import StrEnum

from pysmt.exceptions import SolverReturnedUnknownResultError
from pysmt.shortcuts import Solver

from formal.errors import Malformed

BACKENDS = ("z3", "cvc5", "yices", "bitwuzla")


class Inconclusive(Exception):
    """The solver could not answer (deadline, `unknown`): the verdict is `unknown` with this
    cause."""


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
        return cls(time.monotonic() + seconds if seconds else None)

    def remaining(self) -> float | None:
        """Seconds left, None without a deadline; raises Inconclusive once it has passed."""
        if self.at is None:
            return None
        left = self.at - time.monotonic()
        if left <= 0:
            raise Inconclusive("timeout")
        return left


def make(name: str = "z3", deadline: Deadline | None = None, logic: str | None = "QF_BV"):
    """A pySMT solver of backend `name` with its options; each query it answers is bounded by
    what is left of the deadline when it is made (callers that keep a solver across queries
    check `Deadline.remaining` between them)."""
    b = backend(name)
    if not b.pysmt:
        raise ValueError(f"{name} answers SMT-LIB 2 scripts only (solvers.answer)")
    opts = dict(b.options)
    left = deadline.remaining() if deadline is not None else None
    if left:
        opts[b.timeout_option] = max(1, int(left * 1000))
    return Solver(name=name, logic=logic, solver_options=opts)


def answer(name: str, script: str, seconds: float | None = None) -> Answer:
    """Backend `name`'s answer to one SMT-LIB 2 script (declarations, assertions, one
    check-sat), in a fresh solver with the backend's options, within `seconds` (None: no
    limit).  Raises Inconclusive when the solver fails (a parse error, a crash)."""
    return _module(name).answer(script, seconds)


def versions() -> dict[str, str]:
    import pysmt
    return {name: backend(name).version for name in BACKENDS} | {"pysmt": pysmt.__version__}


__all__ = ["BACKENDS", "Answer", "Backend", "Deadline", "Inconclusive",
           "SolverReturnedUnknownResultError", "answer", "backend", "make", "versions"]
