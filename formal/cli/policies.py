"""Policies by name (the registry of specs/) for the face: trace files name their policy, and
the commands resolve it here before anything runs."""

from __future__ import annotations

import json
from pathlib import Path

from formal.concrete import replay as concrete_replay
from formal.model import simulate as model_simulate
from formal.model import trace
from formal.model.kvm import Mechanism
from formal.model.trace import Trace, TraceError
from specs import POLICIES


def resolve(name: str, source: str = "command line") -> type[Mechanism]:
    """The policy class registered under name; TraceError naming source if there is none."""
    cls = POLICIES.get(name)
    if cls is None:
        raise TraceError(f"{source}: field 'policy': unknown policy {json.dumps(name)} "
                         f"(known: {', '.join(POLICIES)})")
    return cls


def load(path: str | Path) -> Trace:
    """A trace file whose policy is a registered one."""
    t = trace.load(path)
    resolve(t.policy, str(path))
    return t


def override(t: Trace, policy: str | None, config: str | None) -> Trace:
    """The same events under another policy and/or configuration, checked like a file's."""
    out = trace.override(t, policy, config)
    resolve(out.policy)
    return out


def simulate(t: Trace) -> model_simulate.Run:
    """t run on the model under its own policy."""
    return model_simulate.run(t, resolve(t.policy))


def replay(t: Trace) -> concrete_replay.ReplayOutcome:
    """t replayed on the concrete shadow MMU under its own policy."""
    return concrete_replay.replay(t, resolve(t.policy))
