"""One-shot satisfiability queries for the engines, through the solver seam (formal.solvers)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from pysmt.fnode import FNode
from pysmt.smtlib.script import smtlibscript_from_formula

from formal import solvers
from formal.solvers import Deadline


class Checker:
    """One-shot satisfiability queries of one backend, each bounded by the run's deadline and
    optionally written out as an SMT-LIB 2 file (--dump-smt DIR, which the caller created).
    `with_backend` gives a checker of another backend on the same deadline and dump directory
    (the re-checker).  A dump that cannot be written is not a reason to lose the proof: the
    first failure is kept in `dump_failures` (shared with the re-checker) and dumping stops."""

    def __init__(self, solver_name: str = "z3", timeout: float | None = None,
                 dump_dir: Path | None = None, deadline: Deadline | None = None,
                 dump_failures: list[str] | None = None) -> None:
        self.solver_name = solver_name
        self.deadline = deadline if deadline is not None else Deadline.after(timeout)
        self.dump_dir = dump_dir
        self.count = 0
        self.dump_failures = dump_failures if dump_failures is not None else []

    def with_backend(self, solver_name: str) -> Checker:
        return Checker(solver_name, dump_dir=self.dump_dir, deadline=self.deadline,
                       dump_failures=self.dump_failures)

    def remaining(self) -> float | None:
        return self.deadline.remaining()

    def dump(self, name: str, formula: FNode) -> Path | None:
        """formula as an SMT-LIB 2 file of the dump directory, written whole or not at all (a
        temporary file renamed); None when there is no directory or the write failed."""
        if self.dump_dir is None or self.dump_failures:
            return None
        self.count += 1
        path = self.dump_dir / f"{self.count:03d}-{name}.smt2"
        tmp = None
        try:
            fd, tmp = tempfile.mkstemp(dir=self.dump_dir, prefix=f".{path.name}.")
            with os.fdopen(fd, "w") as out:
                smtlibscript_from_formula(formula, logic="QF_BV").serialize(out, daggify=True)
            os.replace(tmp, path)
        except OSError as exc:
            self.dump_failures.append(f"{path}: {exc.strerror or exc}")
            return None
        finally:
            if tmp is not None and os.path.exists(tmp):
                os.unlink(tmp)
        return path

    def sat(self, name: str, formula: FNode, model_of: list[FNode] | None = None):
        """Is formula satisfiable?  Returns None if not, else a dict of the values of
        model_of (or True when none are asked for)."""
        self.dump(name, formula)
        with solvers.answering(self.solver_name, name, self.deadline), \
                solvers.make(self.solver_name, self.deadline) as s, \
                solvers.answering(self.solver_name, name, self.deadline, s):
            s.add_assertion(formula)
            if not s.solve():
                return None
            if not model_of:
                return True
            return {n: s.get_value(n).constant_value() for n in model_of}
