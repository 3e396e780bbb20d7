"""Trace files: JSON, versioned and typed (format "flushproof-trace/1").

    {"format": "flushproof-trace/1", "policy": "v5.18", "config": "shadow",
     "initial": {"cr0": "0x80010033", "cr3": "0x1000", "cr4": "0x20", "efer": "0xd00"},
     "page": {"global": true, "user": false},
     "events": [{"op": "mov_cr3", "value": "0x8000000000002001"},
                {"op": "invpcid", "type": 1, "pcid": 0}]}

Registers, addresses and page-table pointers are hex strings; small operands (INVPCID/INVVPID
type, PCID, VPID, ASID) may be JSON integers or hex strings; both obey the same width rule, at
most 64 bits.  "page" (optional) gives the watched page's attributes (formal.model.state.Page):
"global" (default false), "user" (default true), "writable" (default true) and "nx" (default
false) are the G, U/S, R/W and XD bits of the entry that maps it, "size" (default "4K") is
"4K", "2M", "4M" or "1G".  Every problem is reported as
one TraceError naming the source, the event index and the field.  The command line first
validates a file against its JSON Schema (formal/cli/schemas/trace.schema.json); these checks
hold for every caller.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path

from formal.errors import Malformed
from formal.model import arch, jsondoc
from formal.model import events as ev
from formal.model.state import CONFIGS, DEFAULT_PAGE, Page, Regs

FORMAT = "flushproof-trace/1"
_HEX = re.compile(r"0x[0-9a-fA-F]{1,16}")
# Operands that may be omitted, with their default, per op: the ones an instruction ignores.
_OPTIONAL = {"invpcid": {"pcid": 0, "va": 0}, "invvpid": {"vpid": 0, "va": 0}}
_SMALL = {"type", "pcid", "vpid", "asid"}
_WIDTH = 1 << 64


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
    page: Page = DEFAULT_PAGE


def _hex(where: str, name: str, raw: object, small: bool) -> int:
    if small and isinstance(raw, int) and not isinstance(raw, bool):
        if raw < 0:
            raise TraceError(f"{where}: field '{name}': must not be negative, got {raw}")
        if raw < _WIDTH:
            return raw
    elif isinstance(raw, str) and _HEX.fullmatch(raw):
        return int(raw, 16)
    kind = "an integer or a hex string" if small else 'a hex string like "0x1000"'
    raise TraceError(f"{where}: field '{name}': expected {kind} (at most 64 bits), "
                     f"got {jsondoc.show(raw)}")


def _fields(where: str, obj: object, names: list[str], optional: dict[str, int],
            small: set[str]) -> dict[str, int]:
    if not isinstance(obj, dict):
        raise TraceError(f"{where}: expected an object, got {jsondoc.show(obj)}")
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


def parse_event(index: int, obj: object, source: str = "trace") -> ev.Event:
    where = f"{source}: event {index}"
    if not isinstance(obj, dict):
        raise TraceError(f"{where}: expected an object with an 'op', got {jsondoc.show(obj)}")
    if "op" not in obj:
        raise TraceError(f"{where}: missing field 'op'")
    op = obj["op"]
    if not isinstance(op, str):
        raise TraceError(f"{where}: field 'op': expected an event name, got {jsondoc.show(op)}")
    cls = ev.EVENT_TYPES.get(op)
    if cls is None:
        raise TraceError(f"{where}: field 'op': unknown op {jsondoc.show(op)} "
                         f"(known: {', '.join(sorted(ev.EVENT_TYPES))})")
    names = [f.name for f in fields(cls)]
    vals = _fields(f"{where} ({op})", obj, names, _OPTIONAL.get(op, {}), _SMALL)
    return cls(**vals)


def parse(text: str | bytes, source: str = "trace") -> Trace:
    try:
        doc = jsondoc.loads(text, source)
    except Malformed as exc:
        raise TraceError(str(exc)) from None
    return from_doc(doc, source)


def _consume(events: list, source: str) -> Iterator[ev.Event]:
    for i in range(len(events)):
        e, events[i] = events[i], None
        yield parse_event(i, e, source)


def from_doc(doc: object, source: str = "trace") -> Trace:
    """The trace a JSON value (jsondoc.loads) describes; TraceError naming where it is not
    one.  Consumes doc's event list (each event object is dropped once parsed), so that a long
    trace is not held twice."""
    if not isinstance(doc, dict):
        raise TraceError(f"{source}: expected a JSON object at the top level")
    if doc.get("format") != FORMAT:
        raise TraceError(f"{source}: field 'format': expected {FORMAT!r}, "
                         f"got {jsondoc.show(doc.get('format'))}")
    extra = set(doc) - {"format", "policy", "config", "initial", "page", "events",
                        "description"}
    if extra:
        raise TraceError(f"{source}: unknown field '{sorted(extra)[0]}'")
    policy = doc.get("policy")
    if not isinstance(policy, str):
        raise TraceError(f"{source}: field 'policy': expected a policy name, "
                         f"got {jsondoc.show(policy)}")
    config = doc.get("config")
    if not isinstance(config, str) or config not in CONFIGS:
        raise TraceError(f"{source}: field 'config': unknown config {jsondoc.show(config)} "
                         f"(known: {', '.join(CONFIGS)})")
    regs = _fields(f"{source}: initial", doc.get("initial"), ["cr0", "cr3", "cr4", "efer"],
                   {}, set())
    events = doc.get("events")
    if not isinstance(events, list):
        raise TraceError(f"{source}: field 'events': expected a list")
    parsed = tuple(_consume(events, source))
    cfg = CONFIGS[config]
    for i, e in enumerate(parsed):
        if e.op in ev.NESTED_OPS and cfg.nested is None:
            raise TraceError(f"{source}: event {i} ({e.op}): config {config} has no nested "
                             "virtualization (use nested-ept, nested-npt or nested-shadow)")
    desc = doc.get("description", "")
    if not isinstance(desc, str):
        raise TraceError(f"{source}: field 'description': expected a string")
    return Trace(policy, config, Regs(**regs), parsed, desc, _page(source, doc))


# The page field's flags: the name in a trace, Page's field.
_PAGE_FLAGS = {"global": "global_", "user": "user", "writable": "writable", "nx": "nx"}


def _page(source: str, doc: dict) -> Page:
    """The page field's attributes, each absent one Page's default."""
    page = doc.get("page", {})
    if not isinstance(page, dict):
        raise TraceError(f"{source}: field 'page': expected an object")
    extra = set(page) - set(_PAGE_FLAGS) - {"size"}
    if extra:
        raise TraceError(f"{source}: page: unknown field '{sorted(extra)[0]}'")
    flags = {}
    for name, attr in _PAGE_FLAGS.items():
        flag = page.get(name, getattr(DEFAULT_PAGE, attr))
        if not isinstance(flag, bool):
            raise TraceError(f"{source}: page: field '{name}': expected true or false, "
                             f"got {jsondoc.show(flag)}")
        flags[attr] = flag
    size = page.get("size", "4K")
    if size not in arch.PAGE_SIZES:
        names = ", ".join(map(jsondoc.show, arch.PAGE_SIZES))
        raise TraceError(f"{source}: page: field 'size': expected one of {names}, "
                         f"got {jsondoc.show(size)}")
    return Page(size=arch.PAGE_SIZES[size], **flags)


def override(t: Trace, policy: str | None, config: str | None) -> Trace:
    """The same events under another policy and/or configuration, checked like a file's."""
    if policy is None and config is None:
        return t
    doc = json.loads(dumps(t))
    doc["policy"] = policy or t.policy
    doc["config"] = config or t.config
    return parse(json.dumps(doc), "command line")


def load(path: str | Path) -> Trace:
    try:
        doc = jsondoc.load(path)
    except Malformed as exc:
        raise TraceError(str(exc)) from None
    return from_doc(doc, str(path))


def event_to_json(e: ev.Event) -> dict[str, object]:
    out: dict[str, object] = {"op": e.op}
    for f in fields(e):
        val = getattr(e, f.name)
        out[f.name] = f"{val:#x}" if f.metadata.get("hex") else val
    return out


def page_to_json(page: Page, every: bool = True) -> dict[str, object]:
    """The page field of a trace for page: every attribute, or (every=False) those that
    differ from DEFAULT_PAGE's."""
    out: dict[str, object] = {
        "size": next(name for name, size in arch.PAGE_SIZES.items() if size == page.size)}
    out |= {name: getattr(page, attr) for name, attr in _PAGE_FLAGS.items()}
    if every:
        return out
    default = page_to_json(DEFAULT_PAGE)
    return {name: value for name, value in out.items() if value != default[name]}


def dumps(t: Trace) -> str:
    doc: dict[str, object] = {
        "format": FORMAT, "policy": t.policy, "config": t.config,
        "initial": {k: f"{getattr(t.initial, k):#x}" for k in ("cr0", "cr3", "cr4", "efer")}}
    page = page_to_json(t.page, every=False)
    if page:
        doc["page"] = page
    doc["events"] = [event_to_json(e) for e in t.events]
    if t.description:
        doc["description"] = t.description
    return json.dumps(doc, indent=1) + "\n"
