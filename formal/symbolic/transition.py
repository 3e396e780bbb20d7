"""The transition relation: the model's step, executed symbolically once per event kind and
merged into one term per state field (docs/design.md §6).  No second encoding of any
policy exists: this runs the same `formal.model.machine.execute` the simulator runs, on a state
whose
leaves are SMT variables, with the event's operands free.

What is held concrete, and why (each is checked on every path, not assumed):
- `requests`: every step ends with vcpu_enter_guest, which services every request, so between
  events no request is pending.  A path that leaves one pending is a model error.
- in configurations without nested virtualization, the L2 state (guest_mode, the L1 registers,
  nested_pgd, VPID12, guest_mmu, the L2 hardware context): no event of such a configuration
  can reach it.  A path that changes it is a model error.
"""

from __future__ import annotations

import copy
import functools
import time
from collections.abc import Callable
from dataclasses import fields

from pysmt.fnode import FNode
from pysmt.shortcuts import FALSE, And, EqualsOrIff, Ite, Not, Or

from formal.engines.progress import Progress
from formal.engines.system import EventRelation, Relation
from formal.model import arch, properties
from formal.model import events as ev
from formal.model.kvm import Mechanism, root_in_l2
from formal.model.machine import enter, execute
from formal.model.properties import PROPERTIES, ModelError
from formal.model.scope import initial_not_modeled, not_modeled
from formal.model.state import Config, HwTlb, Regs, Vcpu
from formal.model.values import iff, neg, truth
from formal.solvers import Deadline
from formal.symbolic.execution import (
    Path,
    Sym,
    const,
    explore,
    fresh,
    get_leaf,
    leaves,
    merged,
    running_until,
    set_leaf,
)

# Fields outside the L1 state: fixed in configurations without nested virtualization.
L2_FIELDS = ("smram.", "l1.", "guest_mode", "nested_pgd", "vpid12", "last_vpid",
             "guest_mmu.", "mmu_is_guest", "nested_cpu_role", "hw.1.")


def state_template() -> Vcpu:
    """The state every symbolic state starts from: a vCPU before its first entry, with one
    hardware TLB record per context (formal.model.state.HwTlb).  The record's tag is free in the
    initial states (initial_relation) and no event changes it: the relation watches one tag,
    which the solver picks."""
    return Vcpu(regs=Regs(0, 0, 0, 0), hw=[[HwTlb()], [HwTlb()]])


def is_fixed(cfg: Config, name: str) -> bool:
    """Is this state leaf held concrete in cfg (see the module docstring)?"""
    if name == "requests":
        return True
    return cfg.nested is None and name.startswith(L2_FIELDS) and not name.startswith("smram.")


class Single:
    """The state and step of one policy's relation: a vCPU, and the model's step under the
    policy.  formal.symbolic.product.Lockstep is the other shape: two policies in lockstep."""

    def __init__(self, policy_cls: type[Mechanism]) -> None:
        self.policy_cls = policy_cls
        self.name = policy_cls.name

    def template(self) -> Vcpu:
        return state_template()

    def vcpus(self, state: Vcpu) -> list[tuple[type[Mechanism], Vcpu]]:
        """Each policy with the vCPU it runs on."""
        return [(self.policy_cls, state)]

    def local(self, name: str) -> str:
        """A state leaf's name within its vCPU."""
        return name

    def start(self, cfg: Config, state: Vcpu, props: tuple[str, ...]) -> list:
        policy = symbolic_policy(self.policy_cls, cfg)
        policy.start(state)
        return enter(policy, state, props, None)

    def step(self, cfg: Config, kind: type[ev.Event], state: Vcpu, e: ev.Event,
             props: tuple[str, ...]) -> tuple[str | None, list]:
        policy = symbolic_policy(self.policy_cls, cfg,
                                 CUT_POINTS.get((self.policy_cls.name, kind), ()))
        return execute(policy, state, e, props)


def state_names(cfg: Config, shape: Single | None = None) -> list[str]:
    """The symbolic state variables of cfg, in leaf order."""
    template = shape.template() if shape else state_template()
    local = shape.local if shape else (lambda n: n)
    return [n for n, _, _ in leaves(template) if not is_fixed(cfg, local(n))]


def symbolic_state(cfg: Config, prefix: str,
                   shape: Single | None = None) -> tuple[Vcpu, dict[str, Sym]]:
    """A state whose every non-fixed leaf is a fresh variable named prefix + its path."""
    v = shape.template() if shape else state_template()
    local = shape.local if shape else (lambda n: n)
    names: dict[str, Sym] = {}
    for name, owner, key in leaves(v):
        if is_fixed(cfg, local(name)):
            continue
        kind = "bool" if isinstance(get_leaf(owner, key), bool) else "bv"
        var = fresh(prefix + name, kind)
        set_leaf(owner, key, var)
        names[name] = var
    return v, names


def event_kinds(cfg: Config) -> list[type[ev.Event]]:
    """The events a configuration has: nested ones only with nested virtualization, INVVPID
    on VMX, INVLPGA on SVM; no INIT where it is blocked (arch.init_blocked)."""
    out = []
    for kind in ev.EVENT_TYPES.values():
        if kind is ev.Init and arch.init_blocked(cfg):
            continue
        if kind.op in ev.NESTED_OPS:
            if cfg.nested is None or (kind is ev.Invvpid and cfg.nested != "vmx") \
                    or (kind is ev.Invlpga and cfg.nested != "svm"):
                continue
        out.append(kind)
    return out


def operands(kind: type[ev.Event], prefix: str) -> dict[str, Sym]:
    return {f.name: fresh(f"{prefix}{kind.op}.{f.name}", "bv") for f in fields(kind)}


# Functions whose paths are merged into if-then-else terms where they return, so that their
# branches add to, rather than multiply, the paths of their callers
# (formal.symbolic.execution.merged).
# The choice changes the cost of symbolic execution, never its result.
MERGE_POINTS = ("kvm_set_cr0", "kvm_set_cr3", "kvm_set_cr4", "set_efer", "kvm_post_set_cr0",
                "kvm_post_set_cr4", "kvm_mmu_reset_context", "kvm_smm_changed", "kvm_mmu_new_pgd",
                "kvm_mmu_reload", "vcpu_enter_guest")


# Merge points whose merged state is also named by fresh variables (formal.symbolic.execution.
# merged, cut), per (policy, event kind).  RSM's handler makes up to eleven register writes one
# after another (em_rsm, rsm_enter_protected_mode), each of them a reset.  Where the reset keeps
# the roots (rfc-2022-02, 12/12), each write's root-cache search branches on the root slots
# merged by all the writes before it, and the solver's path-feasibility queries grow from one
# write to the next.  Cut after each write, every query sees one write.  Elsewhere a cut only
# adds infeasible paths, so none is made: those relations stay the same terms.  Like
# MERGE_POINTS, the choice changes the cost, never the relation (tests/test_symbolic_merge.py).
#
# em_rsm is a cut point too, and so, in this cell only, a merge point (a cut point outside
# MERGE_POINTS is merged where it is cut).  Without it em_rsm's own branches (CR4.PCIDE, CR0.PE,
# CR4.PAE, then SMRAM's PCIDE and PCID) each reach the guest entry, and vcpu_enter_guest is
# explored anew on each (its memo key holds the path's decisions).  What each cut saves is
# measured in docs/proving.md ("Cost").
RSM_CUTS = ("kvm_smm_changed", "kvm_set_cr0", "kvm_set_cr3", "kvm_set_cr4", "set_efer")
CUT_POINTS: dict[tuple[str, type[ev.Event]], tuple[str, ...]] = {
    ("rfc-2022-02", ev.Rsm): RSM_CUTS + ("em_rsm",),
}


def symbolic_policy(policy_cls: type[Mechanism], cfg: Config,
                    cuts: tuple[str, ...] = ()) -> Mechanism:
    """An instance of the policy whose MERGE_POINTS merge their paths (and name the merged state
    where they are in cuts); a function in cuts outside MERGE_POINTS is merged and cut."""
    policy = policy_cls(cfg)
    for name in MERGE_POINTS + tuple(c for c in cuts if c not in MERGE_POINTS):
        if hasattr(policy, name):
            setattr(policy, name, functools.partial(
                merged(getattr(policy_cls, name), cut=name in cuts), policy))
    return policy


class _Fixed(ModelError):
    pass


def _finish(cfg: Config, v: object, shape: Single) -> None:
    """The checks behind the concrete fields (module docstring): a branch, so that a path on
    which a fixed field could differ is split off as a model error; on the others the field
    is set back to its concrete value."""
    ref = shape.template()
    for (name, owner, key), (_, o0, k0) in zip(leaves(v), leaves(ref), strict=True):
        if is_fixed(cfg, shape.local(name)):
            val, want = get_leaf(owner, key), get_leaf(o0, k0)
            if isinstance(val, Sym) and val.node.simplify().is_constant():
                val = val.node.simplify().constant_value()
            if val != want:
                raise _Fixed(f"{name} is held fixed at {want} but can change")
            set_leaf(owner, key, want)


def event_relation(shape: Single, cfg: Config, pre_state: object, kind: type[ev.Event],
                   prefix: str, props: tuple[str, ...] = PROPERTIES) -> EventRelation:
    ops = operands(kind, prefix)
    start = time.perf_counter()

    def run():
        v = copy.deepcopy(pre_state)
        e = kind(**ops)
        if not_modeled(cfg, shape.vcpus(v)[0][1], e):
            return "not-modeled", v, []
        try:
            fault, viol = shape.step(cfg, kind, v, e, props)
            _finish(cfg, v, shape)
        except ModelError as exc:
            return "model-error", v, str(exc)
        return ("fault" if fault else "ok"), v, viol

    paths = explore(run)
    ok = [p for p in paths if p.result[0] == "ok"]
    per_path = _path_states(cfg, ok, shape)
    return EventRelation(
        name=kind.op, ops={f: var.node for f, var in ops.items()}, paths=len(paths),
        steps=_any(ok),
        not_modeled=_any([p for p in paths if p.result[0] == "not-modeled"]),
        model_error=_any([p for p in paths if p.result[0] == "model-error"]),
        post=_merge_state(cfg, ok, per_path, shape),
        violated=_violations(ok, props),
        seconds=time.perf_counter() - start,
        cases=[(p.condition, vals) for p, vals in zip(ok, per_path, strict=True)])


def _violations(paths: list[Path], props: tuple[str, ...]) -> dict[str, FNode]:
    out = {}
    for prop in props:
        out[prop] = Or([And(p.condition, _when(p.result[2], prop)) for p in paths]).simplify() \
            if paths else FALSE()
    return out


def _when(viol: list[properties.Violation], prop: str) -> FNode:
    for x in viol:
        if x.prop == prop:
            return const(x.when)
    return FALSE()


def _any(paths: list[Path]) -> FNode:
    return Or([p.condition for p in paths]).simplify() if paths else FALSE()


def _path_states(cfg: Config, paths: list[Path], shape: Single) -> list[dict[str, FNode]]:
    """Per path, the value of every state variable at its end."""
    names = state_names(cfg, shape)
    out = []
    for p in paths:
        vals = {n: get_leaf(o, k) for n, o, k in leaves(p.result[1])}
        out.append({n: const(vals[n]) for n in names})
    return out


def _merge_state(cfg: Config, paths: list[Path], per_path: list[dict[str, FNode]],
                 shape: Single) -> dict[str, FNode]:
    """Per state variable, ite(pc_1, value_1, ite(pc_2, ...)) over the paths (the last path's
    value is the default: the paths are exhaustive under `steps`)."""
    post: dict[str, FNode] = {}
    if not paths:
        return post
    for name in state_names(cfg, shape):
        out = per_path[-1][name]
        for p, vals in zip(reversed(paths[:-1]), reversed(per_path[:-1]), strict=True):
            out = Ite(p.condition, vals[name], out)
        post[name] = out.simplify()
    return post


def initial_relation(shape: Single, cfg: Config, pre: dict[str, Sym],
                     props: tuple[str, ...] = PROPERTIES) -> tuple[int, FNode, dict, FNode]:
    """The initial states: any legal register state (KVM_SET_SREGS's checks, in L1, outside
    SMM), a watched page of any attributes (global or not; 4 KiB, 2 MiB, 4 MiB or 1 GiB; user
    or supervisor; writable or not; executable or not) that the paging mode maps so
    (formal.model.scope), KVM's MMU set up for it and the first guest entry made
    (Machine.start); with two policies, both vCPUs from the same registers, page and
    watched tags."""
    regs = {r: fresh(f"init.{r}", "bv") for r in ("cr0", "cr3", "cr4", "efer")}
    watched = [fresh(f"init.hw.{ctx}.tag", "bv") for ctx in (0, 1)]
    page_global = fresh("init.page_global", "bool")
    page_large = fresh("init.page_large", "bool")
    # A 1 GiB or 4 MiB page is a large page: each free bit counts only with page_large, the
    # 4 MiB one only without the 1 GiB one.
    huge = fresh("init.page_1g", "bool")
    page_1g = huge & page_large
    page_4m = fresh("init.page_4m", "bool") & page_large & neg(huge)
    rights = {a: fresh(f"init.page_{a}", "bool") for a in ("user", "writable", "nx")}

    def run():
        state = shape.template()
        for _, v in shape.vcpus(state):
            v.regs = Regs(**regs)
            v.page_global = page_global
            v.page_large = page_large
            v.page_1g = page_1g
            v.page_4m = page_4m
            v.page_user, v.page_writable, v.page_nx = rights.values()
            for ctx, records in enumerate(v.hw):
                if not is_fixed(cfg, f"hw.{ctx}.0.tag"):
                    records[0].tag = watched[ctx]
        if arch.sregs_error(Regs(**regs)) or initial_not_modeled(shape.vcpus(state)[0][1]):
            return "illegal", state, []
        try:
            viol = shape.start(cfg, state, props)
            _finish(cfg, state, shape)
        except ModelError as exc:
            return "model-error", state, str(exc)
        return "ok", state, viol

    paths = explore(run)
    ok = [p for p in paths if p.result[0] == "ok"]
    post = _merge_state(cfg, ok, _path_states(cfg, ok, shape), shape)
    init = And([_any(ok)] + [EqualsOrIff(pre[n].node, post[n])
                             for n in state_names(cfg, shape)])
    return len(paths), init, _violations(ok, props), \
        _any([p for p in paths if p.result[0] == "model-error"])


def build(policy_cls: type[Mechanism], cfg: Config,
          kinds: list[type[ev.Event]] | None = None,
          props: tuple[str, ...] = PROPERTIES, deadline: Deadline | None = None,
          progress: Progress | None = None) -> Relation:
    """The relation of policy_cls in cfg over kinds (default: every kind of cfg); every path
    oracle's query is bounded by deadline (formal.solvers.Inconclusive once it has passed).
    progress hears which handler is being executed."""
    with running_until(deadline):
        return build_shape(Single(policy_cls), cfg, kinds, props, progress)


def build_shape(shape: Single, cfg: Config, kinds: list[type[ev.Event]] | None,
                props: tuple[str, ...], progress: Progress | None = None) -> Relation:
    """The relation of a shape (one policy, or two in lockstep); the candidate lemmas are each
    vCPU's, over its part of the state.  progress hears which handler is being executed."""
    progress = progress or Progress()
    pre_state, pre = symbolic_state(cfg, "s.", shape)
    progress("symbolic execution: the initial states")
    n, init, init_viol, init_err = initial_relation(shape, cfg, pre, props)
    rel = Relation(shape.name, cfg.name, state_names(cfg, shape),
                   {name: var.node for name, var in pre.items()}, n, init, init_viol,
                   init_err)
    for kind in kinds if kinds is not None else event_kinds(cfg):
        progress(f"symbolic execution: {kind.op}")
        rel.events.append(event_relation(shape, cfg, pre_state, kind, "e.", props))
    for policy_cls, v in shape.vcpus(pre_state):
        rel.lemmas += entry_lemmas(policy_cls, cfg, v) + legality_lemmas(cfg, v) \
            + [last_entry_lemma(policy_cls, cfg, v)] + role_lemmas(policy_cls, cfg, v) \
            + (idle_entry_lemmas(policy_cls, cfg, v) if cfg.nested else []) \
            + list(record_lemmas(cfg, v).values())
    return rel


def entry_lemmas(policy_cls: type[Mechanism], cfg: Config, pre_state: Vcpu) -> list[FNode]:
    """Per property, "the active root is valid and a guest entry now violates nothing": the
    properties' own conditions (formal.model.properties.conditions) on the pre-state."""
    def run():
        v = copy.deepcopy(pre_state)
        if not v.mmu.root.valid:
            return None
        return properties.conditions(symbolic_policy(policy_cls, cfg), v)

    paths = explore(run)
    out = []
    for prop in PROPERTIES:
        bad = [Or(Not(p.condition), Not(const(p.result[prop])))
               for p in paths if p.result is not None]
        invalid = [Not(p.condition) for p in paths if p.result is None]
        out.append(And(bad + invalid).simplify())
    return out


def _holds(fn: Callable[[], object]) -> FNode:
    """Where fn's truth value (a bool, or a term on the symbolic state) holds, over all its
    paths."""
    return Or([And(p.condition, const(p.result)) for p in explore(fn)]).simplify()


def last_entry_lemma(policy_cls: type[Mechanism], cfg: Config, pre_state: Vcpu) -> FNode:
    """The running hardware context's (formal.model.kvm.Mechanism.running_ctx1) record under
    the current tag has the current state's last entry (every step ends with a guest entry,
    formal.model.kvm.Mechanism.mark_active): same tables, stale exactly with paging off; with
    paging off where the hardware walks the guest's tables, that entry cached nothing and the
    record is an earlier one's."""
    policy = policy_cls(cfg)

    def run():
        v = copy.deepcopy(pre_state)
        in_ctx1 = truth(policy.running_ctx1(v))
        now, cur = arch.tables(v.regs), arch.tag(v)
        off = now == arch.NO_TABLES
        out = True
        for ctx in (0, 1):
            idle = neg(in_ctx1) if ctx else in_ctx1
            none = truth(policy.caches_no_linear(v, ctx))
            for r in v.hw[ctx]:
                same = (r.local.ran_tables == now) & iff(r.local.ran_stale, off)
                out = out & (idle | (r.tag != cur) | none | (r.local.ran & same))
        return out
    return _holds(run)


def role_lemmas(policy_cls: type[Mechanism], cfg: Config, pre_state: Vcpu) -> list[FNode]:
    """The cached roles are what kvm_init_mmu computes now (mmu.c: every role-bit change
    resets the MMU); with nested virtualization, also while L2 runs, root_mmu's are what it
    computes for L1's saved registers (VM exit resets to them).  Candidates only."""
    policy = policy_cls(cfg)

    def fields(v: Vcpu) -> list:
        return [v.root_mmu.cpu_role, v.root_mmu.root_role, v.guest_mmu.cpu_role,
                v.guest_mmu.root_role, v.nested_cpu_role]

    def run(l1: bool):
        v = copy.deepcopy(pre_state)
        w = copy.deepcopy(v)
        if l1:
            if not v.guest_mode:
                return True
            w.regs, w.guest_mode, w.mmu_is_guest = v.l1, False, False
        policy.kvm_init_mmu(w)
        same = [a == b for a, b in zip(fields(v), fields(w), strict=True)]
        return functools.reduce(lambda a, b: a & b, same[:2] if l1 else same)
    return [_holds(functools.partial(run, w)) for w in ((False, True) if cfg.nested else (False,))]


def idle_entry_lemmas(policy_cls: type[Mechanism], cfg: Config,
                      pre_state: Vcpu) -> list[FNode]:
    """The other hardware context's last-entry records are ones its entries could have left
    (formal.model.kvm.Mechanism.mark_active).  Candidates, of which houdini keeps the inductive:
    - while L2 runs, L1's record under the tag of L1's saved registers is of those registers
      (VM exit resumes them): same tables, unless paging is off there and the hardware walks
      L1's tables (TDP);
    - no record of paging off where the hardware walks the guest's tables, L2's under the
      current vmcs12 VPID, and stale exactly with paging off;
    - the same, but stale also when vmcs12/vmcb12 gave L2 VPID/ASID 0: L1 and L2 then share
      VPID 0, and the running context's invalidations and the VM transitions cover the other
      (SDM Vol. 3C §28.3.3.1, formal.model.arch._transition_invals;
      formal.model.arch.Inval.covers)."""
    policy = policy_cls(cfg)

    def run(which: str):
        v = copy.deepcopy(pre_state)
        ctx = 0 if v.guest_mode else 1
        out = True
        if which == "resume":
            if ctx:
                return True
            l1 = copy.copy(v)
            l1.regs, l1.guest_mode = v.l1, False
            none = truth(policy.caches_no_linear(l1, 0))
            for r in v.hw[0]:
                same = r.local.ran_tables == arch.tables(l1.regs)
                out = out & ((r.tag != arch.tag(l1)) | none | neg(r.local.ran) | same)
            return out
        walks = cfg.nested_tdp if ctx else cfg.tdp_enabled
        for r in v.hw[ctx]:
            off = r.local.ran_tables == arch.NO_TABLES
            shape = truth(neg(off) if walks else True)
            if ctx:  # L2's tag is vmcs12's VPID (arch.tag); only a VM entry sets vpid12
                shape = shape & (arch.tag_vpid(r.tag) == v.vpid12)
            if which == "strong":
                stale = iff(r.local.ran_stale, off)
            else:
                stale = neg(r.local.ran_stale) | off \
                    | ((v.vpid12 == 0) & (arch.tag_vpid(r.tag) == 0))
            out = out & (neg(r.local.ran) | (shape & stale))
        return out
    return [_holds(functools.partial(run, w)) for w in ("resume", "strong", "weak")]


def record_lemmas(cfg: Config, pre_state: Vcpu) -> dict[str, FNode]:
    """Under whatever tag, running or not, a hardware context holds nothing stale: no stale old
    translation, and a last-entry record stale only with paging off, and none of paging off
    where the hardware walks the guest's tables (formal.model.kvm.Mechanism.mark_active).  A policy
    that flushes what each invalidation covers keeps both; a step that switches to another tag
    (MOV CR3 with another PCID, a VM entry) then finds nothing stale under it.  With nested
    virtualization, also:
    - both with an exception for VPID 0, which L1 always runs under and L2 does when vmcs12
      gives it none: what the running level invalidates under VPID 0 (its INVLPG, a VM
      transition without VPID, SDM Vol. 3C §28.3.3.1) covers the idle level's entries under
      VPID 0 too, and KVM's flush for it (nested_vmx_transition_tlb_flush's TLB_FLUSH_GUEST)
      reaches the idle level's context only when it runs again under VPID 0.  So L1's idle
      context may hold stale entries while L2 runs without a VPID, and L2's entries under
      VPID 0 may be stale unless L2 runs under VPID 0;
    - L1's context holds nothing under a nonzero VPID: L1 always runs under VPID 0
      (arch.vpid), and only an entry fills a record.  Without it, L1's INVVPID naming the
      watched tag's VPID would make an L1 record under it stale, which KVM does not flush (it
      flushes L2's context, handle_invvpid);
    - a root whose old translations go to L1's context when it is freed (formal.model.kvm.
      root_in_l2) was last used under VPID 0 (mark_active tags it), which the previous one
      needs at a VM entry;
    - on SVM, both with L2's context excused while L1 runs: L1's INVLPGA does not flush it
      (invlpga_interception), every VMRUN does (nested_svm_transition_tlb_flush).
    Each for the record's non-global part and its global part (formal.model.state.HwTlb).
    Candidates only, by name: old, last, global-old, global-last; the same with -vpid0 and
    -l2-idle; l1-records, l1-roots."""
    def run(which: str, excuse: str):
        v = copy.deepcopy(pre_state)
        out = True
        l2_on_vpid0 = truth(v.guest_mode) & (v.vpid12 == 0)
        for ctx, records in enumerate(v.hw):
            walks = cfg.nested_tdp if ctx else cfg.tdp_enabled
            for r in records:
                if excuse == "none":
                    excused = False
                elif ctx == 0:
                    excused = l2_on_vpid0
                elif excuse == "vpid0":
                    excused = (arch.tag_vpid(r.tag) == 0) & neg(l2_on_vpid0)
                else:  # "l2-idle"
                    excused = neg(truth(v.guest_mode))
                off = r.local.ran_tables == arch.NO_TABLES
                if which == "old":
                    held = neg(r.local.stale)
                elif which == "last":
                    held = neg(r.local.ran) | ((neg(off) if walks else True)
                                               & (neg(r.local.ran_stale) | off))
                elif which == "global-old":
                    held = neg(r.glob.stale)
                else:  # "global-last": global copies are cached only with paging on
                    held = neg(r.glob.ran) | neg(r.glob.ran_stale)
                out = out & (held | excused)
        return out

    def l1_on_vpid0():
        v = copy.deepcopy(pre_state)
        out = True
        for r in v.hw[0]:
            out = out & ((arch.tag_vpid(r.tag) == 0)
                         | (neg(r.local.holds()) & neg(r.glob.holds())))
        return out

    def l1_roots_on_vpid0():
        v = copy.deepcopy(pre_state)
        out = True
        for root in v.all_roots():
            out = out & (neg(root.valid) | truth(root_in_l2(root)) | (arch.tag_vpid(root.tag) == 0))
        return out

    excuses = ("none", "vpid0") if cfg.nested else ("none",)
    parts = ("old", "last", "global-old", "global-last")
    out = {w if x == "none" else f"{w}-{x}": _holds(functools.partial(run, w, x))
           for x in excuses for w in parts}
    if cfg.nested:
        out |= {"l1-records": _holds(l1_on_vpid0), "l1-roots": _holds(l1_roots_on_vpid0)}
    if cfg.nested == "svm":
        out |= {f"{w}-l2-idle": _holds(functools.partial(run, w, "l2-idle")) for w in parts}
    return out


def legality_lemmas(cfg: Config, pre_state: Vcpu) -> list[FNode]:
    """The register images hold values KVM_SET_SREGS would accept (arch.sregs_error): the
    registers; the SMRAM image while in SMM (saved at SMI, restored by RSM); with nested
    virtualization, L1's registers while L2 runs (saved at VM entry, restored at VM exit)."""
    def legal(image: Callable[[Vcpu], Regs | None]) -> FNode:
        def run():
            regs = image(copy.deepcopy(pre_state))
            return regs is None or arch.sregs_error(regs) is None
        return _holds(run)

    out = [legal(lambda v: v.regs), legal(lambda v: v.smram if v.smm else None)]
    if cfg.nested is not None:
        out.append(legal(lambda v: v.l1 if v.guest_mode else None))
    return out
