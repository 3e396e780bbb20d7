"""The mutation campaign of issue #17 (item 3): single-line mutants of v6.6's flush and
root-reuse code, generated from the spec source with `ast`, each decided against v6.6.  Not run
by CI.

    python bench/mutants.py [--no-proofs] [--budget SECONDS] [--sequences N] [--limit N]
        [--bound 2] [--timeout 120] [--shard K/N] [--only NAME,...] [--json OUT]

Generation walks the MRO of specs.POLICIES["v6.6"] (v6.6 -> v6.4 -> v5.18 -> ... -> common)
and, for every target method that v6.6 actually runs (its own definition, or the one an
override reaches through super()), makes one mutant per
- statement dropped: an expression statement calling a request/flush/free/unload/sync helper;
- `if` negated: the condition `c` becomes `not c`;
- boolean operand replaced: one operand of an `and`/`or` becomes True, and another mutant False.
A mutant is a subclass of V6_6 whose one method is the mutated source (ast.unparse, compiled
with the defining module's globals), registered as `v6.6-mut-NNN` the way formal.cli.policies
registers a loaded policy file (its _LOADED table, so that policies.known() and
prove.Obligation see it).  A mutant whose handlers raise on policies._exercise is stillborn:
reported, not counted.

Deciding a mutant:
1. cheap stage: the corpus traces (traces/) and --sequences random sequences per
   configuration (formal.cli.workdiff.random_trace, and as many short ones with every event
   kind equally likely; with --global-pages each also with a global watched page) on the
   model simulator, every event run;
   a violation the mutant has at an event where v6.6 has none (or a model error: KVM leaves
   registers the architecture does not give) kills it;
2. differential stage (unless --no-proofs): prove.Obligation(mutant, config, PROPERTIES,
   "bmc", --bound, --timeout, base="v6.6") on tdp and shadow: refuted (a counterexample the
   base does not have, replayed) kills, proved = equivalent, bounded = survived within the
   bound.  --budget caps the seconds spent in this stage.
--shard K/N decides every N-th mutant from the K-th (0-based), so that N processes share the
campaign; their --json outputs together are the whole.  --only decides the named mutants
(v6.6-mut-NNN) only: the rest of a stopped shard.
"""

from __future__ import annotations

import argparse
import ast
import inspect
import json
import os
import random
import re
import textwrap
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from types import FunctionType

from rich.console import Console
from rich.table import Table

from formal.cli import policies, prove, workdiff
from formal.errors import InputError
from formal.model import events as ev
from formal.model import simulate as model_simulate
from formal.model.kvm import Mechanism
from formal.model.machine import Machine
from formal.model.properties import PROPERTIES, ModelError
from formal.model.scope import not_modeled
from formal.model.state import CONFIGS, Page
from formal.model.trace import Trace
from specs import POLICIES

BASE = "v6.6"
ROOT = Path(__file__).resolve().parent.parent

# The methods implementing the paths of issue #17 item 3: CR0/CR4/CR3 writes and EFER, the
# root cache (kvm_mmu_new_pgd and its helpers), PCID invalidation and INVLPG/INVPCID, request
# servicing at guest entry, the nested transitions and their flushes, SMM, KVM_SET_SREGS.
TARGETS = frozenset({
    "kvm_set_cr0", "kvm_post_set_cr0", "kvm_set_cr4", "kvm_post_set_cr4", "set_efer",
    "kvm_set_cr3", "kvm_mmu_new_pgd", "_kvm_mmu_new_pgd", "fast_pgd_switch",
    "cached_root_find_and_keep_current", "cached_root_find_without_current",
    "kvm_mmu_free_roots", "kvm_mmu_unload", "kvm_mmu_reset_context", "kvm_mmu_reload",
    "kvm_mmu_load", "kvm_mmu_sync_roots", "kvm_mmu_sync_prev_roots",
    "kvm_invalidate_pcid", "kvm_handle_invpcid", "kvm_mmu_invpcid_gva", "kvm_mmu_invlpg",
    "vcpu_enter_guest", "service_root_request", "kvm_vcpu_flush_tlb_guest",
    "kvm_vcpu_flush_tlb_all", "kvm_vcpu_flush_tlb_current",
    "nested_vmx_enter_non_root_mode", "nested_vmx_vmexit", "nested_vmx_transition_tlb_flush",
    "flush_new_vpid12", "nested_vmx_load_cr3", "nested_ept_init_mmu_context",
    "enter_svm_guest_mode", "nested_svm_vmexit", "nested_svm_transition_tlb_flush",
    "nested_svm_load_cr3", "nested_tdp_new_pgd", "handle_invvpid", "invlpga",
    "kvm_smm_changed", "enter_smm", "em_rsm", "rsm_enter_protected_mode",
    "set_sregs_common", "set_sregs", "kvm_vcpu_reset", "kvm_vcpu_after_set_cpuid",
})
# A dropped statement calls one of these helpers.
HELPER = re.compile(r"request|flush|free|unload|sync|reset_context|invalidate|invlpg|new_pgd")


@dataclass(frozen=True)
class Site:
    """One method v6.6 runs, where it is defined, and how v6.6 reaches it."""

    owner: type[Mechanism]  # the class defining it
    name: str
    via: type[Mechanism] | None  # the v6.6 override reaching it through super(), if any


@dataclass
class Mutant:
    name: str
    kind: str  # drop | negate-if | bool-true | bool-false
    location: str  # file:line
    original: str
    mutated: str
    cls: type[Mechanism] | None = None
    stillborn: str = ""


@dataclass
class Outcome:
    mutant: str
    kind: str
    location: str
    original: str
    mutated: str
    verdict: str  # killed | equivalent | survived | survived-within-bound | stillborn | unknown
    how: str
    seconds: float


def sites(base: type[Mechanism]) -> list[Site]:
    """The target methods v6.6 runs, in MRO order: each one's effective definition, plus a
    definition an effective one reaches through super()."""
    out = []
    for cls in base.__mro__:
        if not cls.__module__.startswith("specs."):
            continue
        for name, fn in vars(cls).items():
            if name not in TARGETS or not isinstance(fn, FunctionType):
                continue
            effective = getattr(base, name)
            if effective is fn:
                out.append(Site(cls, name, None))
                continue
            over = _defining(base, name)
            if over is not None and _next_definer(base, over, name) is cls \
                    and "super()" in inspect.getsource(vars(over)[name]):
                out.append(Site(cls, name, over))
    return out


def _defining(base: type, name: str) -> type | None:
    return next((c for c in base.__mro__ if name in vars(c)), None)


def _next_definer(base: type, after: type, name: str) -> type | None:
    mro = base.__mro__
    return next((c for c in mro[mro.index(after) + 1:] if name in vars(c)), None)


def _method_ast(cls: type, name: str) -> tuple[ast.FunctionDef, str, int]:
    fn = vars(cls)[name]
    lines, first = inspect.getsourcelines(fn)
    tree = ast.parse(textwrap.dedent("".join(lines)))
    node = tree.body[0]
    assert isinstance(node, ast.FunctionDef)
    ast.increment_lineno(node, first - 1)
    return node, inspect.getsourcefile(fn) or "?", first


class _Points(ast.NodeVisitor):
    """The mutation points of a method body, as (kind, node path) in source order."""

    def __init__(self) -> None:
        self.points: list[tuple[str, ast.AST, int | None]] = []

    def visit_Expr(self, node: ast.Expr) -> None:
        call = node.value
        if isinstance(call, ast.Call):
            f = call.func
            callee = f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")
            if HELPER.search(callee):
                self.points.append(("drop", node, None))
        self.generic_visit(node)

    def visit_If(self, node: ast.If) -> None:
        self.points.append(("negate-if", node, None))
        self.generic_visit(node)

    def visit_BoolOp(self, node: ast.BoolOp) -> None:
        for i in range(len(node.values)):
            self.points.append(("bool-true", node, i))
            self.points.append(("bool-false", node, i))
        self.generic_visit(node)


class _Apply(ast.NodeTransformer):
    """Apply one mutation (the point's kind at the node with the given position), and rewrite
    zero-argument super() as super(OWNER, self): the method no longer sits in OWNER's body."""

    def __init__(self, kind: str, key: tuple[int, int], index: int | None, owner: str) -> None:
        self.kind, self.key, self.index, self.owner = kind, key, index, owner
        self.done = False

    def _hit(self, node: ast.AST) -> bool:
        return (node.lineno, node.col_offset) == self.key  # type: ignore[attr-defined]

    def visit_Call(self, node: ast.Call) -> ast.AST:
        self.generic_visit(node)
        if isinstance(node.func, ast.Name) and node.func.id == "super" and not node.args:
            node.args = [ast.Name(self.owner, ast.Load()), ast.Name("self", ast.Load())]
        return node

    def visit_Expr(self, node: ast.Expr) -> ast.AST | None:
        if self.kind == "drop" and self._hit(node):
            self.done = True
            return ast.Pass()
        return self.generic_visit(node)

    def visit_If(self, node: ast.If) -> ast.AST:
        if self.kind == "negate-if" and self._hit(node):
            self.done = True
            node.test = ast.UnaryOp(ast.Not(), node.test)
        return self.generic_visit(node)

    def visit_BoolOp(self, node: ast.BoolOp) -> ast.AST:
        if self.kind.startswith("bool-") and self._hit(node):
            self.done = True
            node.values[self.index] = ast.Constant(self.kind == "bool-true")  # type: ignore[index]
        return self.generic_visit(node)


def _line_of(node: ast.AST, kind: str, index: int | None) -> tuple[int, str]:
    """The source line a point mutates and its text, one line."""
    target = node.values[index] if index is not None else node  # type: ignore[attr-defined]
    if kind == "negate-if":
        target = node.test  # type: ignore[attr-defined]
    return target.lineno, ast.unparse(target).splitlines()[0]  # type: ignore[attr-defined]


def generate(base_name: str = BASE) -> Iterator[Mutant]:
    """Every mutant of the target methods of base_name, numbered in generation order."""
    base = POLICIES[base_name]
    n = 0
    for site in sites(base):
        tree, path, _ = _method_ast(site.owner, site.name)
        finder = _Points()
        for stmt in tree.body:
            finder.visit(stmt)
        module = inspect.getmodule(site.owner)
        assert module is not None
        for kind, node, index in finder.points:
            n += 1
            fresh, _, _ = _method_ast(site.owner, site.name)
            key = (node.lineno, node.col_offset)  # type: ignore[attr-defined]
            tx = _Apply(kind, key, index, site.owner.__name__)
            fresh = ast.fix_missing_locations(tx.visit(fresh))
            assert tx.done, (site, kind, key)
            fresh.decorator_list = []
            line, before = _line_of(node, kind, index)
            after = _mutated_text(kind, before)
            name = f"{base_name}-mut-{n:03d}"
            rel = os.path.relpath(path, ROOT)
            m = Mutant(name, kind, f"{rel}:{line} ({site.name})", before, after)
            m.cls = _compile(name, base, site, fresh, vars(module))
            yield m


def _mutated_text(kind: str, before: str) -> str:
    return {"drop": "pass", "negate-if": f"not ({before})", "bool-true": "True",
            "bool-false": "False"}[kind]


def _compile(name: str, base: type[Mechanism], site: Site, fn: ast.FunctionDef,
             globs: dict[str, object]) -> type[Mechanism]:
    scope = dict(globs)
    exec(compile(ast.Module([fn], []), f"<{name}>", "exec"), scope)  # noqa: S102
    mutated = scope[fn.name]
    body: dict[str, object] = {"name": name, site.name: mutated}
    if site.via is not None:
        # The v6.6 override calls the mutated definition through super(): the mutant is a
        # class over one carrying the mutated method, with a copy of the override whose
        # super() is super(MUTANT, self), which lands on the mutated method.
        middle = type(f"{site.owner.__name__}Mut", (base,), {site.name: mutated})
        over, _, _ = _method_ast(site.via, site.name)
        over = ast.fix_missing_locations(_Apply("none", (0, 0), None, "_MUTANT").visit(over))
        over.decorator_list = []
        via_scope = dict(vars(inspect.getmodule(site.via)))  # type: ignore[arg-type]
        exec(compile(ast.Module([over], []), f"<{name}>", "exec"), via_scope)  # noqa: S102
        cls = type(name, (middle,), {"name": name, site.name: via_scope[over.name]})
        via_scope["_MUTANT"] = cls
        return cls
    return type(name, (base,), body)


def register(m: Mutant) -> None:
    """Register m like a loaded policy file, unless its handlers raise on the exercise."""
    assert m.cls is not None
    try:
        policies._exercise(Path(m.location.split(":")[0]), m.cls)
    except policies.PolicyFileError as exc:
        m.stillborn = str(exc)
        return
    policies._LOADED[m.name] = m.cls


# -- the cheap stage --

@dataclass
class Probe:
    """A trace and v6.6's violations per event (index -1: the first entry)."""

    source: str
    trace: Trace
    base: dict[int, set[str]]


def _violations(t: Trace, cls: type[Mechanism]) -> dict[int, set[str]]:
    out: dict[int, set[str]] = {}

    def keep(rec: object) -> None:
        vs = rec.violations  # type: ignore[attr-defined]
        if vs:
            i = -1 if rec.event is None else rec.index  # type: ignore[attr-defined]
            out[i] = {v.prop for v in vs}

    model_simulate.run(t, cls, stop_at_violation=False, on_record=keep)
    return out


def probes(sequences: int, seed: int, pages: tuple[bool, ...] = (False,)) -> list[Probe]:
    """The corpus traces (each with the page it names) and, per configuration, sequences random
    and as many uniform sequences, each run once per page kind in pages (False: the page is
    not global, True: it is; docs/model.md "Global pages")."""
    base = POLICIES[BASE]
    out = []
    for name, t in workdiff.corpus_traces(ROOT / "traces", tuple(CONFIGS)):
        t = replace(t, policy=BASE)
        try:
            out.append(Probe(f"corpus:{name}", t, _violations(t, base)))
        except InputError:
            continue
    for config in CONFIGS:
        rng = random.Random(f"{seed}/{config}")
        for i in range(sequences):
            drawn = [("random", workdiff.random_trace(rng, BASE, config)),
                     ("uniform", uniform_trace(rng, config, SHORT))]
            for how, t in drawn:
                for page in pages:
                    paged = replace(t, page=Page(global_=page))
                    out.append(Probe(f"{how}:{config}#{i}{'/global' if page else ''}", paged,
                                     _violations(paged, base)))
    return out


# Events per uniform sequence: short, as a mutant's shortest counterexample usually is.
SHORT = 6


def uniform_trace(rng: random.Random, config: str, length: int) -> Trace:
    """length events, every kind equally likely (workdiff.random_trace weights them as a guest
    issues them, MOV CR3 most, and its MOV CR3s sync the roots that an INVLPG/INVPCID mutant
    leaves stale), from workdiff's values, each one the model covers where v6.6 is."""
    cfg = CONFIGS[config]
    m = Machine(POLICIES[BASE](cfg), workdiff.INITIAL)
    m.start()
    pick = rng.choice
    kinds = [
        lambda: ev.MovCr3(pick(workdiff.PGDS) | pick((0, 1, 2)) | pick((0, workdiff.NOFLUSH))),
        lambda: ev.GuestPteWrite(pick(workdiff.PGDS)),
        lambda: ev.GuestPteWriteOther(pick(workdiff.PGDS)),
        lambda: ev.Invlpg(workdiff.VA),
        lambda: ev.Invpcid(rng.randrange(4), rng.randrange(3), workdiff.VA),
        lambda: ev.PvTlbFlush(), lambda: ev.MovCr4(pick(workdiff.CR4S)),
        lambda: ev.MovCr0(pick(workdiff.CR0S)), lambda: ev.WrmsrEfer(pick(workdiff.EFERS)),
        lambda: ev.Smi(), lambda: ev.Rsm(), lambda: ev.Init(), lambda: ev.CpuidUpdate(),
        lambda: ev.SetSregs(pick(workdiff.CR0S), pick(workdiff.PGDS), pick(workdiff.CR4S),
                            pick(workdiff.EFERS)),
    ]
    events: list[ev.Event] = []
    while len(events) < length:
        nested = cfg.nested is not None and rng.random() < 0.4
        e = workdiff._nested_event(rng, cfg.nested_tdp) if nested else pick(kinds)()
        if not_modeled(cfg, m.v, e):
            continue
        m.step(len(events), e)
        events.append(e)
    return Trace(BASE, config, workdiff.INITIAL, tuple(events), "uniform sequence")


def cheap(m: Mutant, ps: list[Probe]) -> str | None:
    """How the cheap stage kills m, or None."""
    assert m.cls is not None
    for p in ps:
        t = replace(p.trace, policy=m.name)
        try:
            got = _violations(t, m.cls)
        except ModelError as exc:
            return f"{p.source} ({t.config}): model error: {str(exc).splitlines()[0]}"
        except InputError:
            continue
        for i in sorted(got):
            new = got[i] - p.base.get(i, set())
            if new:
                op = "start" if i < 0 else t.events[i].op
                return (f"{p.source} ({t.config}): {'/'.join(sorted(new))} at event {i + 1} "
                        f"of {len(t.events)} ({op})")
    return None


def differential(m: Mutant, configs: tuple[str, ...], bound: int, timeout: float,
                 deadline: float) -> tuple[str, str]:
    """(verdict, how) from the differential bmc check on configs."""
    verdicts = []
    for config in configs:
        left = deadline - time.perf_counter()
        if left <= 5:
            verdicts.append(f"{config}: not run (budget)")
            return "survived", "; ".join(verdicts)
        ob = prove.Obligation(m.name, config, PROPERTIES, "bmc", bound, min(timeout, left),
                              base=BASE)
        proof = prove.run(ob, use_stored=False)
        r = proof.result
        if r.verdict == "refuted":
            cx = proof.counterexample
            replayed = cx is not None and cx.replay is not None
            where = ""
            if cx is not None and cx.violation is not None:
                i, prop, _ = cx.violation
                where = f" {prop} at event {i + 1} of {len(cx.trace.events)}"
            return "killed", f"differential {config}:{where}" + (" (replayed)" if replayed
                                                                else " (not replayed)")
        verdicts.append(f"{config}: {r.verdict}" + (f" ({r.reason})" if r.reason else ""))
    if all(v.split(": ")[1].startswith("proved") for v in verdicts):
        return "equivalent", "; ".join(verdicts)
    if all(": bounded" in v or ": proved" in v for v in verdicts):
        return "survived-within-bound", "; ".join(verdicts)
    return "unknown", "; ".join(verdicts)


def _shard(text: str) -> tuple[int, int]:
    """--shard's K/N, with 0 <= K < N."""
    m = re.fullmatch(r"([0-9]+)/([0-9]+)", text)
    if m is None or int(m[1]) >= int(m[2]):
        raise argparse.ArgumentTypeError(f"expected K/N with 0 <= K < N, got {text!r}")
    return int(m[1]), int(m[2])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--no-proofs", action="store_true", help="the cheap stage only")
    ap.add_argument("--budget", type=float, default=1800.0,
                    help="seconds for the differential stage in all")
    ap.add_argument("--timeout", type=float, default=120.0, help="per differential check")
    ap.add_argument("--bound", type=int, default=2)
    ap.add_argument("--configs", default="tdp,shadow")
    ap.add_argument("--sequences", type=int, default=20, help="random sequences per config")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--global-pages", action="store_true",
                    help="run every random sequence with a global watched page too")
    ap.add_argument("--limit", type=int, default=0, help="the first N mutants only")
    ap.add_argument("--shard", type=_shard, default=(0, 1),
                    help="K/N: every N-th mutant from the K-th")
    ap.add_argument("--only", default="", help="comma-separated mutant names to decide")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    console = Console()
    t0 = time.perf_counter()
    ms = list(generate())
    if a.limit:
        ms = ms[:a.limit]
    k, n = a.shard
    ms = ms[k::n]
    if a.only:
        only = set(a.only.split(","))
        ms = [m for m in ms if m.name in only]
    for m in ms:
        register(m)
    ps = probes(a.sequences, a.seed, (False, True) if a.global_pages else (False,))
    console.print(f"{len(ms)} mutants generated, {sum(bool(m.stillborn) for m in ms)} "
                  f"stillborn; {len(ps)} probe traces ({time.perf_counter() - t0:.1f} s)")
    deadline = time.perf_counter() + a.budget
    outcomes = []
    for m in ms:
        t1 = time.perf_counter()
        if m.stillborn:
            verdict, how = "stillborn", m.stillborn
        else:
            found = cheap(m, ps)
            if found is not None:
                verdict, how = "killed", f"cheap: {found}"
            elif a.no_proofs:
                verdict, how = "survived", "cheap stage only"
            else:
                verdict, how = differential(m, tuple(a.configs.split(",")), a.bound,
                                            a.timeout, deadline)
        outcomes.append(Outcome(m.name, m.kind, m.location, m.original, m.mutated, verdict,
                                how, round(time.perf_counter() - t1, 2)))
        console.print(f"{m.name} {verdict}: {how}", highlight=False)
    table = Table(title=f"mutants of {BASE}")
    for col in ("mutant", "kind", "location", "original", "verdict", "how killed", "s"):
        table.add_column(col)
    for o in outcomes:
        table.add_row(o.mutant, o.kind, o.location, o.original, o.verdict, o.how,
                      f"{o.seconds:.1f}")
    console.print(table)
    counted = [o for o in outcomes if o.verdict != "stillborn"]
    killed = sum(o.verdict == "killed" for o in counted)
    equivalent = sum(o.verdict == "equivalent" for o in counted)
    score = killed / max(1, len(counted) - equivalent)
    summary = {"date": datetime.now(UTC).isoformat(timespec="seconds"),
               "nproc": os.cpu_count(), "load": os.getloadavg()[0],
               "mutants": len(outcomes), "stillborn": len(outcomes) - len(counted),
               "killed": killed, "equivalent": equivalent, "score": round(score, 3),
               "seconds": round(time.perf_counter() - t0, 1)}
    console.print(summary)
    if a.json:
        a.json.write_text(json.dumps({"summary": summary,
                                      "mutants": [asdict(o) for o in outcomes]}, indent=1))


if __name__ == "__main__":
    main()
