"""Differential verification (formal.symbolic.product, prove --base): the violations a patched
policy has at an event where its base has none, in lockstep on the same events."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from formal import solvers
from formal.cli import policies, prove
from formal.cli.main import main
from formal.cli.schemas import schema
from formal.engines import search
from formal.engines.checker import Checker
from formal.engines.search import Result, Verdict
from formal.model import events as ev
from formal.model.state import CONFIGS
from formal.symbolic import product
from formal.symbolic.transition import build
from specs import POLICIES

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = str(ROOT / "examples" / "v6_6_no_smap_reset.py")


@pytest.fixture
def no_smap_reset(monkeypatch):
    monkeypatch.setattr(policies, "_LOADED", {})
    monkeypatch.setattr(policies, "_FILES", {})
    return policies.load_file(EXAMPLE)


def test_the_product_has_each_vcpu_and_the_paths_of_both_not_their_product():
    """Each policy's step is a merged call: the product's paths per kind stay small, while the
    two policies' own relations have many."""
    kinds = [ev.MovCr4]
    single = build(POLICIES["v6.6"], CONFIGS["tdp"], kinds, ("metadata",))
    rel = product.build(POLICIES["v6.7"], POLICIES["v6.6"], CONFIGS["tdp"], kinds,
                        ("metadata",))
    assert set(rel.names) == {f"{side}.{n}" for side in ("new", "base") for n in single.names}
    paths = {er.name: er.paths for er in rel.events}
    assert {er.name: er.paths for er in single.events}["mov_cr4"] > 4 * paths["mov_cr4"]


def test_a_lost_smap_reset_adds_a_one_event_metadata_violation_v6_6_does_not_have(
        no_smap_reset, capsys):
    argv = ["prove", "--policy-file", EXAMPLE, "--base", "v6.6", "--config", "tdp",
            "--property", "metadata", "--engine", "bmc", "--bound", "2", "--event", "mov_cr4",
            "--cex", "/dev/null", "--json"]
    assert main(argv) == 1
    doc = json.loads(capsys.readouterr().out)
    assert (doc["verdict"], doc["bound"], doc["base"]) == ("refuted", 1, "v6.6")
    assert doc["violation"]["event"] == 0 and doc["violation"]["property"] == "metadata"
    assert doc["replay"].startswith("confirmed: event 0, L1: KVM's emulated supervisor read")
    assert doc["replay"].endswith("under v6.6 no forbidden access through event 0")
    # The converse: v6.6 has no metadata violation the patch removes within the bound.
    assert doc["converse"]["verdict"] == "bounded(2)"
    assert (doc["converse"]["policy"], doc["converse"]["base"]) == ("v6.6", no_smap_reset)


def test_an_unknown_base_is_bad_input(capsys):
    assert main(["prove", "--policy", "v6.6", "--base", "v9.9", "--config", "tdp"]) == 3
    assert "unknown policy 'v9.9'" in capsys.readouterr().err


def test_a_differential_proof_is_a_rechecked_certificate_for_the_product():
    """v6.7 changes KVM_SET_SREGS only: on INVLPG it adds no pgd violation over v6.6, proved by
    houdini on the product and re-checked like any certificate."""
    ob = prove.Obligation("v6.7", "tdp", ("pgd",), "houdini", events=("invlpg",), base="v6.6")
    r = prove.run(ob).result
    assert r.verdict == "proved", r.reason
    assert " in 4 one-shot queries (initiation; consecution per path and safety for each of 1 " \
        "event kinds)" in r.certificate


@pytest.fixture(scope="module")
def v66_mov_cr4(tmp_path_factory) -> Path:
    """A certificate store holding v6.6's own TDP certificate over MOV CR4 (metadata)."""
    store = tmp_path_factory.mktemp("certificates")
    ob = prove.Obligation("v6.6", "tdp", ("metadata",), "houdini", events=("mov_cr4",))
    assert prove.run(ob, certificates=store, save=True, jobs=1).result.verdict == "proved"
    return store


def _converse(store: Path, capsys, text: str = "") -> dict:
    """The converse of the SMAP example over v6.6 (TDP, metadata, MOV CR4) with `store`, as
    JSON; text: a line the text report has."""
    argv = ["prove", "--policy-file", EXAMPLE, "--base", "v6.6", "--config", "tdp",
            "--property", "metadata", "--bound", "2", "--event", "mov_cr4", "--cex", "/dev/null",
            "--certificates", str(store)]
    if text:
        assert main(argv) == 1
        assert text in capsys.readouterr().out.splitlines()
    assert main(argv + ["--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    Draft202012Validator(schema("prove-result")).validate(doc)
    assert (doc["verdict"], doc["bound"], doc["engine"]) == ("refuted", 1, "explicit+bmc")
    return doc["converse"]


def test_a_base_proved_alone_decides_the_converse_by_its_stored_certificate(
        no_smap_reset, v66_mov_cr4, capsys):
    """The converse asks for the metadata violations of v6.6 that the SMAP example removes on
    MOV CR4.  v6.6 alone has none: its stored certificate is re-checked and decides the
    converse (prove.alone), with no product."""
    conv = _converse(v66_mov_cr4, capsys, text="converse: violations of v6.6 that "
                     f"{no_smap_reset} removes: none (v6.6 alone has none, proved by houdini)")
    assert (conv["verdict"], conv["engine"]) == ("proved", "houdini")
    assert conv["stored"].startswith("re-checked the stored certificate ")
    assert conv["certificate"].startswith(
        f"v6.6 alone has no violation of metadata (so none {no_smap_reset} lacks): stored ")
    assert conv["checker"]["queries"] > 0


def test_a_base_with_a_stale_certificate_is_searched_as_a_product(no_smap_reset, v66_mov_cr4,
                                                                  tmp_path, capsys):
    """A stored certificate of v6.6 that is not today's never decides the converse."""
    stale = tmp_path / "certificates"
    shutil.copytree(v66_mov_cr4, stale)
    (record,) = stale.glob("*.json")
    doc = json.loads(record.read_text())
    doc["fingerprint"] = "0" * len(doc["fingerprint"])
    record.write_text(json.dumps(doc))
    conv = _converse(stale, capsys)
    assert (conv["verdict"], conv["engine"]) == ("proved", "houdini")  # the product's own
    assert conv["stored"] is None and not conv["certificate"].startswith("v6.6 alone")


def test_the_converse_stops_at_bmcs_bound_the_verdict_goes_on(monkeypatch):
    """Engine auto after a bounded bmc: the differential tries k-induction and pdr for a
    verdict; its converse, a line of the report, does not."""
    asked = []

    def engine(name, verdict, bound=0):
        def run(*args, **kwargs):
            asked.append(name)
            return Result(verdict, name, bound)
        return run

    monkeypatch.setattr(search, "houdini", engine("houdini", Verdict.UNKNOWN))
    monkeypatch.setattr(search, "bmc", engine("bmc", Verdict.BOUNDED, 4))
    monkeypatch.setattr(search, "kind", engine("kind", Verdict.UNKNOWN))
    monkeypatch.setattr(search, "pdr", engine("pdr", Verdict.UNKNOWN))
    ob = prove.Obligation("v6.7", "tdp", ("pgd",), base="v6.6")
    assert prove._engine(None, ob.converse(), Checker()).label == "bounded(4)"
    assert asked == ["houdini", "bmc"]
    asked.clear()
    assert prove._engine(None, ob, Checker()).label == "bounded(4)"
    assert asked == ["houdini", "bmc", "kind", "pdr"]


def test_the_products_bmc_depths_are_answered_by_bitwuzla_and_modelled_by_z3(no_smap_reset,
                                                                             monkeypatch):
    asked = []
    answer = solvers.answer

    def recorded(solver, script, seconds):
        asked.append(solver)
        return answer(solver, script, seconds)

    monkeypatch.setattr(solvers, "answer", recorded)
    ob = prove.Obligation(no_smap_reset, "tdp", ("metadata",), "bmc", 2, events=("mov_cr4",),
                          base="v6.6")
    proof = prove.run(ob, jobs=1)  # the explicit search's trace, bmc's depth 0 below it
    assert (proof.result.label, proof.result.bound) == ("refuted", 1)
    assert asked == ["bitwuzla"]
    asked.clear()
    r = search.bmc(prove.relation(ob), ob.props, 2, Checker(decider=prove.PRODUCT_DECIDER),
                   prefer=prove.preferences)
    assert (r.label, r.bound) == ("refuted", 1) and r.witness is not None  # z3's model
    assert asked == ["bitwuzla", "bitwuzla"]  # depth 0 unsatisfiable, depth 1 satisfiable


def test_a_base_proved_alone_for_some_properties_leaves_only_the_others_to_the_product(
        no_smap_reset, v66_mov_cr4, capsys):
    """The converse over metadata and pgd: v6.6's stored certificate covers metadata only, so
    it decides metadata (re-checked) and the product is searched for pgd alone, which houdini
    proves on it; the verdict is the product's, and both proofs are named."""
    argv = ["prove", "--policy-file", EXAMPLE, "--base", "v6.6", "--config", "tdp",
            "--property", "metadata", "--property", "pgd", "--bound", "2", "--event", "mov_cr4",
            "--cex", "/dev/null", "--certificates", str(v66_mov_cr4)]
    assert main(argv) == 1
    lines = capsys.readouterr().out.splitlines()
    assert f"converse: violations of v6.6 that {no_smap_reset} removes: none of metadata (v6.6 " \
        "alone has none); of pgd: none (proved by houdini)" in lines
    assert main(argv + ["--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    Draft202012Validator(schema("prove-result")).validate(doc)
    assert (doc["verdict"], doc["violation"]["property"], doc["alone"]) == (
        "refuted", "metadata", [])
    conv = doc["converse"]
    assert (conv["verdict"], conv["engine"], conv["alone"]) == ("proved", "houdini",
                                                                 ["metadata"])
    assert conv["properties"] == ["metadata", "pgd"]
    assert conv["certificate"].startswith(
        f"v6.6 alone has no violation of metadata (so none {no_smap_reset} lacks): stored ")
    assert "; on the product, inductive invariant re-checked by yices in 4 one-shot queries " \
        "(initiation; consecution per path and safety for each of 1 event kinds): " \
        in conv["certificate"]
    assert conv["stored"].startswith("re-checked the stored certificate ")
    assert conv["checker"]["queries"] == 4  # the product's; the policy's are in its certificate
    assert conv["times"]["alone recheck"] > 0 and conv["times"]["houdini"] > 0
    assert conv["paths"] == {"mov_cr4": 7, "initial": 100}  # the product's relation
