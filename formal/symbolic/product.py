"""Two policies in lockstep: the product relation of differential verification.

Both vCPUs start from the same registers and take the same events; the architecture's verdict
on an event depends only on state both share (the registers, SMM, guest mode), so they fault
alike, and a step on which they do not is a model error.  Each policy's step is a merged call
(formal.symbolic.execution.merged): its paths are merged where it returns, so the product's
paths are the sum of the two policies', not their product.  A property is violated at a step of
the product when the new policy violates it there and the base does not: a counterexample is an
event sequence on which the patch adds a violation at an event where the base kernel has none.
Swapping the two gives the violations the patch removes.
"""

from __future__ import annotations

from dataclasses import dataclass

from formal.engines.progress import Progress
from formal.engines.system import Relation
from formal.model import events as ev
from formal.model.kvm import Mechanism
from formal.model.machine import enter, execute
from formal.model.properties import PROPERTIES, ModelError, Violation
from formal.model.state import Config, Vcpu
from formal.model.values import neg, on, truth
from formal.solvers import Deadline
from formal.symbolic.execution import merged, running_until
from formal.symbolic.transition import CUT_POINTS, build_shape, state_template, symbolic_policy


@dataclass
class Pair:
    """The product's state: the new policy's vCPU and the base policy's."""

    new: Vcpu
    base: Vcpu


# A side's step as one word: bit i is props[i] violated, FAULT that the architecture faults,
# MODEL_ERROR that the policy contradicts the model on this path (kept as a bit, so that the
# merged call's other paths stay steps; the product raises the model error where it is set).
FAULT = 1 << 62
MODEL_ERROR = 1 << 61


class _Side:
    """One policy of the pair, whose step and first entry are merged calls."""

    def __init__(self, policy: Mechanism) -> None:
        self.policy = policy
        self.cfg = policy.cfg

    def _start(self, v: Vcpu, props: tuple[str, ...]) -> object:
        try:
            self.policy.start(v)
            return _word(enter(self.policy, v, props, None), props)
        except ModelError:
            return MODEL_ERROR

    def _step(self, v: Vcpu, e: ev.Event, props: tuple[str, ...]) -> object:
        try:
            fault, viol = execute(self.policy, v, e, props)
        except ModelError:
            return MODEL_ERROR
        return FAULT if fault is not None else _word(viol, props)

    start = merged(_start)
    step = merged(_step)


def _word(viol: list[Violation], props: tuple[str, ...]) -> object:
    out: object = 0
    for x in viol:
        out = out | on(x.when, 1 << props.index(x.prop))
    return out


class Lockstep:
    """The shape (formal.symbolic.transition.Single's counterpart) of two policies run on the
    same events."""

    def __init__(self, new_cls: type[Mechanism], base_cls: type[Mechanism]) -> None:
        self.new_cls, self.base_cls = new_cls, base_cls
        self.name = new_cls.name

    def template(self) -> Pair:
        return Pair(state_template(), state_template())

    def vcpus(self, state: Pair) -> list[tuple[type[Mechanism], Vcpu]]:
        return [(self.new_cls, state.new), (self.base_cls, state.base)]

    def local(self, name: str) -> str:
        return name.split(".", 1)[1]

    def start(self, cfg: Config, state: Pair, props: tuple[str, ...]) -> list[Violation]:
        new, base = (_Side(symbolic_policy(cls, cfg)).start(v, props)
                     for cls, v in self.vcpus(state))
        _check(new, base, "the first entry")
        return _added(new, base, props)

    def step(self, cfg: Config, kind: type[ev.Event], state: Pair, e: ev.Event,
             props: tuple[str, ...]) -> tuple[str | None, list[Violation]]:
        new, base = (_Side(symbolic_policy(cls, cfg, CUT_POINTS.get((cls.name, kind), ())))
                     .step(v, e, props) for cls, v in self.vcpus(state))
        _check(new, base, e.op)
        if new & FAULT:
            if not base & FAULT:
                raise ModelError(f"the architecture faults {e.op} under one policy only")
            return "fault", []
        if base & FAULT:
            raise ModelError(f"the architecture faults {e.op} under one policy only")
        return None, _added(new, base, props)


def _check(new: object, base: object, what: str) -> None:
    if (new | base) & MODEL_ERROR:
        raise ModelError(f"{what}: a policy contradicts the model")


def _added(new: object, base: object, props: tuple[str, ...]) -> list[Violation]:
    """Per property, violated by the new policy and not by the base."""
    return [Violation(p, "", truth(new & (1 << i)) & neg(truth(base & (1 << i))))
            for i, p in enumerate(props)]


def build(new_cls: type[Mechanism], base_cls: type[Mechanism], cfg: Config,
          kinds: list[type[ev.Event]] | None = None, props: tuple[str, ...] = PROPERTIES,
          deadline: Deadline | None = None, progress: Progress | None = None) -> Relation:
    """The product relation of new_cls and base_cls in cfg; its state variables are the two
    vCPUs' (new.*, base.*), and its violations are the new policy's that the base does not
    have at the same step."""
    with running_until(deadline):
        return build_shape(Lockstep(new_cls, base_cls), cfg, kinds, props, progress)
