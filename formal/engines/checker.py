"""One-shot satisfiability queries for the engines, through the solver seam (formal.solvers)."""

from __future__ import annotations

from pathlib import Path

from pysmt.fnode import FNode
from pysmt.smtlib.script import smtlibscript_from_formula

from formal import solvers
from formal.solvers import Deadline, Inconclusive


class Checker:
    """One-shot satisfiability queries of one backend, each bounded by the run's deadline and
    optionally written out as an SMT-LIB 2 file (--dump-smt DIR).  `with_backend` gives a
    checker of another backend on the same deadline and dump directory (the re-checker)."""

    def __init__(self, solver_name: str = "z3", timeout: float | None = None,
                 dump_dir: Path | None = None, deadline: Deadline | None = None) -> None:
        self.solver_name = solver_name
        self.deadline = deadline if deadline is not None else Deadline.after(timeout)
        self.dump_dir = dump_dir
        self.count = 0
        if dump_dir is not None:
            dump_dir.mkdir(parents=True, exist_ok=True)

    def with_backend(self, solver_name: str) -> Checker:
        return Checker(solver_name, dump_dir=self.dump_dir, deadline=self.deadline)

    def remaining(self) -> float | None:
        return self.deadline.remaining()

    def dump(self, name: str, formula: FNode) -> Path | None:
        if self.dump_dir is None:
            return None
        self.count += 1
        path = self.dump_dir / f"{self.count:03d}-{name}.smt2"
        with path.open("w") as out:
            smtlibscript_from_formula(formula, logic="QF_BV").serialize(out, daggify=True)
        return path

    def sat(self, name: str, formula: FNode, model_of: list[FNode] | None = None):
        """Is formula satisfiable?  Returns None if not, else a dict of the values of
        model_of (or True when none are asked for)."""
        self.dump(name, formula)
        try:
            with solvers.make(self.solver_name, self.deadline) as s:
                s.add_assertion(formula)
                if not s.solve():
                    return None
                if not model_of:
                    return True
                return {n: s.get_value(n).constant_value() for n in model_of}
        except solvers.SolverReturnedUnknownResultError:
            self.remaining()
            raise Inconclusive(f"{self.solver_name} returned unknown on {name}") from None
