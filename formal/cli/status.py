"""The outcome of one checked item (a proof obligation, a corpus trace) against its expectation,
and of a run of items: what `suite`, `corpus` and `check` exit with (docs/exit-codes.md)."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum


class Status(StrEnum):
    PASSED = "passed"  # the expected verdict (or, for a corpus cell, no expectation yet)
    FAILED = "failed"  # another verdict than the expected one
    UNKNOWN = "unknown"  # inconclusive where a verdict was expected: never a pass


def overall(statuses: Iterable[Status]) -> Status:
    """A run fails if an item has another verdict than the expected one; else it is unknown if
    an item is; else it passes.  A definite wrong verdict says more than an inconclusive one."""
    seen = set(statuses)
    for s in (Status.FAILED, Status.UNKNOWN):
        if s in seen:
            return s
    return Status.PASSED


def matches(name: str, pattern: str | None) -> bool:
    """-k: whether an item's name (an obligation's, or corpus/STEM) contains pattern, ignoring
    case; every name matches no pattern."""
    return pattern is None or pattern.casefold() in name.casefold()
