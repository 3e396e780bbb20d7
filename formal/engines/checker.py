"""One-shot satisfiability queries for the engines, through the solver seam (formal.solvers),
and the re-check of a certificate by a solver of another code base than the search's."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from pysmt.fnode import FNode

from formal import solvers
from formal.engines import parallel
from formal.engines.progress import Progress
from formal.errors import Malformed
from formal.solvers import Answer, Deadline

# The search engines' solver.
SEARCH = "z3"
# The solvers that may re-check a certificate: every backend but the search's (a `proved` needs
# a second code base's unsat on each of its queries).  The first is the default: the fastest
# measured (docs/performance.md).
CHECKERS = ("yices", "bitwuzla", "cvc5")
# Seconds a re-checker may spend on one query before the next of the chain is asked it.
RECHECK_SLICE = 10.0

# A certificate query, named, and built when it is asked (in the worker that asks it).
Query = tuple[str, Callable[[], FNode]]


class Checker:
    """One-shot satisfiability queries of one backend, each bounded by the run's deadline and
    optionally written out as an SMT-LIB 2 file (--dump-smt DIR, which the caller created).
    `recheck` asks a certificate's queries of the re-checker (`checker`) on `jobs` processes
    (default: one per core); bmc's depths are asked of `decider`.  A dump that cannot be
    written is not a reason to lose the proof: the first failure is kept in `dump_failures`
    and dumping stops."""

    def __init__(self, solver_name: str = SEARCH, timeout: float | None = None,
                 dump_dir: Path | None = None, deadline: Deadline | None = None,
                 checker: str = CHECKERS[0], jobs: int | None = None,
                 progress: Progress | None = None,
                 dump_failures: list[str] | None = None, decider: str = SEARCH) -> None:
        if checker not in CHECKERS:
            raise Malformed(f"{checker!r} cannot re-check certificates (known: "
                            f"{', '.join(CHECKERS)}; not {SEARCH}, the search's solver)")
        if jobs is not None and jobs < 1:
            raise Malformed(f"jobs must be >= 1, got {jobs}")
        self.solver_name = solver_name
        # The solver that answers bmc's "is there a violation at this depth?" (engines.search.
        # bmc and depths); a satisfiable depth's model still comes from solver_name.
        self.decider = decider
        self.deadline = deadline if deadline is not None else Deadline.after(timeout)
        self.dump_dir = dump_dir
        self.checker = checker
        self.jobs = jobs or os.cpu_count() or 1
        self.progress = progress or Progress()
        self.count = 0
        self.dump_failures = dump_failures if dump_failures is not None else []
        self.rechecked_by: dict[str, int] = {}
        # the term converters of this checker's solvers (solvers.make): a relation's terms
        # are converted for its first query only
        self.converters: dict[str, object] = {}

    def remaining(self) -> float | None:
        return self.deadline.remaining()

    def _dump_path(self, name: str) -> Path | None:
        if self.dump_dir is None or self.dump_failures:
            return None
        self.count += 1
        return self.dump_dir / f"{self.count:03d}-{name}.smt2"

    def _write(self, path: Path | None, text: str) -> None:
        """text to path whole or not at all (a temporary file renamed); a failure is kept."""
        if path is None or self.dump_failures:
            return
        tmp = None
        try:
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
            with os.fdopen(fd, "w") as out:
                out.write(text)
            os.replace(tmp, path)
        except OSError as exc:
            self.dump_failures.append(f"{path}: {exc.strerror or exc}")
        finally:
            if tmp is not None and os.path.exists(tmp):
                os.unlink(tmp)

    def dump(self, name: str, formula: FNode) -> Path | None:
        """formula as an SMT-LIB 2 file of the dump directory; None when there is no directory
        or the write failed."""
        path = self._dump_path(name)
        if path is not None:
            self._write(path, parallel.script(formula))
        return None if self.dump_failures else path

    def sat(self, name: str, formula: FNode, model_of: list[FNode] | None = None,
            solver: str | None = None):
        """Is formula satisfiable (to `solver`, default this checker's)?  Returns None if not,
        else a dict of the values of model_of (or True when none are asked for)."""
        solver = solver or self.solver_name
        path = self._dump_path(name)
        pysmt = solvers.backend(solver).pysmt
        text = parallel.script(formula) if path is not None or not pysmt else None
        if path is not None:
            self._write(path, text)
        if not pysmt:
            if model_of:
                raise ValueError(f"{solver} gives no models here")
            got = solvers.answer(solver, text, self.remaining())
            if got is Answer.UNKNOWN:
                raise solvers.unknown(solver, name, self.deadline, "")
            return True if got is Answer.SAT else None
        with solvers.answering(solver, name, self.deadline), \
                solvers.make(solver, self.deadline, converters=self.converters) as s, \
                solvers.answering(solver, name, self.deadline, s):
            s.add_assertion(formula)
            if not s.solve():
                return None
            if not model_of:
                return True
            return {n: s.get_value(n).constant_value() for n in model_of}

    def chain(self) -> tuple[str, ...]:
        """The re-checkers in the order they are asked: the chosen one, then the others."""
        return (self.checker,) + tuple(c for c in CHECKERS if c != self.checker)

    def recheck(self, queries: Sequence[Query],
                macros: Sequence[parallel.Macro] = ()) -> str | None:
        """Asks every query of the re-checkers (`chain`: a query the first does not answer
        within RECHECK_SLICE seconds goes to the next); returns the name of one found
        satisfiable (the certificate is rejected), None when each is answered unsat, counting
        in `self.rechecked_by` the queries each solver answered.  Raises Inconclusive on an
        `unknown` of every re-checker, a failed solver or worker, or the deadline: never a
        silent pass.  The queries may apply macros (each script defines those it applies)."""
        what = f"re-check by {self.checker}"
        chain = self.chain()
        self.rechecked_by = {}
        if self.jobs == 1 or len(queries) < 2 or not parallel.AVAILABLE:
            for i, (name, build) in enumerate(queries):
                self.progress(f"{what}: {i} of {len(queries)} queries")
                text = parallel.script(build(), macros)
                self._write(self._dump_path(f"recheck-{name}"), text)
                got, solver = parallel.ask(chain, text, self.deadline, RECHECK_SLICE)
                if got is Answer.SAT:
                    return name
                if got is Answer.UNKNOWN:
                    raise solvers.unknown(", ".join(chain), f"recheck-{name}", self.deadline,
                                          "")
                self.rechecked_by[solver] = self.rechecked_by.get(solver, 0) + 1
            return None
        paths = [self._dump_path(f"recheck-{name}") for name, _ in queries]
        return parallel.first_sat(chain, queries, self.jobs, self.deadline, RECHECK_SLICE,
                                  paths, lambda done: self.progress(
                                      f"{what} ({self.jobs} workers): {done} of "
                                      f"{len(queries)} queries"), self.rechecked_by, macros)

    def answered_by(self) -> str:
        """Which re-checkers answered the last re-check's queries, in words."""
        if set(self.rechecked_by) <= {self.checker}:
            return self.checker
        return " and ".join(f"{s} ({n} queries)" for s, n in self.rechecked_by.items())
