"""IC3/PDR over the bits of the state (Bradley, VMCAI 2011; Een, Mishchenko and Brayton,
FMCAD 2011), the search of `formal.engines.search.pdr`.

A literal is "bit b of state variable v has value x" (a Bool variable is one bit); a cube is a
set of literals over s0, a clause the negation of a cube.  Frame F_0 is the initial states; a
frame F_i (i >= 1) is a set of clauses, each stored once at the highest level at which it is
known to hold (F_i is every clause stored at levels >= i, so F_1 >= F_2 >= ... as clause sets).
The step is `Unroller.trans(1)`, from s0 to s1 with the operands of step 1; a bad step is one
that violates a property or reaches a model error (`Unroller.bad(1, props)`,
`Unroller.error(1)`), over s0 and the same operands.

- Blocking: a cube c is blocked at level i when F_{i-1} & !c & T & c' is unsatisfiable.  The
  literals of c' in the unsat core give a smaller cube, completed with literals of c until it
  excludes every initial state; then literals are dropped one at a time while the cube stays
  blocked and excludes the initial states (inductive generalization), and its clause is stored
  at the highest level at which it is still blocked.  A cube that is not blocked has a
  predecessor in F_{i-1}: a proof obligation one level down, one event longer.
- Lifting: a model of a step gives values to s0 and to the operands; with the operands fixed,
  the literals of s0 in the unsat core of "s0 literals & !(the step is enabled and its successor
  is in the target cube)" (or "& !(the step is bad)") form a cube all of whose states, with
  those operands, step into the target (or take a bad step).  These predecessor sets are exact,
  so an obligation whose cube meets the initial states is a real path to a bad step.
- Propagation: after each new frame every clause of F_i that F_i & T implies on s1 moves to
  F_{i+1}; when a level is left empty, F_i = F_{i+1} is an inductive invariant (it contains the
  initial states, every step keeps it, and no state of it takes a bad step).

The queries go to one incremental z3 solver (frames, initial states and step enabled by
activation literals passed as assumptions, with the cube literals) and a second one for
lifting; every query is bounded by the Checker's deadline.
"""

from __future__ import annotations

import heapq
import itertools
import math
from dataclasses import dataclass

import z3
from pysmt.fnode import FNode
from pysmt.shortcuts import BV, And, BVExtract, EqualsOrIff, Not, Or

from formal import solvers
from formal.engines.checker import Checker
from formal.engines.unroll import Unroller
from formal.solvers import Inconclusive

Lit = tuple[int, bool]  # (index of a state bit in IC3.bits, its value)
Cube = frozenset[Lit]


class Violated(Exception):
    """A proof obligation met the initial states: some initial state takes a bad step after
    `events` - 1 steps (`events` events in all; 0: the first guest entry is bad)."""

    def __init__(self, events: int) -> None:
        super().__init__(f"a bad step after {events} events")
        self.events = events


@dataclass
class Convergence:
    """A converged frame: the conjunction of the negations of `cubes`, over s0, is an inductive
    invariant that excludes every bad step."""

    invariant: FNode
    cubes: list[Cube]
    frame: int  # F_frame = F_{frame+1}
    queries: int


@dataclass(order=True)
class _Obligation:
    level: int
    order: int  # first in, first out within a level
    cube: Cube
    events: int  # events from a state of the cube to the bad step, that one included


class IC3:
    """One run of IC3 on `un`'s relation for `props` (module docstring).  `run` returns the
    invariant, or raises Violated or Inconclusive (the Checker's deadline, z3's unknown)."""

    def __init__(self, un: Unroller, props: tuple[str, ...], ck: Checker) -> None:
        self.ck = ck
        self.queries = 0
        self.s0 = un.state(0)
        s1 = un.state(1)
        self.bits: list[tuple[str, int | None]] = []  # (variable, bit index or None: a Bool)
        for name, var in self.s0.items():
            ty = var.symbol_type()
            self.bits += [(name, None)] if ty.is_bool_type() else \
                [(name, b) for b in range(ty.width)]

        # pysmt's z3 solvers: their converter, and their z3.Solver for the queries (assumptions
        # and unsat cores, which pysmt does not expose).
        self._main = solvers.make("z3", ck.deadline, logic=None)
        self._lifter = solvers.make("z3", ck.deadline, logic=None)
        conv = self._main.converter
        z0 = {n: conv.convert(v) for n, v in self.s0.items()}
        z1 = {n: conv.convert(v) for n, v in s1.items()}
        self.z0 = z0
        p0 = [z3.Bool(f"ic3.s0.{j}") for j in range(len(self.bits))]
        p1 = [z3.Bool(f"ic3.s1.{j}") for j in range(len(self.bits))]
        # Literal (j, v) as an assumption on s0 and on s1, and back from an unsat core.
        self.lit0 = [(z3.Not(p), p) for p in p0]
        self.lit1 = [(z3.Not(p), p) for p in p1]
        self.back0 = {e.get_id(): (j, bool(v)) for j, pair in enumerate(self.lit0)
                      for v, e in enumerate(pair)}
        self.back1 = {e.get_id(): (j, bool(v)) for j, pair in enumerate(self.lit1)
                      for v, e in enumerate(pair)}
        defs = [p == self._bit(z0, j) for j, p in enumerate(p0)] \
            + [p == self._bit(z1, j) for j, p in enumerate(p1)]

        step = un.trans(1)
        bad = Or(un.bad(1, props), un.error(1))
        state_vars = set(self.s0.values()) | set(s1.values())
        self.inputs = [conv.convert(x) for x in sorted(
            (step.get_free_variables() | bad.get_free_variables()) - state_vars, key=str)]
        self.init_act, self.step_act, self.bad = (
            z3.Bool("ic3.init"), z3.Bool("ic3.step"), z3.Bool("ic3.bad"))
        self.init_bad = conv.convert(Or(un.init_bad(props), un.init_error()))
        self.main = self._main.z3
        self.main.add(*defs)
        self.main.add(z3.Implies(self.init_act, conv.convert(un.init())))
        self.main.add(z3.Implies(self.step_act, conv.convert(step)))
        self.main.add(self.bad == conv.convert(bad))

        # The lifter: s1 as the function of s0 and the operands that each event kind defines,
        # and whether the step is enabled, without requiring it.
        self.lift = self._lifter.z3
        self.enabled = z3.Bool("ic3.enabled")
        enabled = []
        for k, er in enumerate(un.events):
            if not er.post:
                continue
            rename = un.renamer(1, er)
            enabled.append(And(un.is_event(1, k), rename(er.steps)))
            self.lift.add(z3.Implies(conv.convert(un.is_event(1, k)), z3.And(
                [z1[n] == conv.convert(rename(t)) for n, t in er.post.items()])))
        self.lift.add(*defs)
        self.lift.add(self.bad == conv.convert(bad))
        self.lift.add(self.enabled == conv.convert(Or(enabled)))

        self.levels: list[set[Cube]] = [set(), set()]  # levels[0] unused: F_0 is Init
        self.acts = [z3.Bool("ic3.f0"), z3.Bool("ic3.f1")]
        self.order = itertools.count()

    def close(self) -> None:
        self._main.exit()
        self._lifter.exit()

    @property
    def k(self) -> int:
        return len(self.levels) - 1

    # -- literals --

    def _bit(self, z: dict[str, z3.ExprRef], j: int) -> z3.BoolRef:
        name, b = self.bits[j]
        return z[name] if b is None else z3.Extract(b, b, z[name]) == 1

    def formula(self, cube: Cube) -> FNode:
        """The cube as a pysmt formula over s0."""
        lits = []
        for j, v in sorted(cube):
            name, b = self.bits[j]
            var = self.s0[name]
            if b is None:
                lits.append(var if v else Not(var))
            else:
                lits.append(EqualsOrIff(BVExtract(var, b, b), BV(int(v), 1)))
        return And(lits)

    def _state(self, m: z3.ModelRef) -> Cube:
        """Every bit of s0 in the model."""
        vals = {n: m.eval(v, model_completion=True) for n, v in self.z0.items()}
        out = []
        for j, (name, b) in enumerate(self.bits):
            v = vals[name]
            out.append((j, z3.is_true(v) if b is None else bool(v.as_long() >> b & 1)))
        return frozenset(out)

    def _on0(self, cube: Cube) -> list[z3.BoolRef]:
        return [self.lit0[j][v] for j, v in sorted(cube)]

    def _on1(self, cube: Cube) -> list[z3.BoolRef]:
        return [self.lit1[j][v] for j, v in sorted(cube)]

    # -- queries --

    def _sat(self, s: z3.Solver, name: str, assumptions: list[z3.BoolRef]) -> bool:
        left = self.ck.remaining()
        # rounded up: z3 gives up after the deadline, so an earlier `canceled` is Ctrl-C
        s.set("timeout", math.ceil(left * 1000) if left else 4294967295)
        self.queries += 1
        with solvers.answering("z3", f"a pdr {name} query", self.ck.deadline):
            r = s.check(*assumptions)
        if r == z3.unknown:
            why = s.reason_unknown()
            if left is not None and why == "timeout":
                raise Inconclusive("timeout")
            raise solvers.unknown("z3", f"a pdr {name} query", self.ck.deadline, why)
        return r == z3.sat

    def _frame(self, i: int) -> list[z3.BoolRef]:
        """The assumptions that select F_i."""
        return [self.init_act] if i == 0 else self.acts[i:]

    def _initial(self, cube: Cube) -> Cube | None:
        """An initial state in the cube (all its bits), or None."""
        if self._sat(self.main, "initiation", [self.init_act, *self._on0(cube)]):
            return self._state(self.main.model())
        return None

    def _relative(self, cube: Cube, i: int) -> Cube | None:
        """None if F_{i-1} & !cube & T & cube' is satisfiable (the model is the solver's),
        else the literals of cube' in the unsat core."""
        if self._sat(self.main, "relative induction", [
                *self._frame(i - 1), self.step_act, z3.Not(z3.And(self._on0(cube))),
                *self._on1(cube)]):
            return None
        core = (self.back1.get(e.get_id()) for e in self.main.unsat_core())
        return frozenset(lit for lit in core if lit is not None)

    def _lifted(self, target: Cube | None) -> Cube:
        """From the main solver's model of a step: the states that, with the model's operands,
        step into target (None: take a bad step), as a cube over s0."""
        m = self.main.model()
        state = self._state(m)
        fixed = [x == m.eval(x, model_completion=True) for x in self.inputs]
        good = z3.Not(self.bad) if target is None else \
            z3.Not(z3.And(self.enabled, *self._on1(target)))
        sat = self._sat(self.lift, "lifting", [*fixed, good, *self._on0(state)])
        assert not sat, "the model's step does not reach its target on the lifter"
        core = (self.back0.get(e.get_id()) for e in self.lift.unsat_core())
        return frozenset(lit for lit in core if lit is not None)

    # -- the algorithm --

    def run(self) -> Convergence:
        if self._sat(self.main, "first entry", [self.init_act, self.init_bad]):
            raise Violated(0)
        while True:
            self.ck.progress(f"pdr frame {self.k}: {self.queries} queries")
            while self._sat(self.main, "bad state", [*self._frame(self.k), self.bad]):
                self._block(self._lifted(None))
            self.levels.append(set())
            self.acts.append(z3.Bool(f"ic3.f{self.k}"))
            done = self._propagate()
            if done is not None:
                cubes = sorted((c for lv in self.levels[done + 1:] for c in lv), key=sorted)
                return Convergence(And([Not(self.formula(c)) for c in cubes]), cubes, done,
                               self.queries)

    def _block(self, bad: Cube) -> None:
        """Block a cube of states that take a bad step, at level k, and every predecessor
        obligation it creates; raises Violated if one meets the initial states."""
        queue = [_Obligation(self.k, next(self.order), bad, 1)]
        while queue:
            ob = heapq.heappop(queue)
            if self._initial(ob.cube) is not None:
                raise Violated(ob.events)
            if not self._sat(self.main, "blocked", [*self._frame(ob.level), *self._on0(ob.cube)]):
                continue  # already excluded from F_level
            core = self._relative(ob.cube, ob.level)
            if core is None:
                if ob.level == 1:
                    raise Violated(ob.events + 1)
                pred = self._lifted(ob.cube)
                heapq.heappush(queue, _Obligation(ob.level - 1, next(self.order), pred,
                                                  ob.events + 1))
                heapq.heappush(queue, ob)
                continue
            cube = self._generalize(self._exclude_init(core, ob.cube), ob.level)
            level = ob.level
            while level < self.k and self._relative(cube, level + 1) is not None:
                level += 1
            self._learn(cube, level)
            if level < self.k:
                heapq.heappush(queue, _Obligation(level + 1, next(self.order), ob.cube,
                                                  ob.events))

    def _exclude_init(self, core: Cube, cube: Cube) -> Cube:
        """core, plus literals of cube (which excludes the initial states) until it excludes
        them too."""
        while (state := self._initial(core)) is not None:
            core |= {next(lit for lit in sorted(cube - core) if lit not in state)}
        return core

    def _generalize(self, core: Cube, level: int) -> Cube:
        """Drop literals of core (a cube blocked at level that excludes the initial states) one
        at a time while it stays so."""
        for lit in sorted(core):
            if lit not in core or len(core) == 1:
                continue
            smaller = core - {lit}
            if self._initial(smaller) is not None:
                continue
            found = self._relative(smaller, level)
            if found is not None:
                core = self._exclude_init(found, smaller)
        return core

    def _learn(self, cube: Cube, level: int) -> None:
        """Store !cube at level (so in F_1..F_level), dropping the stored clauses it
        subsumes."""
        for lv in self.levels[1:level + 1]:
            lv -= {c for c in lv if cube <= c}
        self.levels[level].add(cube)
        self.main.add(z3.Or(z3.Not(self.acts[level]), z3.Not(z3.And(self._on0(cube)))))

    def _propagate(self) -> int | None:
        """Move each clause of F_i that F_i & T implies on s1 up to level i+1, for i = 1 ..
        k-1; the first level left empty (F_i = F_{i+1}), or None."""
        for i in range(1, self.k):
            for cube in sorted(self.levels[i], key=sorted):
                if not self._sat(self.main, "propagation",
                                 [*self._frame(i), self.step_act, *self._on1(cube)]):
                    self.levels[i].discard(cube)
                    self._learn(cube, i + 1)
            if not self.levels[i]:
                return i
        return None


def search(un: Unroller, props: tuple[str, ...], ck: Checker) -> Convergence:
    """Run IC3 (module docstring); raises Violated or Inconclusive."""
    ic3 = IC3(un, props, ck)
    try:
        return ic3.run()
    finally:
        ic3.close()
