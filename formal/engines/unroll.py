"""The transition system as SMT formulas over numbered copies of the state (docs/design.md §6).

Step i (i >= 1) takes state s{i-1} to s{i} by the event whose index is sel{i}, with that event's
operands e{i}.<op>.<field>.  A property is checked at the guest entry that ends a step, so a
violation is a predicate of the step (bad(i)), and of the initial state for the first entry
(init_bad).
"""

from __future__ import annotations

from collections.abc import Callable

from pysmt.environment import get_env
from pysmt.fnode import FNode
from pysmt.shortcuts import BV, FALSE, TRUE, And, EqualsOrIff, Ite, Or, Symbol
from pysmt.substituter import MGSubstituter
from pysmt.typing import BVType

from formal.engines.system import EventRelation, Relation

SEL_WIDTH = 8


def renaming(m: dict[FNode, FNode]) -> Callable[[FNode], FNode]:
    """term -> term with each key of m replaced by its value, by one walker that keeps what it
    has renamed: terms renamed by one map (an event's, a step's) share most of their subterms,
    and pySMT's own `substitute` walks each term whole and checks every entry of m on every
    call (26 M membership tests in a nested houdini run, docs/performance.md).  m is checked
    once here and must not change afterwards."""
    walker = MGSubstituter(get_env())
    walker.invalidate_memoization = False
    walker.substitute(TRUE(), m)
    return lambda term: walker.walk(term, substitutions=m, interpretations={})


class Unroller:
    """Instantiates a Relation at each step."""

    def __init__(self, rel: Relation) -> None:
        self.rel = rel
        self.events = [e for e in rel.events]
        self._pre = rel.pre
        self._renamers: dict[tuple[int, str | None], Callable[[FNode], FNode]] = {}

    # -- variables --

    def state(self, i: int) -> dict[str, FNode]:
        return {name: Symbol(f"s{i}.{name}", node.symbol_type())
                for name, node in self._pre.items()}

    def sel(self, i: int) -> FNode:
        return Symbol(f"sel{i}", BVType(SEL_WIDTH))

    def ops(self, i: int, er: EventRelation) -> dict[str, FNode]:
        return {f: Symbol(f"e{i}.{er.name}.{f}", var.symbol_type())
                for f, var in er.ops.items()}

    def substitution(self, i: int, er: EventRelation | None) -> dict[FNode, FNode]:
        """Pre-state variables -> s{i-1}, operands -> step i's."""
        m: dict[FNode, FNode] = {}
        for name, var in self.state(i - 1).items():
            m[self._pre[name]] = var
        if er is not None:
            for f, var in self.ops(i, er).items():
                m[er.ops[f]] = var
        return m

    def path_vars(self, depth: int) -> list[FNode]:
        """What a counterexample of depth events assigns: s0, and each step's selector and
        every kind's operands."""
        out = list(self.state(0).values())
        for i in range(1, depth + 1):
            out.append(self.sel(i))
            for er in self.events:
                out += list(self.ops(i, er).values())
        return out

    def is_event(self, i: int, k: int) -> FNode:
        return EqualsOrIff(self.sel(i), BV(k, SEL_WIDTH))

    # -- formulas --

    def init(self) -> FNode:
        """The initial states, over s0."""
        return self.rel.init.substitute(self.substitution(1, None))

    def init_bad(self, props: tuple[str, ...]) -> FNode:
        m = self.substitution(1, None)
        return Or([self.rel.init_violated[p].substitute(m) for p in props]).simplify()

    def init_error(self) -> FNode:
        """The first guest entry reaches a model error, over s0."""
        return self.rel.init_error.substitute(self.substitution(1, None))

    def renamer(self, i: int, er: EventRelation | None) -> Callable[[FNode], FNode]:
        """The terms of er (or of the initial states) at step i (substitution), renamed by
        one walker per (i, er) for the unroller's life."""
        key = (i, er.name if er is not None else None)
        if key not in self._renamers:
            self._renamers[key] = renaming(self.substitution(i, er))
        return self._renamers[key]

    def trans(self, i: int) -> FNode:
        """Step i: some event whose guard holds, and s{i} its successor."""
        enabled, nxt = [], self.state(i)
        posts: dict[str, FNode | None] = {name: None for name in nxt}
        for k, er in reversed(list(enumerate(self.events))):
            if not er.post:
                continue
            rename = self.renamer(i, er)
            enabled.append(And(self.is_event(i, k), rename(er.steps)))
            for name in nxt:
                term = rename(er.post[name])
                prev = posts[name]
                posts[name] = term if prev is None else Ite(self.is_event(i, k), term, prev)
        eqs = [EqualsOrIff(nxt[n], t) for n, t in posts.items() if t is not None]
        return And([Or(enabled)] + eqs)

    def trans_event(self, i: int, k: int) -> FNode:
        """Step i by event kind k (its guard, and s{i} its successor)."""
        er, nxt = self.events[k], self.state(i)
        rename = self.renamer(i, er)
        return And([rename(er.steps)] + [EqualsOrIff(nxt[n], rename(er.post[n])) for n in nxt])

    def bad(self, i: int, props: tuple[str, ...]) -> FNode:
        """Step i violates one of props."""
        return Or([self.bad_event(i, k, props) for k in range(len(self.events))]).simplify()

    def bad_event(self, i: int, k: int, props: tuple[str, ...]) -> FNode:
        er = self.events[k]
        rename = self.renamer(i, er)
        return And(self.is_event(i, k), rename(er.steps),
                   Or([rename(er.violated[p]) for p in props]))

    def error(self, i: int) -> FNode:
        """Step i reaches a model error (a spec and the architecture disagree)."""
        out = []
        for k, er in enumerate(self.events):
            if er.model_error.is_false():
                continue
            m = self.substitution(i, er)
            out.append(And(self.is_event(i, k), er.model_error.substitute(m)))
        return Or(out) if out else FALSE()
