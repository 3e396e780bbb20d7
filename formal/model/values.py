"""Branch-free helpers that let one policy text run on concrete values and on symbolic ones.

The model is written over ints and bools.  Symbolic execution (formal.symbolic) runs the same
code on values that derive from `SymbolicValue`; the helpers below dispatch on that base class,
so the model never imports an SMT library: on concrete values they are plain Python.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any


class SymbolicValue:
    """Base class of the symbolic layer's values; the methods build terms without a branch."""

    __slots__ = ()

    def select(self, a: Any, b: Any) -> Any:
        raise NotImplementedError

    def negate(self) -> Any:
        raise NotImplementedError

    def as_bool(self) -> Any:
        raise NotImplementedError


# The running symbolic execution's branch oracle (formal.symbolic.execution), None outside one.
EXECUTION: ContextVar[Any] = ContextVar("symbolic_execution", default=None)


def is_symbolic() -> bool:
    """Is a symbolic execution running (model code may skip its human-readable notes)?"""
    return EXECUTION.get() is not None


def ite(cond: Any, a: Any, b: Any) -> Any:
    """a if cond else b, without a branch when cond is symbolic (a nonzero bit-vector is true)."""
    if isinstance(cond, SymbolicValue):
        return cond.select(a, b)
    return a if cond else b


def on(cond: Any, value: Any) -> Any:
    """value if cond else 0: a flag's contribution to a bit word."""
    return ite(cond, value, 0)


def neg(cond: Any) -> Any:
    """Logical not, without a branch on a symbolic condition."""
    if isinstance(cond, SymbolicValue):
        return cond.negate()
    return not cond


def iff(a: Any, b: Any) -> Any:
    """a if and only if b, without a branch on a symbolic condition."""
    return (a & b) | (neg(a) & neg(b))


def truth(cond: Any) -> Any:
    """A bool (or symbolic bool) from a bool, an int or a symbolic value."""
    if isinstance(cond, SymbolicValue):
        return cond.as_bool()
    return bool(cond)
