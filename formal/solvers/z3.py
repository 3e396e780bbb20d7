"""The z3 backend (through pySMT): the search engines' solver."""

import z3

from formal.solvers import Backend

BACKEND = Backend("z3", timeout_option="timeout", version=z3.get_version_string())
