"""A houdini certificate as text: its lemmas, each named, as an SMT-LIB 2 script (declarations of
the state variables they read, one `(assert (! LEMMA :named |NAME|))` per lemma), which any
SMT-LIB 2 solver reads and which `parse` turns back into the same terms.  The text is a hint,
never a verdict: whoever loads it re-checks the conjunction against the relation it has now
(formal.engines.search.recheck_lemmas)."""

from __future__ import annotations

import io

from pysmt.exceptions import PysmtException
from pysmt.fnode import FNode
from pysmt.smtlib.parser import SmtLibParser
from pysmt.smtlib.printers import to_smtlib

from formal.errors import Malformed


class Corrupt(Malformed):
    """A certificate's text that is not what `text` writes."""


def _quoted(name: str) -> str:
    # An SMT-LIB quoted symbol holds anything but | and \.
    return "|" + name.replace("|", "/").replace("\\", "/") + "|"


def text(lemmas: list[FNode], names: dict[FNode, str]) -> str:
    """The lemmas as an SMT-LIB 2 script; a lemma without a name in names is "lemma I"."""
    out = io.StringIO()
    out.write("(set-logic QF_BV)\n")
    free: set[FNode] = set()
    for lemma in lemmas:
        free |= lemma.get_free_variables()
    for var in sorted(free, key=lambda v: v.symbol_name()):
        out.write(f"(declare-fun {_quoted(var.symbol_name())} () "
                  f"{var.symbol_type().as_smtlib(funstyle=False)})\n")
    for i, lemma in enumerate(lemmas):
        name = names.get(lemma, f"lemma {i}")
        out.write(f"(assert (! {to_smtlib(lemma, daggify=True)} :named {_quoted(name)}))\n")
    return out.getvalue()


def parse(script: str) -> list[tuple[str, FNode]]:
    """The named lemmas of a script `text` wrote; raises Corrupt on anything else."""
    try:
        parsed = SmtLibParser().get_script(io.StringIO(script))
    except (PysmtException, ValueError, KeyError, TypeError, IndexError) as exc:
        raise Corrupt(f"not an SMT-LIB 2 script of lemmas: {exc}") from None
    out = []
    for cmd in parsed.commands:
        if cmd.name in ("set-logic", "declare-fun"):
            continue
        if cmd.name != "assert":
            raise Corrupt(f"unexpected command {cmd.name!r} in a certificate")
        term = cmd.args[0]
        if not term.get_type().is_bool_type():
            raise Corrupt("a lemma that is not a formula")
        named = (parsed.annotations.annotations(term) or {}).get("named") or {f"lemma {len(out)}"}
        out.append((min(named), term))
    return out
