"""A certificate's queries answered on several processes.  pySMT terms do not pickle, and
building and printing a query costs more than yices takes to answer it (docs/performance.md):
so the workers are forked after the queries' builders are set here, inherit them, and each
builds its query, prints it as SMT-LIB 2 and hands the text to the solver (formal.solvers.
answer).  Only a query's index goes to a worker and only its answer comes back."""

from __future__ import annotations

import io
import multiprocessing
import os
import signal
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

from pysmt.fnode import FNode
from pysmt.logics import QF_BV
from pysmt.smtlib.script import smtlibscript_from_formula

from formal import solvers
from formal.solvers import Answer, Deadline, Inconclusive

# The workers inherit the queries by fork (Linux, macOS); elsewhere the re-check is sequential.
AVAILABLE = "fork" in multiprocessing.get_all_start_methods()

_QUERIES: Sequence[tuple[str, Callable[[], FNode]]] = ()  # what the next pool's workers inherit


def script(formula: FNode) -> str:
    """formula as an SMT-LIB 2 script: declarations, one assertion, check-sat."""
    out = io.StringIO()
    smtlibscript_from_formula(formula, logic=QF_BV).serialize(out, daggify=True)
    return out.getvalue()


def _start_worker() -> None:
    # A worker and the solver processes it starts (yices) form one process group, which
    # _stop kills at once.
    os.setpgrp()


def _answer(i: int, solver: str, seconds: float | None, dump: Path | None) -> Answer:
    text = script(_QUERIES[i][1]())
    if dump is not None:
        try:
            dump.write_text(text)
        except OSError:  # a dump is for the reader; its failure does not change the answer
            pass
    return solvers.answer(solver, text, seconds)


def first_sat(solver: str, queries: Sequence[tuple[str, Callable[[], FNode]]], jobs: int,
              deadline: Deadline, dumps: Sequence[Path | None],
              done: Callable[[int], None]) -> str | None:
    """The name of a query `solver` finds satisfiable, None when it answers unsat to all;
    asked on `jobs` forked workers, `done(n)` after each answer.  An `unknown`, a solver's
    failure, a worker's death or the deadline raises Inconclusive naming the query."""
    global _QUERIES
    _QUERIES = queries
    pool = ProcessPoolExecutor(jobs, multiprocessing.get_context("fork"),
                               initializer=_start_worker)
    finished = False
    try:
        pending: dict[Future[Answer], int] = {}
        for i in range(len(queries)):
            pending[pool.submit(_answer, i, solver, deadline.remaining(), dumps[i])] = i
        done(0)
        answered = 0
        while pending:
            ready, _ = wait(pending, timeout=deadline.remaining(), return_when=FIRST_COMPLETED)
            for future in ready:
                name = queries[pending.pop(future)][0]
                try:
                    got = future.result()
                except BrokenProcessPool:
                    raise Inconclusive(f"a re-check worker died (asking {name} or a query "
                                       "beside it)") from None
                except Inconclusive as exc:
                    raise Inconclusive(f"{exc} (query {name})") from None
                if got is Answer.SAT:
                    return name
                if got is Answer.UNKNOWN:
                    deadline.remaining()
                    raise Inconclusive(f"{solver} returned unknown on recheck-{name}")
                answered += 1
                done(answered)
        finished = True
        return None
    finally:
        if not finished:
            _stop(pool)
        pool.shutdown(wait=True, cancel_futures=True)
        _QUERIES = ()


def _stop(pool: ProcessPoolExecutor) -> None:
    """Kill the workers and their solvers now: nothing they answer is needed any more.
    (ProcessPoolExecutor has no public way to do it before Python 3.14.)"""
    for proc in list((pool._processes or {}).values()):
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the worker's group: it and its solver
        except (ProcessLookupError, PermissionError):  # not yet a group of its own
            proc.kill()
