"""Trace files: JSON, versioned and typed (format "flushproof-trace/1").

    {"format": "flushproof-trace/1", "policy": "v5.18", "config": "shadow",
     "initial": {"cr0": "0x80010033", "cr3": "0x1000", "cr4": "0x20", "efer": "0xd00"},
     "events": [{"op": "mov_cr3", "value": "0x8000000000002001"},
                {"op": "invpcid", "type": 1, "pcid": 0}]}

Registers, addresses and page-table pointers are hex strings; small operands (INVPCID/INVVPID
type, PCID, VPID, ASID) may be JSON integers or hex strings.  Every problem is reported as one
TraceError naming the event index and the field.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, fields
from pathlib import Path

from formal.errors import Malformed
from formal.model import events as ev
from formal.model.state import CONFIGS, Regs

FORMAT = "flushproof-trace/1"
_HEX = re.compile(r"0x[0-9a-fA-F]{1,16}")
# Operands that may be omitted, with their default, per op: the ones an instruction ignores.
_OPTIONAL = {"invpcid": {"pcid": 0, "va": 0}, "invvpid": {"vpid": 0, "va": 0}}
_SMALL = {"type", "pcid", "vpid", "asid"}


class TraceError(Malformed):
    """A malformed trace; the message names where.  Whether its policy exists is the face's
    question (formal.cli.policies), which knows the registry."""


@dataclass(frozen=True)
class Trace:
    policy: str
    config: str
    initial: Regs
    events: tuple[ev.Event, ...]
    description: str = ""


def _hex(where: str, name: str, raw: object, small: bool) -> int:
    if small and isinstance(raw, int) and not isinstance(raw, bool):
        if raw < 0:
            raise TraceError(f"{where}: field '{name}': must not be negative, got {raw}")
        return raw
    if not isinstance(raw, str) or not _HEX.fullmatch(raw):
        kind = "an integer or a hex string" if small else 'a hex string like "0x1000"'
        raise TraceError(f"{where}: field '{name}': expected {kind} (at most 64 bits), "
                         f"got {json.dumps(raw)}")
    return int(raw, 16)


def _fields(where: str, obj: object, names: list[str], optional: dict[str, int],
            small: set[str]) -> dict[str, int]:
    if not isinstance(obj, dict):
        raise TraceError(f"{where}: expected an object, got {json.dumps(obj)}")
    extra = set(obj) - set(names) - {"op"}
    if extra:
        raise TraceError(f"{where}: unknown field '{sorted(extra)[0]}'")
    out = {}
    for name in names:
        if name not in obj:
            if name in optional:
                out[name] = optional[name]
                continue
            raise TraceError(f"{where}: missing field '{name}'")
        out[name] = _hex(where, name, obj[name], name in small)
    return out


def parse_event(index: int, obj: object) -> ev.Event:
    where = f"event {index}"
    if not isinstance(obj, dict):
        raise TraceError(f"{where}: expected an object with an 'op', got {json.dumps(obj)}")
    op = obj.get("op")
    if not isinstance(op, str):
        raise TraceError(f"{where}: missing field 'op'")
    cls = ev.EVENT_TYPES.get(op)
    if cls is None:
        raise TraceError(f"{where}: field 'op': unknown op {op!r} "
                         f"(known: {', '.join(sorted(ev.EVENT_TYPES))})")
    names = [f.name for f in fields(cls)]
    vals = _fields(f"{where} ({op})", obj, names, _OPTIONAL.get(op, {}), _SMALL)
    return cls(**vals)


def parse(text: str, source: str = "trace") -> Trace:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TraceError(f"{source}: not valid JSON: {exc.msg} at line {exc.lineno} "
                         f"column {exc.colno}") from None
    if not isinstance(doc, dict):
        raise TraceError(f"{source}: expected a JSON object at the top level")
    if doc.get("format") != FORMAT:
        raise TraceError(f"{source}: field 'format': expected {FORMAT!r}, "
                         f"got {json.dumps(doc.get('format'))}")
    extra = set(doc) - {"format", "policy", "config", "initial", "events", "description"}
    if extra:
        raise TraceError(f"{source}: unknown field '{sorted(extra)[0]}'")
    policy = doc.get("policy")
    if not isinstance(policy, str):
        raise TraceError(f"{source}: field 'policy': expected a policy name, "
                         f"got {json.dumps(policy)}")
    config = doc.get("config")
    if config not in CONFIGS:
        raise TraceError(f"{source}: field 'config': unknown config {json.dumps(config)} "
                         f"(known: {', '.join(CONFIGS)})")
    regs = _fields(f"{source}: initial", doc.get("initial"), ["cr0", "cr3", "cr4", "efer"],
                   {}, set())
    events = doc.get("events")
    if not isinstance(events, list):
        raise TraceError(f"{source}: field 'events': expected a list")
    parsed = tuple(parse_event(i, e) for i, e in enumerate(events))
    cfg = CONFIGS[config]
    for i, e in enumerate(parsed):
        if e.op in ev.NESTED_OPS and cfg.nested is None:
            raise TraceError(f"event {i} ({e.op}): config {config} has no nested "
                             "virtualization (use nested-ept, nested-npt or nested-shadow)")
    desc = doc.get("description", "")
    if not isinstance(desc, str):
        raise TraceError(f"{source}: field 'description': expected a string")
    return Trace(policy, config, Regs(**regs), parsed, desc)


def override(t: Trace, policy: str | None, config: str | None) -> Trace:
    """The same events under another policy and/or configuration, checked like a file's."""
    if policy is None and config is None:
        return t
    doc = json.loads(dumps(t))
    doc["policy"] = policy or t.policy
    doc["config"] = config or t.config
    return parse(json.dumps(doc), "command line")


def load(path: str | Path) -> Trace:
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise TraceError(f"{path}: cannot read: {exc.strerror}") from None
    return parse(text, str(path))


def event_to_json(e: ev.Event) -> dict[str, object]:
    out: dict[str, object] = {"op": e.op}
    for f in fields(e):
        val = getattr(e, f.name)
        out[f.name] = f"{val:#x}" if f.metadata.get("hex") else val
    return out


def dumps(t: Trace) -> str:
    doc = {"format": FORMAT, "policy": t.policy, "config": t.config,
           "initial": {k: f"{getattr(t.initial, k):#x}" for k in ("cr0", "cr3", "cr4", "efer")},
           "events": [event_to_json(e) for e in t.events]}
    if t.description:
        doc["description"] = t.description
    return json.dumps(doc, indent=1) + "\n"
