"""The z3 backend (through pySMT): the search engines' solver."""

import z3

from formal.solvers import Answer, Backend, Inconclusive

BACKEND = Backend("z3", timeout_option="timeout", version=z3.get_version_string(),
                  one_context=True)


def answer(script: str, seconds: float | None) -> Answer:
    s = z3.Solver()
    if seconds:
        s.set("timeout", max(1, int(seconds * 1000)))
    try:
        s.from_string(script)
    except z3.Z3Exception as exc:
        raise Inconclusive(f"z3 could not read the query: {exc}") from None
    return Answer(str(s.check()))
