"""The transition system the engines work on: event kinds, each a set of paths over a
pre-state and the event's operands.  Built by formal.symbolic.transition from a policy; the
engines know only these terms, not KVM."""

from __future__ import annotations

from dataclasses import dataclass, field

from pysmt.fnode import FNode


@dataclass
class EventRelation:
    """What one event kind does, as terms over the pre-state and the event's operands."""

    name: str  # the event kind (a trace file's "op")
    ops: dict[str, FNode]  # operand name -> its variable
    paths: int
    # the event is modelled in the pre-state and does not fault: it changes the state
    steps: FNode
    # the event is outside the model in the pre-state (formal.model.scope.not_modeled)
    not_modeled: FNode
    # must be unsatisfiable: the model contradicts itself on some path
    model_error: FNode
    post: dict[str, FNode]  # next value of every state variable (meaningful where `steps`)
    violated: dict[str, FNode]  # per property: violated at the following guest entry
    seconds: float = 0.0
    # The paths one at a time, as (path condition, next value of every state variable): `post`
    # is their if-then-else merge and `steps` the disjunction of their conditions.
    # formal.engines.search.recheck_invariant asks consecution per path.  Empty: the single
    # case (steps, post).
    cases: list[tuple[FNode, dict[str, FNode]]] = field(default_factory=list)

    def branches(self) -> list[tuple[FNode, dict[str, FNode]]]:
        return self.cases or [(self.steps, self.post)]


@dataclass
class Relation:
    """The transition system of one policy in one configuration."""

    policy: str
    config: str
    names: list[str]
    pre: dict[str, FNode]  # state variable name -> its pre-state variable
    init_paths: int
    init: FNode  # over the pre-state variables: the states after the first guest entry
    init_violated: dict[str, FNode]  # properties violated at the first guest entry
    init_error: FNode
    events: list[EventRelation] = field(default_factory=list)
    # Candidate lemmas over the pre-state for invariant inference (formal.engines.search.
    # houdini): "a guest entry now would violate nothing", per property, and the register
    # images are legal.  Candidates only: never assumed.
    lemmas: list[FNode] = field(default_factory=list)
    # The strongest inductive conjunction of the candidate lemmas (houdini): the same for
    # every property, so computed once per relation.
    inductive: list[FNode] | None = None
    # Invariants whose initiation and consecution the re-checker has accepted
    # (recheck_invariant): those two queries do not depend on the property.
    rechecked: set[FNode] = field(default_factory=set)
