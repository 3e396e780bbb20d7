"""Merged calls (formal.symbolic.merged): reusing an explored call changes the cost of symbolic
execution, never the relation."""

from __future__ import annotations

from formal import events as ev
from formal import symbolic, transition
from formal.state import CONFIGS
from specs import POLICIES


def _relation(policy: str, config: str, kind: type[ev.Event]) -> transition.EventRelation:
    cfg = CONFIGS[config]
    pre_state, _ = transition.symbolic_state(cfg, "s.")
    return transition.event_relation(POLICIES[policy], cfg, pre_state, kind, "e.")


def _count(monkeypatch, name: str) -> list[int]:
    calls = [0]
    orig = getattr(symbolic, name)

    def counting(*args, **kwargs):
        calls[0] += 1
        return orig(*args, **kwargs)

    monkeypatch.setattr(symbolic, name, counting)
    return calls


def test_a_repeated_merged_call_is_explored_once(monkeypatch):
    """The top-level paths of WRMSR EFER re-run set_efer; with the memo each call at the same
    point is explored once, and the relation is the same terms."""
    explored = _count(monkeypatch, "explore_within")
    memo = _relation("v5.12", "shadow", ev.WrmsrEfer)
    with_memo = explored[0]
    monkeypatch.setattr(symbolic, "_memo_key", lambda *args: None)
    plain = _relation("v5.12", "shadow", ev.WrmsrEfer)
    assert explored[0] - with_memo > with_memo
    assert memo.paths == plain.paths
    assert memo.steps is plain.steps and memo.model_error is plain.model_error
    assert all(memo.post[n] is plain.post[n] for n in plain.post)
    assert all(memo.violated[p] is plain.violated[p] for p in plain.violated)
