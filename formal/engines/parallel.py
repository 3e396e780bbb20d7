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
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pysmt.environment import get_env
from pysmt.fnode import FNode
from pysmt.logics import QF_BV
from pysmt.shortcuts import Function
from pysmt.smtlib import commands as smtcmd
from pysmt.smtlib.script import SmtLibCommand, smtlibscript_from_formula
from pysmt.typing import BOOL, FunctionType

from formal import solvers
from formal.solvers import Answer, Deadline, Inconclusive

# The workers inherit the queries by fork (Linux, macOS); elsewhere the re-check is sequential.
AVAILABLE = "fork" in multiprocessing.get_all_start_methods()



@dataclass(frozen=True)
class Macro:
    """A Boolean function of a state, written once as an SMT-LIB 2 `define-fun` (text) and
    applied by name in the queries (apply): a certificate's invariant, which every query
    asserts of the state and the consecution queries of its successor.  Substituted and
    printed in full at each application instead, it cost more than yices' answer
    (docs/performance.md)."""

    symbol: FNode  # the function symbol the queries apply; `script` defines it
    text: str

    def apply(self, args: Sequence[FNode]) -> FNode:
        return Function(self.symbol, list(args))


def macro(name: str, params: Sequence[FNode], body: FNode) -> Macro:
    """body over the symbols params as a function of their values, named name and a number
    that no other symbol has."""
    fresh = get_env().formula_manager.FreshSymbol  # pySMT's symbols are global, by name
    formals = [fresh(v.symbol_type(), f"{name}.p%d") for v in params]
    body = body.substitute(dict(zip(params, formals, strict=True)))
    symbol = fresh(FunctionType(BOOL, [v.symbol_type() for v in params]), f"{name}%d")
    text = SmtLibCommand(smtcmd.DEFINE_FUN, [symbol.symbol_name(), formals, BOOL, body]) \
        .serialize_to_string(daggify=True)
    return Macro(symbol, text)


# what the next pool's workers inherit: the queries' builders, and the macros they apply
_QUERIES: Sequence[tuple[str, Callable[[], FNode]]] = ()
_MACROS: Sequence[Macro] = ()


def script(formula: FNode, macros: Sequence[Macro] = ()) -> str:
    """formula as an SMT-LIB 2 script: declarations, one assertion, check-sat; the function
    symbol of each of macros that formula applies is defined (its define-fun) rather than
    declared."""
    defined = {m.symbol: m.text for m in macros}
    out = io.StringIO()
    for cmd in smtlibscript_from_formula(formula, logic=QF_BV).commands:
        if cmd.name == smtcmd.DECLARE_FUN and cmd.args[0] in defined:
            out.write(defined[cmd.args[0]])
        else:
            cmd.serialize(out, daggify=True)
        out.write("\n")
    return out.getvalue()


def _start_worker() -> None:
    # A worker and the solver processes it starts (yices) form one process group, which
    # _stop kills at once.
    os.setpgrp()


def ask(chain: Sequence[str], text: str, deadline: Deadline,
        slice_seconds: float) -> tuple[Answer, str]:
    """The first answer other than `unknown` that a solver of chain gives to one SMT-LIB 2
    script, and which solver gave it: each but the last may take slice_seconds (yices answers
    nearly every certificate query in well under a second, but a rare one not in minutes:
    docs/performance.md), the last what is left of the deadline.  (UNKNOWN, last) when none
    answers; a solver's failure raises Inconclusive."""
    got = Answer.UNKNOWN
    for k, solver in enumerate(chain):
        left = deadline.remaining()
        seconds = left if k == len(chain) - 1 else \
            (slice_seconds if left is None else min(left, slice_seconds))
        got = solvers.answer(solver, text, seconds)
        if got is not Answer.UNKNOWN:
            return got, solver
    return got, chain[-1]


def _answer(i: int, chain: Sequence[str], deadline: Deadline, slice_seconds: float,
            dump: Path | None) -> tuple[Answer, str]:
    text = script(_QUERIES[i][1](), _MACROS)
    if dump is not None:
        try:
            dump.write_text(text)
        except OSError:  # a dump is for the reader; its failure does not change the answer
            pass
    return ask(chain, text, deadline, slice_seconds)


def first_sat(chain: Sequence[str], queries: Sequence[tuple[str, Callable[[], FNode]]],
              jobs: int, deadline: Deadline, slice_seconds: float,
              dumps: Sequence[Path | None], done: Callable[[int], None],
              by: dict[str, int], macros: Sequence[Macro] = ()) -> str | None:
    """The name of a query a solver of chain finds satisfiable, None when each query is
    answered unsat (ask; `by` counts the queries each solver answered); asked on `jobs` forked
    workers, `done(n)` after each answer; the queries may apply macros.  An `unknown` of
    every solver of the chain, a solver's failure, a worker's death or the deadline raises
    Inconclusive naming the query."""
    global _QUERIES, _MACROS
    _QUERIES, _MACROS = queries, macros
    pool = ProcessPoolExecutor(jobs, multiprocessing.get_context("fork"),
                               initializer=_start_worker)
    finished = False
    try:
        pending: dict[Future[tuple[Answer, str]], int] = {}
        for i in range(len(queries)):
            pending[pool.submit(_answer, i, chain, deadline, slice_seconds, dumps[i])] = i
        done(0)
        answered = 0
        while pending:
            ready, _ = wait(pending, timeout=deadline.remaining(), return_when=FIRST_COMPLETED)
            for future in ready:
                name = queries[pending.pop(future)][0]
                try:
                    got, solver = future.result()
                except BrokenProcessPool:
                    raise Inconclusive(f"a re-check worker died (asking {name} or a query "
                                       "beside it)") from None
                except Inconclusive as exc:
                    raise Inconclusive(f"{exc} (query {name})") from None
                if got is Answer.SAT:
                    return name
                if got is Answer.UNKNOWN:
                    deadline.remaining()
                    raise Inconclusive(f"{', '.join(chain)} returned unknown on "
                                       f"recheck-{name}")
                by[solver] = by.get(solver, 0) + 1
                answered += 1
                done(answered)
        finished = True
        return None
    finally:
        if not finished:
            _stop(pool)
        pool.shutdown(wait=True, cancel_futures=True)
        _QUERIES, _MACROS = (), ()


@contextmanager
def beside(items: Callable[[], Iterable[object]]) -> Iterator[Callable[[], object | None]]:
    """Runs items() in a forked process while the caller goes on: yields `next_item()`, which
    waits for the next item it produced (None after the last).  Its
    Inconclusive (a solver's `unknown`, the deadline) is raised again in the caller, its death
    or failure as Inconclusive; leaving the block kills it (and its solvers) at once."""
    ctx = multiprocessing.get_context("fork")
    receiver, sender = ctx.Pipe(duplex=False)

    def produce() -> None:
        _start_worker()
        try:
            for item in items():
                sender.send(("item", item))
            sender.send(("end", None))
        except Inconclusive as exc:
            sender.send(("inconclusive", str(exc)))
        except Exception as exc:  # reported to the caller as the reason, never a verdict
            sender.send(("inconclusive", f"the background worker failed: "
                                         f"{type(exc).__name__}: {exc}"))

    proc = ctx.Process(target=produce, daemon=True)
    proc.start()
    sender.close()

    def next_item() -> object | None:
        try:
            kind, item = receiver.recv()
        except EOFError:
            raise Inconclusive("the background worker died") from None
        if kind == "end":
            return None
        if kind == "inconclusive":
            raise Inconclusive(item)
        return item

    try:
        yield next_item
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):  # gone, or not yet a group of its own
            proc.kill()
        proc.join()
        receiver.close()


def _stop(pool: ProcessPoolExecutor) -> None:
    """Kill the workers and their solvers now: nothing they answer is needed any more.
    (ProcessPoolExecutor has no public way to do it before Python 3.14.)"""
    for proc in list((pool._processes or {}).values()):
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the worker's group: it and its solver
        except (ProcessLookupError, PermissionError):  # not yet a group of its own
            proc.kill()
