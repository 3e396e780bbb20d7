"""`flushproof diff`: the work two policies do on the same events (counted by the model's
Mechanism.work), the verdicts both ways, its JSON against its schema; and the fixes of
examples/ that examples/fixes.json names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from formal.cli import diff, policies, suite, workdiff
from formal.cli.main import main
from formal.cli.schemas import schema
from formal.engines.progress import Progress
from tests.conftest import TRACES

ROOT = Path(__file__).resolve().parent.parent
F1 = ROOT / "examples" / "v6_6_fix_f1_sync_on_reuse.py"


@pytest.fixture(autouse=True)
def forget_loaded_policies(monkeypatch):
    monkeypatch.setattr(policies, "_LOADED", {})
    monkeypatch.setattr(policies, "_FILES", {})


def test_the_f1_fix_syncs_the_root_it_reuses_and_nothing_else_on_f1s_trace():
    """invlpg-shared-pcid.json: the NOFLUSH MOV CR3 back hits the cache; the fix adds one
    MMU_SYNC request and one sync there, and changes no other event's work."""
    fix = policies.load_file(str(F1))
    tallies = workdiff.Tallies()
    tallies.run(workdiff.CORPUS, policies.load(TRACES / "invlpg-shared-pcid.json"), "v6.6", fix)
    rows = {r.event: r for r in tallies.rows.values()}
    assert list(rows) == ["start", "mov_cr3", "invlpg", "guest_pte_write"]
    cr3 = rows["mov_cr3"]
    assert cr3.events == 2
    assert dict(cr3.old) == {"roots_built": 1, "syncs": 1, "context_flushes": 1,
                             "request.LOAD_MMU_PGD": 1}
    assert dict(cr3.new) == dict(cr3.old, syncs=2, **{"request.MMU_SYNC": 1})
    assert [r.event for r in rows.values() if r.differs] == ["mov_cr3"]
    assert dict(rows["invlpg"].old) == {"syncs": 2, "context_flushes": 1}


def test_v6_7_adds_a_guest_flush_per_set_sregs_on_the_corpus():
    """4346db6e6e7a: KVM_SET_SREGS requests TLB_FLUSH_GUEST after the MMU reset; on the
    corpus's shadow traces that is 3 requests and 3 more context flushes, and nothing else."""
    tallies = workdiff.work("v6.6", "v6.7", ("shadow",), TRACES, 0, 0)
    diffs = [r for r in tallies.rows.values() if r.differs]
    assert [(r.config, r.event, r.events) for r in diffs] == [("shadow", "set_sregs", 3)]
    (d,) = diffs
    assert (d.old["request.TLB_FLUSH_GUEST"], d.new["request.TLB_FLUSH_GUEST"]) == (0, 3)
    assert (d.old["context_flushes"], d.new["context_flushes"]) == (3, 6)
    assert d.old - d.new == {}


def test_random_sequences_are_drawn_from_the_seed():
    """The same seed gives the same events and counts; the counts are pinned."""
    fix = policies.load_file(str(F1))

    def totals(seed: int) -> list[tuple]:
        w = workdiff.work("v6.6", fix, ("shadow",), None, 10, seed)
        return [(t.events, dict(t.old), dict(t.new)) for t in w.totals()]

    first = totals(7)
    assert first == totals(7) != totals(8)
    ((events, old, new),) = first
    assert events == 10 * (workdiff.LENGTH + 1)  # each sequence's first entry counts too
    assert old == {"roots_built": 84, "syncs": 88, "context_flushes": 153,
                   "request.MMU_SYNC": 35, "request.TLB_FLUSH_CURRENT": 40, "roots_freed": 66,
                   "request.LOAD_MMU_PGD": 7, "request.TLB_FLUSH_GUEST": 6}
    # The fix: one MMU_SYNC request per cache hit (7), 4 of them new (3 were pending already).
    assert new == dict(old, syncs=92, **{"request.MMU_SYNC": 42})


def test_diff_no_proofs_json_is_valid_and_exits_0(capsys):
    argv = ["diff", "v6.6", "v6.7", "--no-proofs", "--config", "tdp", "--sequences", "3",
            "--json"]
    assert main(argv) == 0
    doc = json.loads(capsys.readouterr().out)
    Draft202012Validator(schema("diff-result")).validate(doc)
    assert doc["proofs"] is None
    assert {r["config"] for r in doc["work"]["rows"]} == {"tdp"}
    assert [(t["source"], t["events"]) for t in doc["work"]["totals"]] == [
        ("corpus", 6), ("random", 3 * (workdiff.LENGTH + 1))]


def test_diff_text_shows_the_rows_that_differ(capsys):
    assert main(["diff", "v6.6", "v6.7", "--no-proofs", "--config", "shadow",
                 "--sequences", "0"]) == 0
    out = capsys.readouterr().out
    assert "work on the corpus traces: v6.6 -> v6.7" in out
    assert "set_sregs" in out and "0 -> 3 (+3)" in out
    assert "random sequences" not in out  # none asked for


def test_diff_outside_a_checkout_runs_without_a_corpus(tmp_path, monkeypatch, capsys):
    """From a directory without traces/ (a kernel tree), the default corpus is none, and the
    output says so; JSON names no corpus."""
    monkeypatch.chdir(tmp_path)
    assert main(["diff", "v6.6", "v6.7", "--no-proofs", "--config", "tdp",
                 "--sequences", "1"]) == 0
    out = capsys.readouterr().out
    assert "work on the corpus traces: none (no traces/ here" in out
    assert "1 random sequences" in out
    assert main(["diff", "v6.6", "v6.7", "--no-proofs", "--config", "tdp", "--sequences", "0",
                 "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["work"]["corpus"] is None and doc["work"]["totals"] == []


@pytest.mark.parametrize("argv, needle", [
    (["diff", "v6.6", "v9"], "unknown policy \"v9\""),
    (["diff", "v6.6", "v6.7", "--config", "smp"], "unknown config 'smp'"),
    (["diff", "v6.6", "v6.7", "--sequences", "-1"], "must be an integer >= 0"),
    (["diff", "v6.6", "v6.7", "--no-proofs", "--corpus", "no-such-dir"],
     "--corpus no-such-dir: no such directory"),
])
def test_diff_rejects_bad_input_with_exit_3(argv, needle, capsys):
    with pytest.raises(SystemExit) as exc:
        raise SystemExit(main(argv))
    assert exc.value.code == 3
    assert needle in capsys.readouterr().err


def test_a_cheap_differential_both_ways_on_tdp(capsys):
    """v6.6 against the SMAP example, with MOV CR4 only, at bmc bound 1: the patch
    adds a one-event metadata violation (MOV CR4 toggling SMAP keeps the cpu role) and removes
    none."""
    example = str(ROOT / "examples" / "v6_6_no_smap_reset.py")
    argv = ["diff", "v6.6", "v6.6-no-smap-reset", "--policy-file", example, "--config", "tdp",
            "--property", "metadata", "--engine", "bmc", "--bound", "1", "--event", "mov_cr4",
            "--sequences", "0", "--json"]
    assert main(argv) == 1  # the patch adds a violation
    doc = json.loads(capsys.readouterr().out)
    Draft202012Validator(schema("diff-result")).validate(doc)
    (cell,) = doc["proofs"]["cells"]
    got = {side: cell[side]["verdict"] for side in ("old", "new", "new_over_old",
                                                     "old_over_new")}
    assert got == {"old": "bounded(1)", "new": "refuted", "new_over_old": "refuted",
                   "old_over_new": "bounded(1)"}
    assert cell["new_over_old"]["bound"] == 1
    assert cell["new_over_old"]["violation"]["property"] == "metadata"
    assert cell["new_over_old"]["events"][0].startswith("mov_cr4")
    assert doc["proofs"]["events"] == ["mov_cr4"]


def test_every_fix_in_the_proof_script_is_an_example_file_whose_class_it_names():
    doc = json.loads((ROOT / "examples" / "fixes.json").read_text())
    names = {ob["policy"] for ob in doc["obligations"]} | {
        ob["base"] for ob in doc["obligations"] if "base" in ob}
    loaded = {policies.load_file(str(p)): p.name
              for p in sorted((ROOT / "examples").glob("v6_6_fix_*.py"))}
    assert set(loaded) == {"v6.6-fix-f1", "v6.6-fix-f5", "v6.6-fix-f6", "v6.6-fix-f10"}
    assert names - {"v6.6"} <= set(loaded)
    for name in loaded:
        assert policies.resolve(name).__module__.startswith("flushproof_policy_")


def test_the_fixes_script_loads_its_policy_files_itself(tmp_path, capsys):
    entries = suite.load(ROOT / "examples" / "fixes.json")
    named = {e.obligation.policy for e in entries} | {e.obligation.base for e in entries}
    assert named == {"v6.6-fix-f1", "v6.6", "v6.6-fix-f5", "v6.6-fix-f10"}
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "flushproof-proofs/1", "policy_files": ["nope.py"],
                               "obligations": []}))
    assert main(["suite", str(bad)]) == 3
    assert capsys.readouterr().err.strip() == f"flushproof: {tmp_path / 'nope.py'}: no such " \
        "policy file"


def test_a_policy_proved_alone_decides_its_differential_without_the_product():
    """v6.7 over v6.6 on INVLPG, pgd: each policy is proved alone, so neither adds a violation
    over the other (prove.alone), and diff builds no product for either direction."""
    cells = diff.prove_cells("v6.6", "v6.7", ("tdp",), ("pgd",), "houdini", 2, None,
                             ("invlpg",), Progress())
    (cell,) = cells
    for side, policy, base in (("new_over_old", "v6.7", "v6.6"), ("old_over_new", "v6.6",
                                                                    "v6.7")):
        proof = cell.proofs[side]
        single = cell.proofs[side.split("_over_")[0]]
        assert proof.result.verdict == "proved"
        assert proof.alone and proof.result.engine == "houdini"
        assert proof.result.certificate.startswith(
            f"{policy} alone has no violation of pgd (so none {base} lacks): ")
        assert proof.result.certificate.endswith(single.result.certificate)
        assert proof.result.checked == single.result.checked > 0
        assert proof.paths == single.paths  # the policy's own relation: no product was built
        assert proof.times == {} and single.times["houdini"] > 0  # counted once, on its side
