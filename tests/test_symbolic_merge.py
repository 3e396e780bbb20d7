"""Merged calls (formal.symbolic.execution.merged): reusing an explored call and naming the merged
state
at a cut point change the cost of symbolic execution, never the relation."""

from __future__ import annotations

from pysmt.shortcuts import And, EqualsOrIff, Iff, Not, Solver

from formal.model import events as ev
from formal.model.state import CONFIGS
from formal.symbolic import execution as symbolic
from formal.symbolic import transition
from specs import POLICIES


def _relation(policy: str, config: str, kind: type[ev.Event]) -> transition.EventRelation:
    cfg = CONFIGS[config]
    pre_state, _ = transition.symbolic_state(cfg, "s.")
    return transition.event_relation(transition.Single(POLICIES[policy]), cfg, pre_state, kind,
                                     "e.")


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


def _cut_names(monkeypatch) -> list[str]:
    """The base names of the variables the cuts introduce, as they are named."""
    cuts: list[str] = []
    orig = symbolic.Exploration.name
    monkeypatch.setattr(symbolic.Exploration, "name",
                        lambda self, base, term: cuts.append(base) or orig(self, base, term))
    return cuts


def _assert_same_relation(plain, cut) -> None:
    """No cut variable is left, and z3 finds no state and operands where the two differ: one
    query per field (one query for all fields once took 43.7 s in a
    test worker where it takes 0.3 s alone, z3's search depending on its context's history;
    per field they take 0.6 s together)."""
    terms = [cut.steps, cut.model_error, cut.not_modeled, *cut.post.values(),
             *cut.violated.values()]
    assert not any(s.symbol_name().startswith("cut") for t in terms for s in t.get_free_variables())
    differ = [("steps", Not(Iff(plain.steps, cut.steps))),
              ("model_error", Not(Iff(plain.model_error, cut.model_error))),
              ("not_modeled", Not(Iff(plain.not_modeled, cut.not_modeled)))] \
        + [(p, Not(Iff(plain.violated[p], cut.violated[p]))) for p in plain.violated] \
        + [(n, And(plain.steps, Not(EqualsOrIff(plain.post[n], cut.post[n])))) for n in plain.post]
    for name, query in differ:
        with Solver(name="z3") as s:
            assert not s.is_sat(query), name


def test_a_cut_keeps_the_relation(monkeypatch):
    """WRMSR EFER with set_efer as a cut point (its reset unloads the roots path by path): the
    later branches see fresh variables, so there are more paths, but once the definitions are
    substituted back the relation is equivalent and mentions no cut variable."""
    plain = _relation("v5.12", "shadow", ev.WrmsrEfer)
    cuts = _cut_names(monkeypatch)
    monkeypatch.setitem(transition.CUT_POINTS, ("v5.12", ev.WrmsrEfer), ("set_efer",))
    cut = _relation("v5.12", "shadow", ev.WrmsrEfer)
    assert cuts and cut.paths > plain.paths
    _assert_same_relation(plain, cut)


def test_a_cut_point_outside_the_merge_points_is_merged_and_keeps_the_relation(monkeypatch):
    """RSM with em_rsm, which MERGE_POINTS does not list, as a cut point (as rfc-2022-02's RSM
    has it, formal.symbolic.transition.CUT_POINTS): em_rsm's paths are merged where it returns, so
    fewer
    paths reach the guest entry, and the relation is equivalent."""
    plain = _relation("v5.12", "shadow", ev.Rsm)
    assert "em_rsm" not in transition.MERGE_POINTS
    cuts = _cut_names(monkeypatch)
    monkeypatch.setitem(transition.CUT_POINTS, ("v5.12", ev.Rsm), ("em_rsm",))
    cut = _relation("v5.12", "shadow", ev.Rsm)
    assert any(c.startswith("em_rsm.") for c in cuts) and cut.paths < plain.paths
    _assert_same_relation(plain, cut)
