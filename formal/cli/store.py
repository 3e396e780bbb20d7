"""Stored certificates (proofs/certificates/): for a (policy, base, configuration, events) cell,
the lemmas of the invariant houdini found, as SMT-LIB 2 (formal.engines.certificate, gzip
compressed), and beside them a JSON record of what they were found for: the properties they
proved and the fingerprint of every source the relation is built from.

A stored certificate never decides a verdict.  `prove` re-checks it against the relation it has
just built, with the re-checker, every query (formal.engines.search.recheck_lemmas):
- fingerprint the same: the stored lemmas are the certificate; houdini does not run;
- fingerprint different (a policy or flushproof's model changed): houdini starts from the
  stored lemmas instead of every candidate (a warm start), and the result says so;
- a record or script that is not what `save` writes (corrupted, edited by hand, its lemmas'
  hash different): the verdict is `unknown`, naming the file.
The files are JSON and SMT-LIB 2 text only: nothing is unpickled.

The relation cache (`cache_dir()/relations`, outside the repository) keeps each relation that
symbolic execution built, under a key that is the same fingerprint and the properties it was
built for (formal.engines.serial): a run on unchanged sources loads it instead of executing
the policy again.  An entry that is not what `save_relation` writes is rebuilt, never used."""

from __future__ import annotations

import ast
import gzip
import hashlib
import inspect
import json
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from pysmt.fnode import FNode

from formal import solvers
from formal.cli import output, policies, schemas
from formal.engines import certificate, serial
from formal.engines.system import Relation
from formal.errors import Malformed

FORMAT = "flushproof-certificate/1"
# The default store, relative to the current directory (prove), or beside a proof script.
DEFAULT_DIR = Path("proofs") / "certificates"
# The layers of flushproof that build a relation and check its certificates: symbolic
# execution, the engines and the solver seam.  The fingerprint hashes their files and every file
# of formal/ those import (the model the policies run on, formal.errors), read from the imports
# (_imported): a file none of them imports (the trace format, the explicit search, the
# simulator) is not in it, so changing it stales no certificate.
_LAYERS = ("symbolic", "engines", "solvers")
_FORMAL = Path(__file__).resolve().parent.parent  # formal/


class Corrupt(Malformed):
    """A stored certificate that is not what `save` writes."""


@dataclass(frozen=True)
class Cell:
    """What a certificate is for: the relation's identity."""

    policy: str
    config: str
    base: str | None = None
    events: tuple[str, ...] | None = None

    def stem(self) -> str:
        name = f"{self.policy}--{self.config}"
        if self.base is not None:
            name += f"--over-{self.base}"
        if self.events is not None:
            name += "--" + "+".join(self.events)
        return name


@dataclass
class Stored:
    """A certificate as loaded: its lemmas, the properties it proved, and whether its
    fingerprint is the current sources'."""

    path: Path
    lemmas: list[tuple[str, FNode]]
    properties: tuple[str, ...]
    current: bool


def fingerprint(cell: Cell) -> str:
    """sha256 over every source the cell's relation and its check are built from: flushproof's
    symbolic execution, engines and solver seam and the files of formal/ they import, the files
    of every class the policy (and its base) inherits from (specs/ or a policy file) and the
    files of formal/ those import, the solvers' versions, and the cell."""
    h = hashlib.sha256(FORMAT.encode())
    for part in (_own_sources(), *(_policy_sources(p) for p in (cell.policy, cell.base) if p),
                 json.dumps(solvers.versions(), sort_keys=True),
                 json.dumps([cell.config, cell.events])):
        h.update(part.encode())
    return h.hexdigest()


def _imported(files: Iterable[Path]) -> list[Path]:
    """files and every file of formal/ they import, directly or through another, with the
    package __init__.py files those imports run; sorted.  Imports are read from the source
    (inside functions too, relative ones resolved), as tests/test_layers.py reads them;
    formal/ imports nothing by a computed name but formal.solvers its solver modules, which
    are in _LAYERS (tests/test_store.py checks the closure against what Python imports)."""
    seen: set[Path] = set()
    todo = [Path(f).resolve() for f in files]
    while todo:
        path = todo.pop()
        if path not in seen:
            seen.add(path)
            stat = path.stat()
            todo += _imports_of(path, stat.st_mtime_ns, stat.st_size)
    return sorted(seen)


@cache
def _imports_of(path: Path, mtime_ns: int, size: int) -> tuple[Path, ...]:
    """The files of formal/ that the source at path imports itself (keyed by its modification
    time and size, so an edited file is read again)."""
    package = list(path.relative_to(_FORMAL.parent).parent.parts) \
        if path.is_relative_to(_FORMAL.parent) else []
    out: list[Path] = []
    for node in ast.walk(ast.parse(path.read_bytes(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            # `from . import M` is relative to path's package; `from P import M` imports module
            # P.M when there is one
            stem = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join(stem + ([node.module] if node.module else []))
            names = [module] + [f"{module}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] != "formal":
                continue
            for k in range(1, len(parts) + 1):  # each package on the way, then the module
                where = _FORMAL.parent.joinpath(*parts[:k])
                out += [f for f in (where / "__init__.py", where.with_suffix(".py"))
                        if f.is_file()]
    return tuple(out)


def _hash_formal(files: Iterable[Path]) -> str:
    """sha256 over each file of formal/ among files: its path there and its bytes."""
    h = hashlib.sha256()
    for path in files:
        if path.is_relative_to(_FORMAL):
            h.update(str(path.relative_to(_FORMAL)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


@cache
def _own_sources() -> str:
    return _hash_formal(_imported(p for layer in _LAYERS for p in (_FORMAL / layer).rglob("*.py")))


def _policy_sources(name: str) -> str:
    h = hashlib.sha256(name.encode())
    files = []
    for cls in policies.resolve(name).__mro__[:-1]:  # not object
        module = sys.modules.get(cls.__module__)
        where = inspect.getsourcefile(module) if module is not None else None
        if where is not None and where not in files:
            files.append(where)
    for where in files:
        h.update(Path(where).read_bytes())
    h.update(_hash_formal(_imported(files)).encode())
    return h.hexdigest()


def _paths(store: Path, cell: Cell) -> tuple[Path, Path]:
    return store / f"{cell.stem()}.json", store / f"{cell.stem()}.smt2.gz"


def load(store: Path, cell: Cell) -> Stored | None:
    """The stored certificate of cell, None when there is none; raises Corrupt."""
    record_path, script_path = _paths(store, cell)
    if not record_path.exists():
        return None
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
        schemas.check(record, "certificate", str(record_path))
        raw = gzip.decompress(script_path.read_bytes())
    except (OSError, ValueError, EOFError, gzip.BadGzipFile) as exc:
        raise Corrupt(f"{record_path}: {exc}") from None
    except Malformed as exc:
        raise Corrupt(str(exc)) from None
    if hashlib.sha256(raw).hexdigest() != record["lemmas_sha256"]:
        raise Corrupt(f"{script_path}: its lemmas are not those {record_path.name} records "
                      "(sha256 differs)")
    if (record["policy"], record["base"], record["config"], record["events"]) != (
            cell.policy, cell.base, cell.config,
            list(cell.events) if cell.events is not None else None):
        raise Corrupt(f"{record_path}: records another cell")
    try:
        lemmas = certificate.parse(raw.decode("utf-8"))
    except (UnicodeDecodeError, Malformed) as exc:
        raise Corrupt(f"{script_path}: {exc}") from None
    if len(lemmas) != record["lemmas"]:
        raise Corrupt(f"{script_path}: {len(lemmas)} lemmas, the record says {record['lemmas']}")
    return Stored(script_path, lemmas, tuple(record["properties"]),
                  record["fingerprint"] == fingerprint(cell))


def save(store: Path, cell: Cell, lemmas: list[FNode], names: dict[FNode, str],
         properties: tuple[str, ...]) -> Path:
    """Writes (or refreshes) cell's certificate: lemmas that proved properties.  A certificate
    of the same lemmas and sources already stored keeps the properties it proved too."""
    store.mkdir(parents=True, exist_ok=True)
    record_path, script_path = _paths(store, cell)
    raw = certificate.text(lemmas, names).encode("utf-8")
    digest, fp = hashlib.sha256(raw).hexdigest(), fingerprint(cell)
    proved = set(properties)
    try:
        old = json.loads(record_path.read_text(encoding="utf-8"))
        if old.get("lemmas_sha256") == digest and old.get("fingerprint") == fp:
            proved |= set(old.get("properties", []))
    except (OSError, ValueError):
        pass
    record = {"format": FORMAT, "policy": cell.policy, "base": cell.base,
              "config": cell.config,
              "events": list(cell.events) if cell.events is not None else None,
              "properties": sorted(proved), "engine": "houdini", "fingerprint": fp,
              "solvers": solvers.versions(), "lemmas": len(lemmas), "lemmas_sha256": digest}
    # The script first: a record never names lemmas that are not there.
    output.write_bytes_atomic(script_path, gzip.compress(raw, mtime=0))
    output.write_atomic(record_path, json.dumps(record, indent=1) + "\n")
    return record_path


RELATION_FORMAT = "flushproof-relation/1"


def cache_dir() -> Path:
    """$FLUSHPROOF_CACHE, else $XDG_CACHE_HOME/flushproof, else ~/.cache/flushproof."""
    if os.environ.get("FLUSHPROOF_CACHE"):
        return Path(os.environ["FLUSHPROOF_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "flushproof"


def _relation_path(cache: Path, cell: Cell, props: tuple[str, ...]) -> tuple[Path, str]:
    key = hashlib.sha256(f"{fingerprint(cell)} {' '.join(props)}".encode()).hexdigest()
    return cache / "relations" / f"{key}.json.gz", key


def load_relation(cache: Path, cell: Cell, props: tuple[str, ...]) -> tuple[Relation | None, str]:
    """The cached relation of cell built for props, or None and why not ("" when there is
    none)."""
    path, key = _relation_path(cache, cell, props)
    try:
        doc = json.loads(gzip.decompress(path.read_bytes()))
    except FileNotFoundError:
        return None, ""
    except (OSError, ValueError, EOFError) as exc:
        return None, f"{path}: {exc}"
    if not isinstance(doc, dict) or doc.get("format") != RELATION_FORMAT \
            or doc.get("key") != key or not isinstance(doc.get("smt2"), str):
        return None, f"{path}: not a relation flushproof cached for this cell"
    if _digest(doc.get("shape"), doc["smt2"]) != doc.get("sha256"):
        return None, f"{path}: its content is not what it records (sha256 differs)"
    try:
        return serial.loads(doc["shape"], doc["smt2"]), ""
    except Malformed as exc:
        return None, f"{path}: {exc}"


def _digest(shape: object, script: str) -> str:
    return hashlib.sha256(json.dumps(shape, sort_keys=True).encode() + b"\0"
                          + script.encode()).hexdigest()


def save_relation(cache: Path, cell: Cell, props: tuple[str, ...], rel: Relation) -> None:
    """Caches rel; a cache that cannot be written is not an error (the next run builds)."""
    path, key = _relation_path(cache, cell, props)
    shape, script = serial.dumps(rel)
    doc = {"format": RELATION_FORMAT, "key": key, "shape": shape, "smt2": script,
           "sha256": _digest(shape, script)}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        output.write_bytes_atomic(path, gzip.compress(json.dumps(doc).encode(), mtime=0))
    except OSError:
        pass
