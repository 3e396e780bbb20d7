"""Policies by name (the registry of specs/) for the face: trace files name their policy, and
the commands resolve it here before anything runs."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

from formal.cli import schemas
from formal.concrete import replay as concrete_replay
from formal.errors import Malformed
from formal.model import jsondoc, trace
from formal.model import simulate as model_simulate
from formal.model.kvm import Mechanism
from formal.model.machine import StepRecord
from formal.model.trace import Trace, TraceError
from specs import POLICIES


def resolve(name: str, source: str = "command line") -> type[Mechanism]:
    """The policy class registered under name; TraceError naming source if there is none."""
    cls = POLICIES.get(name)
    if cls is None:
        raise TraceError(f"{source}: field 'policy': unknown policy {json.dumps(name)} "
                         f"(known: {', '.join(POLICIES)})")
    return cls


STDIN = "-"


def load(path: str | Path) -> Trace:
    """A trace file (`-`: standard input) valid against its schema, whose policy is a
    registered one."""
    if str(path) == STDIN:
        source = "<stdin>"
        doc = jsondoc.loads(sys.stdin.buffer.read(), source)
    else:
        source = str(path)
        doc = jsondoc.load(path)
    try:
        schemas.check(doc, "trace", source)
    except Malformed as exc:
        raise TraceError(str(exc)) from None
    t = trace.from_doc(doc, source)
    resolve(t.policy, source)
    return t


def override(t: Trace, policy: str | None, config: str | None) -> Trace:
    """The same events under another policy and/or configuration, checked like a file's."""
    out = trace.override(t, policy, config)
    resolve(out.policy)
    return out


def simulate(t: Trace,
             on_record: Callable[[StepRecord], None] | None = None) -> model_simulate.Run:
    """t run on the model under its own policy (on_record: formal.model.simulate.run)."""
    return model_simulate.run(t, resolve(t.policy), on_record=on_record)


def replay(t: Trace) -> concrete_replay.ReplayOutcome:
    """t replayed on the concrete shadow MMU under its own policy."""
    return concrete_replay.replay(t, resolve(t.policy))
