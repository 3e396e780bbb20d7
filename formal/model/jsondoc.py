"""JSON input documents (trace files, proof scripts, corpus expectations): bytes to a JSON
value, every failure one Malformed naming the source.

Stricter than `json.loads`, so that no input reaches the checks as something they cannot
describe: the text must be UTF-8 (RFC 8259 §8.1), nesting is bounded (our formats need four
levels; Python's parser would raise RecursionError on deep nesting), and a value no field of
ours can hold (an integer of more than MAX_DIGITS digits, a number beyond a float, NaN and
Infinity, which are not JSON: RFC 8259 §6) is kept as an `Unrepresentable` marker.  The marker
fails every type check, so the error names the field it is in rather than failing the parse.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from formal.errors import Malformed

MAX_DEPTH = 32
# 2^64 has 20 decimal digits; 40 leaves room for a leading sign and zeros and still keeps
# int() far from Python's 4300-digit conversion limit.
MAX_DIGITS = 40


_END = object()


class Unrepresentable:
    """A JSON number no field can hold, kept for the error message."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:
        if len(self.text) > 24:
            return f"a number of {len(self.text)} characters ({self.text[:12]}...)"
        return self.text


def _int(text: str) -> int | Unrepresentable:
    return int(text) if len(text) <= MAX_DIGITS else Unrepresentable(text)


def _float(text: str) -> float | Unrepresentable:
    value = float(text)
    return value if math.isfinite(value) else Unrepresentable(text)


def loads(data: str | bytes, source: str) -> object:
    """The JSON value of data; Malformed naming source if it is not UTF-8, not JSON, or nested
    deeper than MAX_DEPTH."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")  # the last reference to the bytes: freed here
        except UnicodeDecodeError as exc:
            raise Malformed(f"{source}: not UTF-8 text (byte {exc.start}: "
                            f"{exc.object[exc.start:exc.start + 1]!r})") from None
    try:
        doc = json.loads(data, parse_int=_int, parse_float=_float,
                         parse_constant=Unrepresentable)
    except json.JSONDecodeError as exc:
        raise Malformed(f"{source}: not valid JSON: {exc.msg} at line {exc.lineno} "
                        f"column {exc.colno}") from None
    except RecursionError:
        raise Malformed(f"{source}: not valid JSON: nested deeper than {MAX_DEPTH} "
                        "levels") from None
    _check_depth(doc, source)
    return doc


def _check_depth(doc: object, source: str) -> None:
    """Iteratively, so that a deep document cannot exhaust the stack here either, with one
    iterator per open level (not one entry per element of a long list)."""
    if not isinstance(doc, (dict, list)):
        return
    stack = [iter(doc.values() if isinstance(doc, dict) else doc)]
    while stack:
        node = next(stack[-1], _END)
        if node is _END:
            stack.pop()
        elif isinstance(node, (dict, list)):
            if len(stack) >= MAX_DEPTH:
                raise Malformed(f"{source}: not valid JSON: nested deeper than {MAX_DEPTH} "
                                "levels")
            stack.append(iter(node.values() if isinstance(node, dict) else node))


def load(path: str | Path) -> object:
    """The JSON value of the file at path; Malformed naming it if it cannot be read."""
    try:
        with open(path, "rb") as f:
            # read() passed straight on: loads drops the bytes once decoded (a long trace is
            # then not held three times: bytes, text and document)
            return loads(f.read(), str(path))
    except OSError as exc:
        raise Malformed(f"{path}: cannot read: {exc.strerror or exc}") from None


def show(value: object, limit: int = 60) -> str:
    """value as JSON for an error message, cut at about limit characters."""
    if isinstance(value, Unrepresentable):
        return str(value)
    try:
        text = json.dumps(value, default=str)
    except (ValueError, RecursionError):
        text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
