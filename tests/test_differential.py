"""Differential verification (formal.symbolic.product, prove --base): the violations a patched
policy has at an event where its base has none, in lockstep on the same events."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from formal.cli import policies, prove
from formal.cli.main import main
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
