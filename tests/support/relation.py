"""The relation evaluated at one concrete state, for the agreement tests of the two
executions (symbolic and concrete)."""

from __future__ import annotations

from pysmt.fnode import FNode
from pysmt.shortcuts import And, EqualsOrIff

from formal import solvers
from formal.engines.system import Relation
from formal.model import events as ev
from formal.model.properties import ModelError
from formal.model.state import HwTlb, Vcpu
from formal.symbolic.execution import const, get_leaf, leaves


def watching(v: Vcpu, tag: int) -> Vcpu:
    """A concrete state as the relation sees it when it watches tag: each hardware context
    keeps only its record under tag (a clean one if it has none, formal.state.HwTlb)."""
    w = v.clone()
    w.hw = [[next((r for r in records if r.tag == tag), HwTlb(tag=tag))]
            for records in w.hw]
    return w


def evaluate(rel: Relation, v: Vcpu, e: ev.Event, tag: int) -> tuple[bool, dict[str, object],
                                                                     dict[str, bool]]:
    """The relation at one concrete state, watching one tag (watching), and one event: whether
    the event steps, the successor's variables and the violated properties.  The concrete
    simulator must agree (tests)."""
    values = {n: get_leaf(o, k) for n, o, k in leaves(watching(v, tag))}
    er = next(x for x in rel.events if x.name == e.op)
    m: dict[FNode, FNode] = {rel.pre[n]: const(values[n]) for n in rel.names}
    for f, var in er.ops.items():
        m[var] = const(getattr(e, f))

    with solvers.make("z3") as s:
        s.add_assertion(And([EqualsOrIff(var, value) for var, value in m.items()]))
        if not s.solve():
            raise ModelError("the relation's variables cannot take the concrete values")

        def val(term: FNode) -> object:
            return s.get_value(term).constant_value()

        steps = bool(val(er.steps))
        post = {n: val(t) for n, t in er.post.items()} if steps else {}
        return steps, post, {p: bool(val(t)) for p, t in er.violated.items()}
