"""The cvc5 backend (through pySMT, and through cvc5's own SMT-LIB 2 parser for `answer`): a
re-checker of certificates (flushproof prove --checker cvc5)."""

import cvc5

from formal.solvers import Answer, Backend, Inconclusive

# cvc5 bit-blasts eagerly: its default lazy bit-vector solver returns unknown after minutes on
# the consecution queries of RSM and KVM_SET_SREGS that it answers in seconds this way.
BACKEND = Backend("cvc5", timeout_option="tlimit-per", options={"bitblast": "eager"},
                  version=getattr(cvc5, "__version__", "?"))


def answer(script: str, seconds: float | None) -> Answer:
    s = cvc5.Solver()
    for option, value in BACKEND.options.items():
        s.setOption(option, str(value))
    if seconds:
        s.setOption(BACKEND.timeout_option, str(max(1, int(seconds * 1000))))
    sm = cvc5.SymbolManager(s.getTermManager())
    parser = cvc5.InputParser(s, sm)
    parser.setStringInput(cvc5.InputLanguage.SMT_LIB_2_6, script, "query")
    try:
        while not (cmd := parser.nextCommand()).isNull():
            if cmd.getCommandName() != "check-sat":  # asked below, for a Result
                cmd.invoke(s, sm)
    except RuntimeError as exc:
        raise Inconclusive(f"cvc5 could not read the query: {exc}") from None
    r = s.checkSat()
    return Answer.SAT if r.isSat() else Answer.UNSAT if r.isUnsat() else Answer.UNKNOWN
