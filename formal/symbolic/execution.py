"""Symbolic execution of the model's Python code (docs/design.md §6: one policy text).

Values are `Sym`: a pySMT term behind Python's operators.  Bit-vector state is 64 bits wide
throughout, so masks and shifts mean what they mean on ints.  A Python branch on a symbolic
condition (`if`, `and`, `or`, `not`, a conditional expression) asks the path `Oracle`; `explore`
re-executes a function once per feasible decision sequence and returns every path with its path
condition.  Infeasible branches are cut with a solver, so the paths of one run are exhaustive and
mutually exclusive.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, fields, replace
from typing import Any

from pysmt.environment import get_env
from pysmt.fnode import FNode
from pysmt.shortcuts import (
    BV,
    BVULE,
    BVULT,
    FALSE,
    And,
    Bool,
    BVAdd,
    BVAnd,
    BVLShl,
    BVLShr,
    BVNot,
    BVOr,
    BVSub,
    BVXor,
    Equals,
    Iff,
    Ite,
    Not,
    Or,
    Symbol,
)
from pysmt.substituter import MGSubstituter
from pysmt.typing import BOOL, BVType

from formal import solvers
from formal.model.values import EXECUTION, SymbolicValue, ite

WIDTH = 64
BV64 = BVType(WIDTH)
_MOD = 1 << WIDTH


class SymbolicError(TypeError):
    """Model code did something symbolic execution cannot follow (e.g. a symbolic index)."""


def const(value: Any) -> FNode:
    """The pySMT term of a Python or symbolic value."""
    if isinstance(value, Sym):
        return value.node
    if isinstance(value, bool):
        return Bool(value)
    if isinstance(value, int):
        return BV(value % _MOD, WIDTH)
    raise SymbolicError(f"cannot turn {type(value).__name__} into a term")


def _bv(value: Any) -> FNode:
    node = const(value)
    if node.get_type().is_bool_type():
        return Ite(node, BV(1, WIDTH), BV(0, WIDTH))
    return node


def _distribute(op, node: FNode, k: FNode) -> FNode:
    """op(node, k) for a constant k, pushed through the if-then-else tree of node so that a
    tree of constants folds (requests serviced on every merged path become a plain 0).  Walked
    with an explicit stack and each shared subtree done once: the trees of a product relation
    are deeper than Python's recursion limit (F5's fix over v6.6 in nested-npt) and share
    subtrees."""
    done: dict[FNode, FNode] = {}
    stack = [node]
    while stack:
        n = stack[-1]
        if n in done:
            stack.pop()
            continue
        if n.is_ite():
            c, a, b = n.args()
            waiting = [x for x in (a, b) if x not in done]
            if waiting:
                stack.extend(waiting)
                continue
            done[n] = Ite(c, done[a], done[b]).simplify()
        else:
            done[n] = op(n, k).simplify()
        stack.pop()
    return done[node]


def _shift(amount: Any) -> FNode:
    if isinstance(amount, Sym):
        return _bv(amount)
    return BV(amount, WIDTH)


class Sym(SymbolicValue):
    """A symbolic bit-vector or boolean."""

    __slots__ = ("node",)

    def __init__(self, node: FNode) -> None:
        self.node = node

    @property
    def is_bool(self) -> bool:
        return self.node.get_type().is_bool_type()

    # -- bit-vector and boolean operators --

    def _bin(self, other: Any, bv_op, bool_op) -> Sym:
        if self.is_bool and (isinstance(other, bool) or isinstance(other, Sym) and other.is_bool):
            return Sym(bool_op(self.node, const(other)).simplify())
        other_node = _bv(other)
        if other_node.is_constant():
            return Sym(_distribute(bv_op, _bv(self), other_node))
        return Sym(bv_op(_bv(self), other_node).simplify())

    def __and__(self, other: Any) -> Any:
        if self.is_bool and (other is False or other is True):  # keep decided values concrete
            return False if other is False else self
        return self._bin(other, BVAnd, And)

    def __or__(self, other: Any) -> Any:
        if self.is_bool and (other is False or other is True):
            return True if other is True else self
        return self._bin(other, BVOr, Or)

    def __xor__(self, other: Any) -> Sym:
        return self._bin(other, BVXor, lambda a, b: Not(Iff(a, b)))

    __rand__, __ror__, __rxor__ = __and__, __or__, __xor__

    def __invert__(self) -> Sym:
        return Sym(BVNot(_bv(self)))

    def __lshift__(self, amount: Any) -> Sym:
        return Sym(BVLShl(_bv(self), _shift(amount)))

    def __rshift__(self, amount: Any) -> Sym:
        return Sym(BVLShr(_bv(self), _shift(amount)))

    def __rlshift__(self, other: Any) -> Sym:
        return Sym(BVLShl(_bv(other), _bv(self)))

    def __add__(self, other: Any) -> Sym:
        return Sym(BVAdd(_bv(self), _bv(other)))

    __radd__ = __add__

    def __sub__(self, other: Any) -> Sym:
        return Sym(BVSub(_bv(self), _bv(other)))

    def __rsub__(self, other: Any) -> Sym:
        return Sym(BVSub(_bv(other), _bv(self)))

    # -- comparisons (unsigned: the model has no negative numbers) --

    def __eq__(self, other: Any) -> Sym:  # type: ignore[override]
        if other is None:
            return Sym(FALSE())
        if self.is_bool and (isinstance(other, bool) or isinstance(other, Sym) and other.is_bool):
            return Sym(Iff(self.node, const(other)))
        return Sym(Equals(_bv(self), _bv(other)))

    def __ne__(self, other: Any) -> Sym:  # type: ignore[override]
        return Sym(Not((self == other).node))

    def __lt__(self, other: Any) -> Sym:
        return Sym(BVULT(_bv(self), _bv(other)))

    def __le__(self, other: Any) -> Sym:
        return Sym(BVULE(_bv(self), _bv(other)))

    def __gt__(self, other: Any) -> Sym:
        return Sym(BVULT(_bv(other), _bv(self)))

    def __ge__(self, other: Any) -> Sym:
        return Sym(BVULE(_bv(other), _bv(self)))

    # -- the branch --

    def __bool__(self) -> bool:
        cond = self.node if self.is_bool else Not(Equals(self.node, BV(0, WIDTH)))
        oracle = _ORACLE.get()
        if oracle is None:
            raise SymbolicError("a symbolic condition was tested outside symbolic execution")
        return oracle.decide(cond)

    # -- the model's branch-free helpers (formal.model.values) --

    def select(self, a: Any, b: Any) -> Any:
        if isinstance(a, Sym) or isinstance(b, Sym) or a != b:
            na, nb = const(a), const(b)
            if na.get_type() != nb.get_type():
                na, nb = _bv(a), _bv(b)
            return Sym(Ite(_cond(self), na, nb).simplify())
        return a

    def negate(self) -> Sym:
        return Sym(Not(_cond(self)))

    def as_bool(self) -> Sym:
        return Sym(_cond(self))

    # -- what symbolic values cannot do --

    __hash__ = None  # type: ignore[assignment]

    def __index__(self) -> int:
        raise SymbolicError("a symbolic value was used as an index")

    def __deepcopy__(self, memo: dict) -> Sym:
        return self  # terms are immutable

    def __copy__(self) -> Sym:
        return self

    def __format__(self, spec: str) -> str:
        return "<sym>"

    def __repr__(self) -> str:
        return f"Sym({self.node})"


def fresh(name: str, kind: str) -> Sym:
    """A free variable: kind "bool" or "bv"."""
    return Sym(Symbol(name, BOOL if kind == "bool" else BV64))


class Oracle:
    """Decides branches: replays a prefix of decisions, then takes True first; a decision with
    only one feasible outcome is forced and leaves no alternative.  The solver holds the path
    condition incrementally (one push per run); a condition already decided on this path is
    answered from memory, without a decision or a solver call."""

    def __init__(self, prefix: list[bool], solver: Any,
                 known: dict[FNode, bool] | None = None, context: tuple[FNode, ...] = (),
                 shared: Exploration | None = None) -> None:
        self.prefix = prefix
        self.solver = solver
        self.conds: list[FNode] = []
        self.decisions: list[bool] = []
        self.open: list[int] = []  # indexes of decisions whose other outcome is feasible
        self.known: dict[FNode, bool] = dict(known or {})
        # the decisions of the enclosing explorations (the solver holds them beneath ours)
        self.context = context
        self.shared = shared if shared is not None else Exploration()

    def decide(self, cond: FNode) -> bool:
        cond = cond.simplify()
        if cond.is_true() or cond.is_false():
            return cond.is_true()
        if cond in self.known:
            return self.known[cond]
        i = len(self.decisions)
        if i < len(self.prefix):
            take = self.prefix[i]
        else:
            take = _solve(self.solver, cond)
            # The path so far is feasible, so if cond cannot hold its negation must.
            if take and _solve(self.solver, Not(cond)):
                self.open.append(i)
        self.decisions.append(take)
        taken = cond if take else Not(cond)
        self.conds.append(taken)
        self.solver.add_assertion(taken)
        self.known[cond] = take
        if cond.is_not():
            self.known[cond.arg(0)] = not take
        return take

    @property
    def path_condition(self) -> FNode:
        return And(self.conds).simplify()


class Exploration:
    """What the runs of one exploration (explore, and the explorations of merged calls inside
    it) share: the merged calls already explored, and the variables naming merged state at
    cut points with their definitions (formal.symbolic.execution.merged)."""

    def __init__(self) -> None:
        self.memo: dict = {}
        # cut variable -> its definition over the exploration's own variables
        self.defs: dict[FNode, FNode] = {}
        self._subst: MGSubstituter | None = None

    def name(self, base: str, term: FNode) -> FNode:
        """A fresh variable defined as term (itself over earlier cut variables)."""
        var = Symbol(f"cut{len(self.defs)}.{base}", term.get_type())
        self.defs[var] = self.substitute(term)
        return var

    def substitute(self, term: FNode) -> FNode:
        """term with every cut variable replaced by its definition.  One substituter, whose
        memo stays valid as definitions are added: a term can only contain variables already
        defined."""
        if not self.defs:
            return term
        if self._subst is None:
            self._subst = MGSubstituter(get_env())
            self._subst.invalidate_memoization = False
        return self._subst.walk(term, substitutions=self.defs, interpretations={})


_ORACLE = EXECUTION  # the Oracle of the running exploration
# The deadline of the explorations the current build makes (running_until).
_DEADLINE: ContextVar[solvers.Deadline | None] = ContextVar("deadline", default=None)


@contextmanager
def running_until(deadline: solvers.Deadline | None) -> Iterator[None]:
    """Explorations started inside are bounded by deadline: their path oracle's solver gets
    what is left of it, and a query past it raises formal.solvers.Inconclusive."""
    token = _DEADLINE.set(deadline)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def _solve(solver: Any, cond: FNode | None = None) -> bool:
    """One feasibility query of the path oracle, within the deadline."""
    deadline = _DEADLINE.get()
    if deadline is not None:
        deadline.remaining()
    with solvers.answering("the path oracle's solver", "a path condition", deadline, solver):
        return solver.solve([] if cond is None else [cond])


@dataclass
class Path:
    condition: FNode
    result: Any


def explore(fn: Callable[[], Any], assumption: FNode | None = None,
            solver_name: str = "z3") -> list[Path]:
    """Run fn once per feasible path; each run must build its own fresh state."""
    with solvers.make(solver_name, _DEADLINE.get()) as solver:
        if assumption is not None:
            solver.add_assertion(assumption)
        if not _solve(solver):
            return []
        shared = Exploration()
        paths = _explore(fn, solver, {}, (), shared)
    if not shared.defs:
        return paths
    # Cut variables stand for their definitions: put the definitions back.
    return [Path(shared.substitute(p.condition), _substitute(p.result, shared))
            for p in paths]


def _substitute(obj: Any, shared: Exploration) -> Any:
    """obj with every term's cut variables replaced by their definitions (results: tuples,
    lists, dataclass trees, Syms)."""
    if isinstance(obj, Sym):
        return Sym(shared.substitute(obj.node))
    if isinstance(obj, FNode):
        return shared.substitute(obj)
    if isinstance(obj, tuple):
        return tuple(_substitute(x, shared) for x in obj)
    if isinstance(obj, list):
        return [_substitute(x, shared) for x in obj]
    if hasattr(obj, "__dataclass_fields__"):
        return replace(obj, **{f.name: _substitute(getattr(obj, f.name), shared)
                               for f in fields(obj) if f.init})
    return obj


def _explore(fn: Callable[[], Any], solver: Any, known: dict[FNode, bool],
             context: tuple[FNode, ...], shared: Exploration) -> list[Path]:
    """The paths of fn under the solver's current assertions (the decisions in context, beneath
    the exploration's assumption); conditions are relative to them."""
    paths: list[Path] = []
    stack: list[list[bool]] = [[]]
    while stack:
        prefix = stack.pop()
        oracle = Oracle(prefix, solver, known, context, shared)
        token = _ORACLE.set(oracle)
        solver.push()
        try:
            result = fn()
        finally:
            solver.pop()
            _ORACLE.reset(token)
        paths.append(Path(oracle.path_condition, result))
        for j in oracle.open:
            if j >= len(prefix):
                stack.append(oracle.decisions[:j] + [not oracle.decisions[j]])
    return paths


# -- state trees: dataclasses of ints and bools, with lists of dataclasses --

def leaves(obj: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """(name, owner, key) for every int/bool/Sym leaf of a dataclass tree."""
    out: list[tuple[str, Any, Any]] = []
    if hasattr(obj, "__dataclass_fields__"):
        items = [(f, getattr(obj, f), obj, f) for f in obj.__dataclass_fields__]
    elif isinstance(obj, list):
        items = [(str(i), x, obj, i) for i, x in enumerate(obj)]
    else:
        raise SymbolicError(f"not a state tree: {type(obj).__name__}")
    for name, val, owner, key in items:
        full = f"{prefix}{name}"
        if isinstance(val, (bool, int, Sym)):
            out.append((full, owner, key))
        else:
            out += leaves(val, full + ".")
    return out


def get_leaf(owner: Any, key: Any) -> Any:
    return owner[key] if isinstance(owner, list) else getattr(owner, key)


def set_leaf(owner: Any, key: Any, value: Any) -> None:
    if isinstance(owner, list):
        owner[key] = value
    else:
        setattr(owner, key, value)


def _paths_of(obj: Any, path: tuple = ()) -> dict[int, tuple]:
    """id -> access path of every dataclass/list node of a tree."""
    found = {id(obj): path}
    if hasattr(obj, "__dataclass_fields__"):
        children = [(f, getattr(obj, f)) for f in obj.__dataclass_fields__]
    elif isinstance(obj, list):
        children = list(enumerate(obj))
    else:
        return found
    for key, val in children:
        if hasattr(val, "__dataclass_fields__") or isinstance(val, list):
            found.update(_paths_of(val, path + (key,)))
    return found


def _follow(obj: Any, path: tuple) -> Any:
    for key in path:
        obj = obj[key] if isinstance(obj, list) else getattr(obj, key)
    return obj


def _cond(cond: Sym) -> FNode:
    return cond.node if cond.is_bool else Not(Equals(cond.node, BV(0, WIDTH)))


def merged(fn: Callable, cut: bool = False) -> Callable:
    """Model functions f(self, v, *args) that mutate the state tree v: under symbolic execution,
    explore f's paths on copies of v and write the merged (if-then-else) leaves back into v, so
    that the branches of f do not multiply with those of its callers.  Arguments that are parts of
    v are followed into each copy.  A bool/int return value is merged too.

    The enclosing exploration re-executes its function once per path, and with it every merged
    call on the way.  A call with the same state, arguments and enclosing decisions as one
    already explored (the same point of an earlier run: the model code is deterministic) takes
    that call's merged result instead of exploring f again.

    With cut, the state f leaves is also named: each leaf whose value depends on f's path (and
    is not a constant on every path) becomes a fresh variable, defined as its merged term.  The
    rest of the exploration decides its branches on those variables without their definitions,
    so the solver never sees the merged terms of successive calls nested in one another; a path
    this lets through that the definitions rule out keeps a condition that is unsatisfiable once
    `explore` substitutes the definitions back (more paths, the same relation)."""
    import copy
    import functools

    @functools.wraps(fn)
    def wrapper(self: Any, v: Any, *args: Any) -> Any:
        outer = _ORACLE.get()
        if outer is None:
            return fn(self, v, *args)
        names = leaves(v)
        where = _paths_of(v)
        key = _memo_key(fn, self, v, names, where, args, outer)
        done = outer.shared.memo.get(key) if key is not None else None
        if done is None:
            done = _explore_merged(fn, self, v, names, where, args, outer)
            if key is not None:
                outer.shared.memo[key] = done
        values, ret, exc = done
        if exc is not None:
            raise exc
        for (_, owner, k), val in zip(names, values, strict=True):
            set_leaf(owner, k, val)
        return ret

    def _explore_merged(fn, self, v, names, where, args, outer):
        snapshot = copy.deepcopy(v)

        def run() -> tuple[Any, Any]:
            w = copy.deepcopy(snapshot)
            mapped = [_follow(w, where[id(a)]) if id(a) in where else a for a in args]
            return w, fn(self, w, *mapped)

        try:
            inner = explore_within(outer, run)
        except Exception as exc:  # noqa: BLE001 - re-raised by every call that hits it
            return None, None, exc
        results = [(p.condition, leaves(p.result[0]), p.result[1]) for p in inner]
        values = []
        for i, (leaf, _, _) in enumerate(names):
            vals = [(c, get_leaf(o, k)) for c, lv, _ in results for (_, o, k) in [lv[i]]]
            value = _merge_values(vals)
            if cut and isinstance(value, Sym):
                terms = {const(x) for _, x in vals}
                if len(terms) > 1 and not all(t.is_constant() for t in terms):
                    value = Sym(outer.shared.name(f"{fn.__name__}.{leaf}", value.node))
            values.append(value)
        rets = [(c, r) for c, _, r in results]
        ret = None if all(r is None for _, r in rets) else _merge_values(rets)
        return values, ret, None

    return wrapper


def _memo_key(fn: Callable, self: Any, v: Any, names: list, where: dict[int, tuple],
              args: tuple, outer: Oracle) -> tuple | None:
    """What a merged call's result depends on: the function and policy, the enclosing
    decisions (the solver's assertions), the state's leaves and how its nodes are shared, and
    the arguments (by position in the state tree, or by value).  None: not memoizable."""
    def sig(x: Any) -> tuple | None:
        if isinstance(x, (bool, int, Sym)):
            return (type(x).__name__, const(x))
        return None

    arg_sig = []
    for a in args:
        if id(a) in where:
            arg_sig.append(("part", where[id(a)]))
        elif (s := sig(a)) is not None:
            arg_sig.append(s)
        elif a is None:
            arg_sig.append(None)
        else:
            return None
    state = tuple(sig(get_leaf(o, k)) for _, o, k in names)
    return (fn, type(self), getattr(self, "cfg", None), outer.context, tuple(outer.conds),
            state, _sharing(v), tuple(arg_sig))


def _sharing(obj: Any) -> tuple[int, ...]:
    """For each dataclass/list node of a tree in visiting order, the index of its first visit:
    which nodes are the same object."""
    seen: dict[int, int] = {}
    out: list[int] = []

    def visit(x: Any) -> None:
        if not (hasattr(x, "__dataclass_fields__") or isinstance(x, list)):
            return
        first = seen.setdefault(id(x), len(out))
        out.append(first)
        if first != len(out) - 1:
            return
        children = [getattr(x, f) for f in x.__dataclass_fields__] \
            if hasattr(x, "__dataclass_fields__") else x
        for c in children:
            visit(c)

    visit(obj)
    return tuple(out)


def _merge_values(vals: list[tuple[FNode, Any]]) -> Any:
    out = vals[-1][1]
    for cond, val in reversed(vals[:-1]):
        out = ite(Sym(cond), val, out)
    return out


def explore_within(outer: Oracle, fn: Callable[[], Any]) -> list[Path]:
    """Paths of fn under the outer path condition; conditions are relative to it."""
    return _explore(fn, outer.solver, outer.known, outer.context + tuple(outer.conds),
                    outer.shared)
