"""The work two policies do on the same events: roots built and freed, syncs, hardware context
flushes and KVM_REQ_* requests (formal.model.kvm's work keys), per configuration and event kind,
on the corpus traces and on random event sequences drawn from a seed (`flushproof diff`)."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from formal.cli import policies
from formal.model import events as ev
from formal.model import simulate as model_simulate
from formal.model.kvm import CONTEXT_FLUSHES, REQUEST, ROOTS_BUILT, ROOTS_FREED, SYNCS
from formal.model.machine import Machine, StepRecord
from formal.model.scope import not_modeled
from formal.model.state import CONFIGS, Regs, Req
from formal.model.trace import Trace

# The work columns, in this order: the fixed ones, then one per request kind.
KEYS = (ROOTS_BUILT, ROOTS_FREED, SYNCS, CONTEXT_FLUSHES) + tuple(REQUEST + r.name for r in Req)
# The event kind of the first guest entry (kvm_arch_vcpu_create + the first KVM_RUN).
START = "start"
CORPUS, RANDOM = "corpus", "random"
# Events per random sequence.
LENGTH = 20


@dataclass
class Tally:
    """One (source, configuration, event kind): how many such events ran, and the work each
    policy did for them."""

    source: str
    config: str
    event: str
    events: int = 0
    old: Counter[str] = field(default_factory=Counter)
    new: Counter[str] = field(default_factory=Counter)

    @property
    def differs(self) -> bool:
        return self.old != self.new


class Tallies:
    """Tallies by (source, configuration, event kind), in the order first seen."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str, str], Tally] = {}

    def add(self, source: str, config: str, side: str, rec: StepRecord) -> None:
        op = START if rec.event is None else rec.event.op
        row = self.rows.setdefault((source, config, op), Tally(source, config, op))
        if side == "old":
            row.events += 1
            row.old.update(rec.work)
        else:
            row.new.update(rec.work)

    def run(self, source: str, t: Trace, old: str, new: str) -> None:
        """t's events under old and under new, every event (a violation does not stop KVM)."""
        for side, name in (("old", old), ("new", new)):
            t1 = replace(t, policy=name)
            model_simulate.run(t1, policies.resolve(name), stop_at_violation=False,
                               on_record=lambda rec, s=side: self.add(source, t.config, s, rec))

    def totals(self) -> list[Tally]:
        """One row per (source, configuration): every event kind added up."""
        out: dict[tuple[str, str], Tally] = {}
        for row in self.rows.values():
            tot = out.setdefault((row.source, row.config), Tally(row.source, row.config, "all"))
            tot.events += row.events
            tot.old.update(row.old)
            tot.new.update(row.new)
        return list(out.values())


def corpus_traces(directory: Path, configs: tuple[str, ...]) -> Iterator[tuple[str, Trace]]:
    """The corpus traces of the given configurations, by file name, in file-name order."""
    for path in sorted(directory.glob("*.json")):
        if path.name == "expected.json":
            continue
        t = policies.load(path)
        if t.config in configs:
            yield path.name, t


# Random sequences start in 64-bit paging with CR4.PCIDE set, as a Linux guest runs, and draw
# from these values, as tests/test_random_sequences.py does: three page-table addresses, PCIDs
# 0-2, NOFLUSH or not.
INITIAL = Regs(0x8001_0033, 0x1000, 0x20020, 0xD00)
PGDS = (0x1000, 0x2000, 0x3000)
CR0S = (0x8001_0033, 0x8000_0033, 0x33, 0x1_0033, 0x8001_0031)
CR4S = (0x20, 0x20020, 0x320, 0x1020, 0x30_0020, 0xA0, 0x0, 0x10_0020, 0x40_0020)
EFERS = (0xD00, 0x500, 0x900, 0x100, 0x0, 0x800)
NOFLUSH = 1 << 63
VA = 0x40_0000  # the watched page (formal.model.arch.WATCHED_VA)


def _l1_event(rng: random.Random) -> ev.Event:
    """An L1 event, weighted as a guest issues them: context switches (MOV CR3), PTE writes
    and INVLPG most, mode changes (which make KVM drop its roots) seldom."""
    pick = rng.choice
    pgd = pick(PGDS) | pick((0, 0, 1, 2))
    makers: list[tuple[int, Callable[[], ev.Event]]] = [
        (12, lambda: ev.MovCr3(pgd | pick((0, NOFLUSH)))),
        (4, lambda: ev.GuestPteWrite(pick(PGDS + (0x9000,)))),
        (4, lambda: ev.Invlpg(pick((VA, 0x80_0000)))),
        (2, lambda: ev.Invpcid(rng.randrange(4), rng.randrange(3), VA)),
        (2, lambda: ev.PvTlbFlush()),
        (2, lambda: ev.MovCr4(pick(CR4S))),
        (1, lambda: ev.MovCr0(pick(CR0S))),
        (1, lambda: ev.WrmsrEfer(pick(EFERS))),
        (1, lambda: ev.Smi()), (1, lambda: ev.Rsm()), (1, lambda: ev.Init()),
        (1, lambda: ev.CpuidUpdate()),
        (1, lambda: ev.SetSregs(pick(CR0S), pick(PGDS), pick(CR4S), pick(EFERS))),
    ]
    weights, funcs = zip(*makers, strict=True)
    return rng.choices(funcs, weights)[0]()


def _nested_event(rng: random.Random, nested_tdp: bool) -> ev.Event:
    pick = rng.choice
    makers: list[Callable[[], ev.Event]] = [
        lambda: ev.VmEntry(pick(CR0S), pick(PGDS) + 0x10000 | pick((0, 8)), pick(CR4S),
                           pick(EFERS), 0x9000 if nested_tdp else 0, rng.randrange(3)),
        lambda: ev.VmExit(),
        lambda: ev.Invvpid(rng.randrange(4), rng.randrange(3), VA),
        lambda: ev.Invlpga(VA, rng.randrange(1, 3)),
    ]
    return pick(makers)()


def random_trace(rng: random.Random, policy: str, config: str, length: int = LENGTH) -> Trace:
    """length events drawn from rng (in nested configurations, half of them nested events),
    each one the model covers in the state policy reaches (what the model covers depends only
    on the architectural state, the same under every policy)."""
    cfg = CONFIGS[config]
    m = Machine(policies.resolve(policy)(cfg), INITIAL)
    m.start()
    events: list[ev.Event] = []
    while len(events) < length:
        nested = cfg.nested is not None and rng.random() < 0.5
        e = _nested_event(rng, cfg.nested_tdp) if nested else _l1_event(rng)
        if not_modeled(cfg, m.v, e):
            continue
        m.step(len(events), e)
        events.append(e)
    return Trace(policy, config, INITIAL, tuple(events), "random sequence")


def work(old: str, new: str, configs: tuple[str, ...], corpus: Path | None, sequences: int,
         seed: int, progress: Callable[[str], None] = lambda text: None) -> Tallies:
    """The work of old and new on the corpus traces of configs (none if corpus is None) and on
    `sequences` random sequences per configuration, drawn from seed."""
    tallies = Tallies()
    if corpus is not None:
        for name, t in corpus_traces(corpus, configs):
            progress(f"work: corpus: {name}")
            tallies.run(CORPUS, t, old, new)
    for config in configs:
        rng = random.Random(f"{seed}/{config}")
        for i in range(sequences):
            if i % 10 == 0:
                progress(f"work: {config}: random sequence {i + 1} of {sequences}")
            tallies.run(RANDOM, random_trace(rng, old, config), old, new)
    return tallies
