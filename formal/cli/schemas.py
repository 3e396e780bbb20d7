"""The JSON Schemas of the input files (formal/cli/schemas/*.schema.json, published in
docs/schemas.md): every input is validated against its schema before anything runs, and the
first error becomes one Malformed naming the file, the record (event, obligation or trace) and
the field.  The parsers behind (formal.model.trace, formal.cli.suite, formal.cli.corpus) add
the checks a schema cannot express: that a policy exists, that an event belongs to the
configuration."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from functools import cache
from importlib import resources
from itertools import chain

from jsonschema import Draft202012Validator, ValidationError
from referencing import Registry, Resource

from formal.errors import Malformed
from formal.model.events import EVENT_TYPES
from formal.model.jsondoc import show

# The files of this package's schemas/ folder: the inputs checked here, by kind, and the
# outputs they describe (prove --json, whose result holds the certificate; check --json;
# matrix --json, whose cells hold prove's results; diff --json).
KINDS = ("trace", "proofs", "expected", "certificate")
OUTPUTS = ("prove-result", "check-result", "matrix-result", "diff-result")
# What an array element is called in messages, by the array's field.
_ITEM = {"events": "event", "obligations": "obligation"}

# Records that are fields of the top-level object, by kind: their path element is named too
# (None: every field).
_RECORDS = {"trace": {"initial"}, "proofs": set(), "expected": None, "certificate": set()}


def schema(kind: str) -> dict:
    """The schema of an input kind or an output, as shipped with the package."""
    return json.loads(resources.files("formal.cli").joinpath(f"schemas/{kind}.schema.json")
                      .read_text(encoding="utf-8"))


def output_validator(kind: str) -> Draft202012Validator:
    """A validator of an output's schema, its references to the other outputs' schemas (by
    file name, as matrix-result's cells name prove-result.schema.json) resolved."""
    registry = Registry().with_resources(
        (f"{k}.schema.json", Resource.from_contents(schema(k))) for k in OUTPUTS)
    return Draft202012Validator(schema(kind), registry=registry,
                                format_checker=Draft202012Validator.FORMAT_CHECKER)


@cache
def _validator(kind: str) -> Draft202012Validator:
    # jsondoc's Unrepresentable markers (numbers no field holds) fail every type check, and a
    # bool is neither an integer nor a number in draft 2020-12's type checker.
    whole = schema(kind)
    if kind == "trace":  # events are checked one at a time (_event_errors)
        whole["properties"]["events"] = dict(whole["properties"]["events"], items={})
    return Draft202012Validator(whole)


@cache
def _event_validator(op: str | None) -> Draft202012Validator:
    """The schema of one event of kind op (None: any event), its references inlined: checking
    each event against the schema's `allOf` of seventeen `if`/`then` pairs and references took
    420 us an event, this 20 us (a 1,000,000-event trace in 20 s)."""
    defs = schema("trace")["$defs"]

    def inline(node: object) -> object:
        if isinstance(node, dict):
            if "$ref" in node:
                return inline(defs[node["$ref"].removeprefix("#/$defs/")])
            return {k: inline(v) for k, v in node.items()}
        if isinstance(node, list):
            return [inline(v) for v in node]
        return node

    return Draft202012Validator(inline(defs["event" if op is None else op]))


def _event_errors(events: list) -> Iterator[ValidationError]:
    for i, e in enumerate(events):
        op = e.get("op") if isinstance(e, dict) else None
        validator = _event_validator(op if isinstance(op, str) and op in EVENT_TYPES else None)
        for error in validator.iter_errors(e):
            error.path.extendleft([i, "events"])  # as if the whole document were checked
            yield error


def check(doc: object, kind: str, source: str) -> None:
    """Raises Malformed describing the first place doc breaks the schema of kind."""
    errors = _validator(kind).iter_errors(doc)
    if kind == "trace" and isinstance(doc, dict) and isinstance(doc.get("events"), list):
        errors = chain(errors, _event_errors(doc["events"]))
    error = next(errors, None)
    if error is not None:
        raise Malformed(message(error, doc, kind, source))


def message(error: ValidationError, doc: object, kind: str, source: str) -> str:
    """One line: where (file, record, field), what was expected, what was found."""
    where, field = _where(list(error.absolute_path), doc, kind, source)
    validator, instance, sub = error.validator, error.instance, error.schema
    if validator == "required":
        missing = [f for f in error.validator_value if f not in instance]
        return f"{where}: missing field '{missing[0]}'"
    if validator == "additionalProperties" and isinstance(instance, dict):
        known = set(sub.get("properties", {}))
        return f"{where}: unknown field '{sorted(set(instance) - known)[0]}'"
    if field is None:
        prefix = f"{where}:"
    else:
        prefix = f"{where}: field '{field}':"
    if validator == "const":
        return f"{prefix} expected {error.validator_value!r}, got {show(instance)}"
    if validator == "enum" and isinstance(instance, str):
        return (f"{prefix} unknown {sub.get('title', 'value')} {show(instance)} "
                f"(known: {', '.join(error.validator_value)})")
    expected = sub.get("description") or error.message
    if validator == "minItems":
        return f"{prefix} expected {expected}, got an empty list"
    return f"{prefix} expected {expected}, got {show(instance)}"


def _where(path: Sequence[object], doc: object, kind: str,
           source: str) -> tuple[str, str | None]:
    """The record a schema path points into, as words, and the field within it."""
    where, field, node, i = source, None, doc, 0
    records = _RECORDS[kind]
    if path and isinstance(path[0], str) and (records is None or path[0] in records):
        where += f": {path[0]}" if records else f": {show(path[0])}"
        node, i = doc[path[0]], 1
    if len(path) > i + 1 and path[i] in _ITEM and isinstance(path[i + 1], int):
        key, index = path[i], path[i + 1]
        node = node[key][index]
        op = node.get("op") if isinstance(node, dict) else None
        known = isinstance(op, str) and op in EVENT_TYPES
        where += f": {_ITEM[key]} {index}" + (f" ({op})" if known else "")
        i += 2
    for key in path[i:]:
        if field is None:
            field = str(key)
        else:
            field += f"[{key}]" if isinstance(key, int) else f".{key}"
    return where, field
