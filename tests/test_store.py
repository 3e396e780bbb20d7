"""Stored certificates (formal/cli/store.py): a stored certificate of unchanged sources is
re-checked instead of searched; one of changed sources warm-starts houdini and says so; a
corrupted one is `unknown`; one that is not a certificate of the relation is never trusted.
The cell is v6.6 tdp restricted to MOV CR3 and INVLPG, whose freshness houdini proves in
seconds."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from pysmt.shortcuts import FALSE

from formal.cli import main, prove, store
from formal.cli.policies import resolve
from formal.cli.prove import Obligation
from formal.engines import certificate
from formal.engines.search import Verdict
from formal.engines.system import Relation
from formal.model.state import CONFIGS
from formal.symbolic.transition import build

OB = Obligation("v6.6", "tdp", ("freshness",), "houdini", events=("mov_cr3", "invlpg"))
CELL = store.Cell("v6.6", "tdp", None, ("mov_cr3", "invlpg"))


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    """A store holding the cell's certificate, written by a cold proof."""
    where = tmp_path_factory.mktemp("store")
    proof = prove.run(OB, certificates=where, save=True, jobs=1)
    assert proof.result.verdict == Verdict.PROVED
    assert "houdini" in proof.times  # searched: nothing was stored yet
    assert proof.stored == f"certificate saved to {where / CELL.stem()}.json"
    return where


def _copy(saved: Path, tmp_path: Path) -> Path:
    shutil.copytree(saved, tmp_path / "s")
    return tmp_path / "s"


def test_saved_certificate_is_json_and_smtlib_with_named_lemmas(saved):
    record = json.loads((saved / f"{CELL.stem()}.json").read_text())
    assert (record["policy"], record["config"], record["events"], record["properties"]) == (
        "v6.6", "tdp", ["mov_cr3", "invlpg"], ["freshness"])
    assert record["fingerprint"] == store.fingerprint(CELL)
    script = gzip.decompress((saved / f"{CELL.stem()}.smt2.gz").read_bytes()).decode()
    lemmas = certificate.parse(script)
    assert len(lemmas) == record["lemmas"] > 10
    assert any(name.startswith("relation lemma") for name, _ in lemmas)
    assert "(assert (! " in script and ":named |" in script


def test_current_certificate_is_rechecked_not_searched(saved):
    proof = prove.run(OB, certificates=saved, jobs=1)
    assert proof.result.verdict == Verdict.PROVED
    assert "houdini" not in proof.times and "bmc" not in proof.times
    assert proof.times["recheck"] > 0 and proof.result.checked > 0
    assert proof.stored.startswith("re-checked the stored certificate")
    assert proof.result.certificate.startswith("stored certificate ")


def test_no_cache_searches_anew(saved):
    proof = prove.run(OB, certificates=saved, use_stored=False, jobs=1)
    assert proof.result.verdict == Verdict.PROVED and "houdini" in proof.times
    assert proof.stored == ""


def test_changed_sources_warm_start_houdini_and_say_so(saved, tmp_path):
    where = _copy(saved, tmp_path)
    path = where / f"{CELL.stem()}.json"
    record = json.loads(path.read_text())
    record["fingerprint"] = "0" * 64  # as if a policy had been edited since
    path.write_text(json.dumps(record))
    proof = prove.run(OB, certificates=where, jobs=1)
    assert proof.result.verdict == Verdict.PROVED
    assert "houdini" in proof.times
    assert proof.stored.startswith("houdini warm-started from the stored certificate")
    assert "the sources it was found from have changed" in proof.result.certificate


@pytest.mark.parametrize("damage", ["gzip", "hash", "json", "cell", "schema"])
def test_corrupted_certificate_is_unknown(saved, tmp_path, damage):
    where = _copy(saved, tmp_path)
    record_path = where / f"{CELL.stem()}.json"
    script_path = where / f"{CELL.stem()}.smt2.gz"
    record = json.loads(record_path.read_text())
    if damage == "gzip":
        script_path.write_bytes(script_path.read_bytes()[:100])
    elif damage == "hash":
        raw = gzip.decompress(script_path.read_bytes())
        script_path.write_bytes(gzip.compress(raw.replace(b"relation lemma 0", b"lemma", 1)))
    elif damage == "json":
        record_path.write_text("{")
    elif damage == "cell":
        record["config"] = "shadow"
        record_path.write_text(json.dumps(record))
    else:
        record["lemmas"] = "many"
        record_path.write_text(json.dumps(record))
    proof = prove.run(OB, certificates=where, jobs=1)
    assert proof.result.verdict == Verdict.UNKNOWN
    assert proof.result.reason.startswith("stored certificate is corrupted: ")
    assert "houdini" not in proof.times and "recheck" not in proof.times


def test_current_certificate_that_does_not_hold_is_never_trusted(tmp_path):
    # Well-formed, of today's sources, but its lemma (false) fails initiation: the re-check
    # rejects it, and the verdict is unknown, not proved.
    store.save(tmp_path, CELL, [FALSE()], {}, ("freshness",))
    proof = prove.run(OB, certificates=tmp_path, jobs=1)
    assert proof.result.verdict == Verdict.UNKNOWN
    assert "is not a certificate of this relation" in proof.result.reason
    assert "initiation" in proof.result.reason


def test_certificate_of_other_properties_is_not_used(saved):
    proof = prove.run(Obligation("v6.6", "tdp", ("role",), "houdini",
                                 events=("mov_cr3", "invlpg")), certificates=saved, jobs=1)
    assert proof.result.verdict == Verdict.PROVED and "houdini" in proof.times
    assert proof.stored == ""


def test_prove_command_reports_the_store(saved, capsys):
    args = ["prove", "--policy", "v6.6", "--config", "tdp", "--property", "freshness",
            "--engine", "houdini", "--event", "mov_cr3", "--event", "invlpg", "--jobs", "1",
            "--certificates", str(saved), "--json"]
    assert main.main(args) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["stored"].startswith("re-checked the stored certificate")
    assert "houdini" not in doc["times"]



def _same(a: Relation, b: Relation) -> bool:
    """Every term of a is the very node of b's (pySMT hash-conses terms)."""
    def terms(r: Relation) -> list:
        out = [r.init, r.init_error, *r.init_violated.values(), *r.lemmas, *r.pre.values()]
        for er in r.events:
            out += [er.steps, er.not_modeled, er.model_error, *er.post.values(),
                    *er.violated.values(), *er.ops.values()]
            out += [x for c, post in er.cases for x in (c, *post.values())]
        return out
    shape = [(er.name, er.paths, list(er.post), len(er.cases)) for er in a.events]
    return shape == [(er.name, er.paths, list(er.post), len(er.cases)) for er in b.events] \
        and all(x is y for x, y in zip(terms(a), terms(b), strict=True))


def test_cached_relation_is_the_built_one(tmp_path):
    rel = build(resolve("v6.6"), CONFIGS["tdp"], OB.kinds(), OB.props)
    store.save_relation(tmp_path, CELL, OB.props, rel)
    loaded, why = store.load_relation(tmp_path, CELL, OB.props)
    assert why == "" and loaded is not None and loaded is not rel
    assert _same(loaded, rel)
    other, why = store.load_relation(tmp_path, CELL, ("role",))  # built for other properties
    assert other is None and why == ""


def test_prove_loads_the_cached_relation_and_rebuilds_a_damaged_one(tmp_path):
    first = prove.run(OB, relations=tmp_path, jobs=1)
    assert not first.cached and "symbolic" in first.times
    again = prove.run(OB, relations=tmp_path, jobs=1)
    assert again.cached and "cache" in again.times and "symbolic" not in again.times
    assert (again.result.verdict, again.paths) == (first.result.verdict, first.paths) \
        == (Verdict.PROVED, first.paths)
    (entry,) = (tmp_path / "relations").iterdir()
    doc = json.loads(gzip.decompress(entry.read_bytes()))
    doc["shape"]["init"] = doc["shape"]["init_error"]  # another term as the initial states
    entry.write_bytes(gzip.compress(json.dumps(doc).encode()))
    rebuilt = prove.run(OB, relations=tmp_path, jobs=1)
    assert not rebuilt.cached and rebuilt.result.verdict == Verdict.PROVED


def test_the_shipped_certificates_are_well_formed():
    """proofs/certificates: every record names its cell and loads (whether its fingerprint is
    today's is not asserted: a model change makes them warm starts, docs/proving.md)."""
    shipped = Path(__file__).resolve().parent.parent / "proofs" / "certificates"
    records = sorted(shipped.glob("*.json"))
    assert len(records) >= 13
    for path in records:
        record = json.loads(path.read_text())
        cell = store.Cell(record["policy"], record["config"], record["base"],
                          None if record["events"] is None else tuple(record["events"]))
        assert path.name == f"{cell.stem()}.json"
        found = store.load(shipped, cell)
        assert found is not None and len(found.lemmas) == record["lemmas"]


def _formal_names(files) -> set[str]:
    return {str(p.relative_to(store._FORMAL)) for p in files if p.is_relative_to(store._FORMAL)}


def test_the_fingerprint_hashes_what_builds_and_checks_a_relation_and_nothing_else():
    """The layers' files and the model files they import, read from the imports; not the
    trace format, the explicit search or the simulator, which no relation depends on."""
    layers = [p for layer in store._LAYERS for p in (store._FORMAL / layer).rglob("*.py")]
    names = _formal_names(store._imported(layers))
    assert {"__init__.py", "errors.py", "model/__init__.py", "model/state.py", "model/kvm.py",
            "model/events.py", "model/properties.py", "symbolic/transition.py",
            "engines/search.py", "solvers/z3.py"} <= names
    assert not names & {"model/trace.py", "model/explore.py", "model/simulate.py",
                        "model/jsondoc.py"}
    assert not any(n.startswith(("cli/", "concrete/")) for n in names)


def test_a_policy_file_s_imports_of_formal_are_in_its_fingerprint(tmp_path):
    """A policy file that imports a module the layers do not (here the trace format, as
    `from P import M` and as `import P.M`) has that module, and the packages on the way, in its
    fingerprint's files, with what it imports in turn."""
    for i, line in enumerate(("from formal.model import trace", "import formal.model.trace")):
        f = tmp_path / f"p{i}.py"
        f.write_text(f"{line}\nfrom specs.v6_6 import V6_6\n")
        assert _formal_names(store._imported([f])) == {
            "__init__.py", "errors.py", "model/__init__.py", "model/arch.py", "model/bits.py",
            "model/events.py", "model/jsondoc.py", "model/state.py", "model/trace.py",
            "model/values.py"}


@pytest.fixture
def formal_copy(tmp_path, monkeypatch) -> Path:
    """A copy of formal/ that the fingerprint reads instead of the real one."""
    copy = tmp_path / "formal"
    shutil.copytree(store._FORMAL, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(store, "_FORMAL", copy)
    store._own_sources.cache_clear()
    yield copy
    store._own_sources.cache_clear()


def test_an_edit_stales_the_fingerprint_only_where_a_relation_imports_it(formal_copy):
    before = store._own_sources()
    with (formal_copy / "model" / "trace.py").open("a") as f:
        f.write("# the trace format, edited\n")
    store._own_sources.cache_clear()
    assert store._own_sources() == before
    with (formal_copy / "model" / "state.py").open("a") as f:
        f.write("# the model, edited\n")
    store._own_sources.cache_clear()
    assert store._own_sources() != before


def test_a_relative_import_is_followed(formal_copy):
    transition = formal_copy / "symbolic" / "transition.py"
    trace = formal_copy / "model" / "trace.py"
    assert trace not in store._imported([transition])
    with transition.open("a") as f:
        f.write("from ..model import trace  # noqa\n")
    assert trace in store._imported([transition])


def test_what_python_imports_for_a_relation_is_in_the_fingerprint():
    """Every formal/ file that importing the layers, each solver backend and every shipped
    policy loads is among the files the fingerprint reads (the layers' and the policies')."""
    layers = ", ".join(repr(x) for x in store._LAYERS)
    code = ("import sys, pathlib, inspect, importlib\n"
            "import formal\n"
            "root = pathlib.Path(formal.__file__).resolve().parent\n"
            f"layers = [p for layer in ({layers},) for p in (root / layer).rglob('*.py')]\n"
            "for p in layers:\n"
            "    name = '.'.join(p.relative_to(root.parent).with_suffix('').parts)\n"
            "    importlib.import_module(name.removesuffix('.__init__'))\n"
            "from formal import solvers\n"
            "for s in solvers.BACKENDS:\n"
            "    solvers._module(s)\n"
            "from specs import POLICIES\n"
            "loaded = {pathlib.Path(m.__file__).resolve() for n, m in sys.modules.items()\n"
            "          if n == 'formal' or n.startswith('formal.')}\n"
            "files = {inspect.getsourcefile(sys.modules[c.__module__])\n"
            "         for p in POLICIES.values() for c in p.__mro__[:-1]}\n"
            "from formal.cli import store\n"
            "read = set(store._imported(layers)) | set(store._imported(files))\n"
            "print(len(loaded), sorted(str(p) for p in loaded - read))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=Path(__file__).resolve().parent.parent).stdout.split()
    assert int(out[0]) > 20 and out[1:] == ["[]"]
