"""The cvc5 backend (through pySMT): the independent re-checker of every certificate."""

import cvc5

from formal.solvers import Backend

# cvc5 bit-blasts eagerly: its default lazy bit-vector solver returns unknown after minutes on
# the consecution queries of RSM and KVM_SET_SREGS that it answers in seconds this way.
BACKEND = Backend("cvc5", timeout_option="tlimit-per", options={"bitblast": "eager"},
                  version=getattr(cvc5, "__version__", "?"))
