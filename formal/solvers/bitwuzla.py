"""The bitwuzla backend, over bitwuzla's own Python API: pySMT lacks it, so it answers the
SMT-LIB 2 text pySMT prints (flushproof prove --checker bitwuzla)."""

import bitwuzla

from formal.solvers import Answer, Backend, Inconclusive

BACKEND = Backend("bitwuzla", timeout_option="time-limit-per", version=bitwuzla.version(),
                  pysmt=False)


def answer(script: str, seconds: float | None) -> Answer:
    opts = bitwuzla.Options()
    if seconds:
        opts.set(bitwuzla.Option.TIME_LIMIT_PER, max(1, int(seconds * 1000)))
    parser = bitwuzla.Parser(bitwuzla.TermManager(), opts, "smt2")
    try:
        parser.parse(script, True, False)  # declarations and assertions; check-sat below
    except bitwuzla.BitwuzlaException as exc:
        raise Inconclusive(f"bitwuzla could not read the query: {exc}") from None
    r = parser.bitwuzla().check_sat()
    return {bitwuzla.Result.SAT: Answer.SAT, bitwuzla.Result.UNSAT: Answer.UNSAT}.get(
        r, Answer.UNKNOWN)
