"""A relation as text, and back: its terms as one SMT-LIB 2 assertion (`(= |fp.tI...| TERM)`
for each term I, printed with shared subterms let-bound once), its shape (names, path counts,
which term is which) as JSON-able data.  Parsed in the same pySMT environment, every term is the
very node the relation was built with (pySMT hash-conses terms), so a relation loaded from the
cache (formal.cli.store) is the relation built.  Text only: nothing is unpickled."""

from __future__ import annotations

import io

from pysmt.exceptions import PysmtException
from pysmt.fnode import FNode
from pysmt.shortcuts import And, EqualsOrIff, Symbol
from pysmt.smtlib.parser import SmtLibParser
from pysmt.smtlib.printers import to_smtlib

from formal.engines.system import EventRelation, Relation
from formal.errors import Malformed


class Unreadable(Malformed):
    """Text that `dumps` did not write."""


class _Terms:
    def __init__(self) -> None:
        self.nodes: list[FNode] = []
        self.index: dict[FNode, int] = {}

    def __call__(self, node: FNode) -> int:
        if node not in self.index:
            self.index[node] = len(self.nodes)
            self.nodes.append(node)
        return self.index[node]

    def each(self, nodes: dict[str, FNode]) -> dict[str, int]:
        return {k: self(v) for k, v in nodes.items()}


def _holder(i: int, node: FNode) -> FNode:
    t = node.get_type()
    return Symbol(f"fp.t{i}." + ("b" if t.is_bool_type() else f"w{t.width}"), t)


def dumps(rel: Relation) -> tuple[dict, str]:
    """The relation's shape and its terms' SMT-LIB 2 script."""
    t = _Terms()
    shape = {
        "policy": rel.policy, "config": rel.config, "names": rel.names,
        "pre": t.each(rel.pre), "init_paths": rel.init_paths, "init": t(rel.init),
        "init_violated": t.each(rel.init_violated), "init_error": t(rel.init_error),
        "lemmas": [t(x) for x in rel.lemmas],
        "events": [{
            "name": er.name, "ops": t.each(er.ops), "paths": er.paths, "steps": t(er.steps),
            "not_modeled": t(er.not_modeled), "model_error": t(er.model_error),
            "post": t.each(er.post), "violated": t.each(er.violated), "seconds": er.seconds,
            "cases": [[t(cond), t.each(post)] for cond, post in er.cases],
        } for er in rel.events],
        "terms": len(t.nodes),
    }
    whole = And([EqualsOrIff(_holder(i, x), x) for i, x in enumerate(t.nodes)])
    out = io.StringIO()
    out.write("(set-logic QF_BV)\n")
    for var in sorted(whole.get_free_variables(), key=lambda v: v.symbol_name()):
        name = var.symbol_name().replace("|", "/")
        out.write(f"(declare-fun |{name}| () {var.symbol_type().as_smtlib(funstyle=False)})\n")
    out.write(f"(assert {to_smtlib(whole, daggify=True)})\n")
    return shape, out.getvalue()


def loads(shape: dict, script: str) -> Relation:
    """The relation `dumps` gave shape and script for; raises Unreadable on anything else."""
    try:
        commands = SmtLibParser().get_script(io.StringIO(script)).commands
        whole = [c for c in commands if c.name == "assert"][-1].args[0]
        parts = whole.args() if whole.is_and() else (whole,)
        nodes = [p.arg(1) for p in parts]
        if len(nodes) != shape["terms"] or any(
                p.arg(0) is not _holder(i, p.arg(1)) for i, p in enumerate(parts)):
            raise Unreadable("its terms are not the ones its shape counts")
        t = nodes.__getitem__

        def each(ix: dict[str, int]) -> dict[str, FNode]:
            return {k: t(i) for k, i in ix.items()}

        rel = Relation(shape["policy"], shape["config"], list(shape["names"]),
                       each(shape["pre"]), shape["init_paths"], t(shape["init"]),
                       each(shape["init_violated"]), t(shape["init_error"]),
                       lemmas=[t(i) for i in shape["lemmas"]])
        rel.events = [EventRelation(
            e["name"], each(e["ops"]), e["paths"], t(e["steps"]), t(e["not_modeled"]),
            t(e["model_error"]), each(e["post"]), each(e["violated"]), e["seconds"],
            [(t(c), each(post)) for c, post in e["cases"]]) for e in shape["events"]]
    except Unreadable:
        raise
    except (PysmtException, ValueError, KeyError, TypeError, IndexError,
            AttributeError, AssertionError) as exc:
        raise Unreadable(f"not a relation flushproof wrote: {type(exc).__name__}: {exc}") \
            from None
    return rel
