"""Counterexample replay: an abstract trace run on the concrete shadow MMU
(formal.concrete.shadow), with a guest access after every event judged by the saturated-TLB oracle
(formal.concrete.tlb_oracle, docs/design.md §2).

The trace is concretized: every pgd in it gets page tables mapping WATCHED_VA to a data page of
its own, and every guest_pte_write points that leaf at a fresh page, so an out-of-sync translation
differs from the current one.  Before each event the guest lays out the root frame of the CR3 it
will run on for the paging mode it will run in (GuestWorld.format_root).  The architecture's side
is one oracle per VPID context: L1 (VPID 0) and L2 per VPID12 (L2 with VPID12 = 0 shares VPID 0
with L1; every VM entry and exit then flushes both, SDM Vol. 3C §28.3.3.1, so separate oracles
are equivalent).  After KVM's guest entry the guest reads WATCHED_VA (a user read, CPL 3): the
concrete level says every translation it may get (the active root's and whatever the hardware TLB
holds under the current PCID), and the first one the oracle forbids is reported.  On a
supervisor page (Page.user false) the read is a supervisor one, CPL 0: either way the read is one
the page's rights allow whatever CR0.WP, CR4.SMEP/SMAP and EFER.NXE are (SDM Vol. 3A §4.6.1).

L1's EPT/NPT (nested-ept, nested-npt): no event invalidates guest-physical mappings (INVEPT is not
modelled; VM entries and exits without VPID invalidate linear and combined mappings only, SDM
Vol. 3C §28.4.3.1), so every EPT translation L1 ever set stays allowed for L2.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from formal.concrete.emulation import first_divergence
from formal.concrete.paging import Mode, Perms, paging_mode
from formal.concrete.shadow import ConcreteMmuMixin, GuestWorld, Seen, concrete_policy
from formal.concrete.tlb_oracle import TlbOracle
from formal.errors import NotModeled
from formal.model import arch, bits
from formal.model import events as ev
from formal.model.kvm import Mechanism
from formal.model.machine import Machine
from formal.model.properties import ModelError
from formal.model.scope import not_modeled
from formal.model.simulate import check_initial
from formal.model.state import CONFIGS, Config, Regs, Vcpu
from formal.model.trace import Trace, page_to_json

VA = arch.WATCHED_VA


@dataclass(frozen=True)
class ReplayOutcome:
    """The first forbidden access, or none: event is its index (-1: the first guest entry),
    observed the GPA the guest got, allowed the GPAs the architecture permits (for an emulated
    access: the GPA KVM's walk reached and the architecture's, each absent where it faults)."""

    trace: Trace
    event: int | None = None
    observed: int | None = None
    allowed: tuple[int, ...] = ()
    message: str = ""
    events_run: int = 0

    @property
    def violated(self) -> bool:
        return self.event is not None


# An oracle context: None for L1 (VPID 0), an int for L2 under that VPID12.
Key = int | None


@dataclass
class _Contexts:
    """The architecture: one saturated TLB per VPID context, and why each entry left it."""

    cfg: Config
    world: GuestWorld
    oracles: dict[Key, TlbOracle] = field(default_factory=dict)
    # (context, PCID, 4 KiB frame of VA) -> (event, invalidation) that removed that translation
    # last
    gone: dict[tuple[Key, int, int], tuple[int, str]] = field(default_factory=dict)

    def start(self, key: Key, regs: Regs) -> None:
        oracle = TlbOracle(self.world.mem, regs, vendor=self.cfg.vendor)
        oracle.watch(VA)
        self.oracles[key] = oracle

    def run(self, index: int, keys: list[Key], why: str, op: Callable[[TlbOracle], None]) -> None:
        for key in keys:
            oracle = self.oracles.get(key)
            if oracle is None:
                continue  # a VPID that never ran has nothing cached
            before = set(oracle.entries)
            op(oracle)
            for e in before - set(oracle.entries):
                self.gone[(key, e.pcid, e.paddr(VA) & ~0xFFF)] = (index, why)

    def vpid0(self) -> list[Key]:
        return [None, 0]

    def allowed(self, key: Key, v: Vcpu) -> list[tuple[int, Perms | None]]:
        """(GPA, rights) of every translation of VA the architecture permits now."""
        oracle = self.oracles[key]
        if oracle.regs != v.regs:
            raise ModelError(f"replay: the oracle holds registers {oracle.regs} but the vCPU "
                             f"{v.regs}")
        found: list[tuple[int, Perms | None]]
        if oracle.mode is Mode.NONE:
            found = [(VA, None)]  # SDM §4.1.1: without paging, linear = physical
        else:
            found = [(e.paddr(VA), e.perms) for e in oracle.usable(VA)]
            fresh = oracle.fresh(VA)
            if fresh is not None:
                found.insert(0, (fresh.paddr, fresh.perms))
        if v.mmu_is_guest:
            offsets = self.world.ept[v.nested_pgd & bits.CR3_ADDR_MASK]
            found = [(gpa + off, perms) for gpa, perms in found for off in offsets]
        return list(dict.fromkeys(found))


def _key(v: Vcpu) -> Key:
    return v.vpid12 if v.guest_mode else None


def _pgds(t: Trace) -> list[int]:
    """Every pgd the trace names: the initial CR3, MOV CR3 values, register images, PTE writes."""
    out = [t.initial.cr3]
    for e in t.events:
        match e:
            case ev.MovCr3(value=value):
                out.append(value)
            case ev.SetSregs(cr3=cr3) | ev.VmEntry(cr3=cr3):
                out.append(cr3)
            case ev.GuestPteWrite(pgd=pgd):
                out.append(pgd)
    return out


def _mode(regs: Regs) -> Mode:
    return paging_mode(regs.cr0, regs.cr4, regs.efer)


def _architecture(ctx: _Contexts, index: int, v: Vcpu, e: ev.Event, a: arch.ArchStep) -> None:
    """Apply a legal event to the oracles (SDM Vol. 3A §4.10.4.1 through the oracle's own rules,
    not formal.model.arch's)."""
    key = _key(v)
    why = "; ".join(i.why for i in a.invals) or e.describe()

    def here(op: Callable[[TlbOracle], None]) -> None:
        ctx.run(index, [key], why, op)

    match e:
        case ev.MovCr0():
            here(lambda o: o.mov_cr0(a.regs.cr0))
        case ev.MovCr3(value=value):
            here(lambda o: o.mov_cr3(value))
        case ev.MovCr4(value=value):
            here(lambda o: o.mov_cr4(value))
        case ev.WrmsrEfer(value=value):
            here(lambda o: o.wrmsr_efer(value))
        case ev.Invlpg(va=va):
            if arch.canonical(va):  # SDM INVLPG: a NOP for a non-canonical address
                here(lambda o: o.invlpg(va))
        case ev.Invpcid(type=kind, pcid=pcid, va=va):
            here(lambda o: o.invpcid(kind, pcid, va))
        case ev.GuestPteWrite(pgd=pgd):
            if ctx.cfg.nested_tdp and pgd & bits.CR3_ADDR_MASK \
                    == v.nested_pgd & bits.CR3_ADDR_MASK:
                ctx.world.add_ept(pgd)
                ctx.world.write_ept(pgd)
            else:
                addr, value = ctx.world.new_leaf(pgd)
                here(lambda o: o.write(addr, value))
        case ev.GuestPteWriteOther(pgd=pgd):
            ctx.world.write_other(pgd)  # another page: nothing the oracle watches changes
        case ev.PvTlbFlush():
            here(lambda o: o.flush(why))
        case ev.Smi():
            here(lambda o: o.smi(a.regs))
        case ev.Rsm():
            here(lambda o: o.rsm(a.regs))
        case ev.SetSregs():
            here(lambda o: o.load(a.regs, why, flush=bool(a.invals)))
        case ev.Init():
            # SDM Vol. 3A §10.1 (Table 10-1: TLBs invalid): every context's entries go, as
            # formal.model.arch's INIT invalidation covers every VPID.
            ctx.run(index, [k for k in ctx.oracles if k != key], why, lambda o: o.flush(why))
            here(lambda o: o.init())
        case ev.VmEntry(vpid=vpid, nested_pgd=nested_pgd):
            if not vpid:
                ctx.run(index, ctx.vpid0(), why, lambda o: o.flush(why))
            if ctx.cfg.nested_tdp:
                ctx.world.add_ept(nested_pgd)
            if vpid in ctx.oracles:
                ctx.run(index, [vpid], why, lambda o: o.load(a.regs, why, flush=False))
            else:
                ctx.start(vpid, a.regs)
        case ev.VmExit():
            if not v.vpid12:
                ctx.run(index, ctx.vpid0(), why, lambda o: o.flush(why))
        case ev.Invvpid(type=kind, vpid=vpid, va=va):
            if kind == 0:
                ctx.run(index, [vpid], why, lambda o: o.invalidate_page(va, why))
            elif kind == 2:
                ctx.run(index, [k for k in ctx.oracles if k], why, lambda o: o.flush(why))
            else:  # 1, and 3 (retaining globals)
                ctx.run(index, [vpid], why, lambda o: o.flush(why, keep_globals=kind == 3))
        case ev.Invlpga(va=va, asid=asid):
            keys = ctx.vpid0() if asid == 0 else [asid]
            ctx.run(index, keys, why, lambda o: o.invalidate_page(va, why))
        case ev.CpuidUpdate():
            pass


def _prepare(world: GuestWorld, regs: Regs) -> None:
    """The guest lays out the root it is about to run on for the mode it runs in."""
    mode = _mode(regs)
    if mode is not Mode.NONE:
        world.add_pgd(regs.cr3)
        world.format_root(regs.cr3, mode)


def _check(t: Trace, ctx: _Contexts, policy: ConcreteMmuMixin, index: int,
           v: Vcpu) -> ReplayOutcome | None:
    """The guest's read of VA after entry: the first translation it may get that the
    architecture forbids, as an outcome (without the trace filled in)."""
    key = _key(v)
    allowed = ctx.allowed(key, v)
    for seen in policy.observable(v):
        if any(seen.gpa == gpa and (perms is None or perms == seen.perms)
               for gpa, perms in allowed):
            continue
        return _forbidden(t, ctx, index, v, seen, allowed)
    return None


def _emulated(t: Trace, world: GuestWorld, index: int, v: Vcpu) -> ReplayOutcome | None:
    """The first access KVM would emulate differently from the architecture: its software
    walker uses the walk MMU's cached cpu role (formal.concrete.emulation)."""
    found = first_divergence(world.mem, v.regs, v.walk_cpu_role, VA)
    if found is None:
        return None
    where = "initial entry" if index < 0 else f"event {index}"
    level = "L2" if v.guest_mode else "L1"
    return ReplayOutcome(t, index, found.kvm[0], () if found.arch[0] is None else
                         (found.arch[0],), f"{where}, {level}: "
                         + found.describe(v.walk_cpu_role), index + 1)


def _after_entry(t: Trace, ctx: _Contexts, policy: ConcreteMmuMixin, index: int,
                 v: Vcpu) -> ReplayOutcome | None:
    """What the guest observes after an entry: its read of VA, then the accesses KVM
    emulates."""
    return _check(t, ctx, policy, index, v) or _emulated(t, ctx.world, index, v)


def _forbidden(t: Trace, ctx: _Contexts, index: int, v: Vcpu, seen: Seen,
               allowed: list[tuple[int, Perms | None]]) -> ReplayOutcome:
    gpas = tuple(dict.fromkeys(gpa for gpa, _ in allowed))
    pcid = arch.pcid(v.regs)
    where = "initial entry" if index < 0 else f"event {index}"
    level = "L2" if v.guest_mode else "L1"
    only = " or ".join(f"{g:#x}" for g in gpas) if gpas else "none (the walk faults)"
    cause = ctx.gone.get((_key(v), pcid, seen.gpa & ~0xFFF))
    if cause is not None:
        since = f" since {cause[1]} at event {cause[0]}"
    else:
        since = f" (GPA {seen.gpa:#x} was never cached under PCID {pcid:#x})"
    if seen.gpa in gpas:
        only += f" with rights {', '.join(str(p) for g, p in allowed if g == seen.gpa)}"
        seen_text = f"GPA {seen.gpa:#x} with rights {seen.perms}"
    else:
        seen_text = f"GPA {seen.gpa:#x}"
    cpl = "user" if t.page.user else "supervisor"
    message = (f"{where}, {level} {cpl} read of VA {VA:#x} returned {seen_text} ({seen.via}); "
               f"the architecture allows only GPA {only}{since}")
    return ReplayOutcome(t, index, seen.gpa, gpas, message, index + 1)


def replay(t: Trace, policy_cls: type[Mechanism]) -> ReplayOutcome:
    """Run t on the concrete level and return the first forbidden access, if any.  Raises
    NotModeled for a trace the concrete level cannot run (as simulate.run does) and ModelError
    when the levels contradict themselves."""
    cfg = CONFIGS[t.config]
    check_initial(t)
    world = GuestWorld(t.page)
    for pgd in _pgds(t):
        world.add_pgd(pgd)
    _prepare(world, t.initial)
    policy = concrete_policy(policy_cls)(cfg, world)
    ctx = _Contexts(cfg, world)
    ctx.start(None, t.initial)
    m = Machine(policy, t.initial, page=t.page)
    m.start()
    found = _after_entry(t, ctx, policy, -1, m.v)
    for i, e in enumerate(t.events):
        if found is not None:
            return found
        why = not_modeled(cfg, m.v, e)
        if why:
            raise NotModeled(f"event {i} ({e.op}): {why}")
        a = arch.step(cfg, m.v, e)
        if not a.fault:
            _prepare(world, a.regs)
            _architecture(ctx, i, m.v, e, a)
        try:
            m.step(i, e)
        except NotModeled as exc:
            raise NotModeled(f"event {i} ({e.op}): {exc}") from None
        ctx.oracles[_key(m.v)].refill(f"event {i}")
        found = _after_entry(t, ctx, policy, i, m.v)
    return found or ReplayOutcome(t, events_run=len(t.events))



def outcome_json(out: ReplayOutcome) -> dict[str, object]:
    """The outcome as data (`flushproof replay --json`)."""
    return {
        "policy": out.trace.policy, "config": out.trace.config,
        "page": page_to_json(out.trace.page),
        "verdict": "forbidden" if out.violated else "holds",
        "event": out.event, "observed": None if out.observed is None else f"{out.observed:#x}",
        "allowed": [f"{g:#x}" for g in out.allowed], "message": out.message,
        "events_run": out.events_run,
    }
